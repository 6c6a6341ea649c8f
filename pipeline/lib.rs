//! junction: road-junction cameras to traffic measurements.
//!
//! Module map, in the order a frame flows (the README's "Architecture" describes the threads):
//!
//! - [`config`]: site configuration and calibration files, parsed then validated (every problem named).
//! - [`source`]: GStreamer pipeline per camera, URI → frames of the region of interest, scaled for the
//!   model (one letterbox, or a mosaic of tiles), with PTS and wall clock; the decoder is selectable.
//! - [`detect`]: model card, tensor fill, output decoding (YOLOX, YOLOv8, DETR), NMS, merges across
//!   labels and tiles, the ONNX Runtime session and its batches; riders fused with their two-wheelers.
//! - [`geometry`]: coordinate spaces (model-input pixels, frame pixels, ground metres), regions,
//!   tiles and the letterbox between them, and the ground-plane homography (OpenCV).
//! - [`track`]: ByteTrack on frame-pixel boxes, driven by PTS.
//! - [`analytics`]: count lines, zones, turning movements, loop detectors and speed over tracks →
//!   traffic events.
//! - [`aggregate`]: wall-clock bins → FlowReports (volumes, PCU, speeds, headways, movements, queues),
//!   with coverage and gaps, revised after a restart inside a bin.
//! - [`clock`]: the box's time line: the wall clock names bins, the monotonic clock measures, steps
//!   of the wall clock absorbed and noted.
//! - [`camera`]: one camera's tracker, rules and bins ([`camera::CameraPipeline`]), no I/O.
//! - [`runtime`]: the analysis loop over all cameras and its supervisor (a camera's fault restarts that
//!   camera alone), live cameras' wall clock, checkpoints, shutdown.
//! - [`sink`]: the outputs thread behind a bounded channel: store, ATSPM CSV, printer, publisher wake.
//! - [`store`]: SQLite, every event and report (by revision), open bins' checkpoints; the MQTT outbox.
//! - [`publish`]: MQTT publisher draining the outbox.
//! - [`http`], [`snapshot`], [`telemetry`]: /metrics, /healthz, /readyz, /snapshot; logging and metrics.
//! - [`console`]: the operator console (tiles, live counts over server-sent events, the rules editor,
//!   exports) behind a login; rules hot reload is [`camera::CameraPipeline::reload`].
//! - [`report`]: offline turning-movement counts, peak hour and charts from the store.
//! - [`calibrate`]: solving a camera's ground plane and drawing its overlay.
//! - `fuzzing`: the fuzz targets' entry points (site, calibration, console bodies,
//!   stored reports), shared by cargo-fuzz and the stable smoke test.
//! - [`eval`]: a clip against its truth file: count errors by line, direction and class; sweeps.

pub mod aggregate;
pub mod analytics;
pub mod calibrate;
pub mod camera;
pub mod clock;
pub mod coco;
pub mod collect;
pub mod config;
pub mod console;
pub mod detect;
pub mod eval;
#[doc(hidden)]
pub mod fuzzing;
pub mod geometry;
pub mod http;
pub mod labels;
pub mod motion;
pub mod publish;
pub mod report;
pub mod runtime;
/// Backoff shared by camera restarts and the publisher (and the centre).
pub use junction_common::retry;
pub mod scale;
pub mod schedule;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod track;
