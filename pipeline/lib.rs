//! junction: road-junction cameras to traffic measurements.
//!
//! Module map, in the order a frame flows (see DESIGN.md):
//!
//! - [`config`]: site configuration and calibration files, parsed then validated (every problem named).
//! - [`source`]: GStreamer pipeline per camera, URI → letterbox-sized frames with PTS and wall clock.
//! - [`detect`]: model card, tensor fill, output decoding, NMS, the ONNX Runtime session.
//! - [`geometry`]: coordinate spaces (model-input pixels, frame pixels) and the letterbox between them.
//! - [`track`]: ByteTrack on frame-pixel boxes, driven by PTS.
//! - [`analytics`]: count lines and zones over tracks → traffic events.
//! - [`aggregate`]: wall-clock bins → FlowReports.
//! - [`store`]: SQLite, every event and report; the MQTT outbox.
//! - [`publish`]: MQTT publisher draining the outbox.
//! - [`http`], [`snapshot`], [`telemetry`]: /metrics, /healthz, /readyz, /snapshot; logging and metrics.
//! - [`runtime`]: the analysis loop over all cameras, restarts and shutdown.
//!
//! Still to come (see the issues): `report` (offline reports from the store), the ground plane.

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
