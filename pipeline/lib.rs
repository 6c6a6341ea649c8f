//! junction: road-junction cameras to traffic measurements.
//!
//! Module map, in the order a frame flows (see DESIGN.md):
//!
//! - [`source`]: GStreamer pipeline per camera, URI → letterbox-sized frames with PTS and wall clock.
//! - [`detect`]: model card, tensor fill, output decoding, NMS, the ONNX Runtime session.
//! - [`geometry`]: coordinate spaces (model-input pixels, frame pixels) and the letterbox between them.
//! - [`telemetry`]: logging set-up.
//!
//! Still to come (see the issues): `track`, `analytics`, `aggregate`, `store`, `publish`, `http`,
//! `runtime`, `report`, `config`.

pub mod aggregate;
pub mod analytics;
pub mod config;
pub mod detect;
pub mod geometry;
pub mod http;
pub mod publish;
pub mod runtime;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod track;
