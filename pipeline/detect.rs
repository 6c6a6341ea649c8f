//! Vehicle detection: model card, tensor fill, output decoding, NMS, and the ONNX Runtime session.
//!
//! The stateless steps ([`fill`], [`decode`]) are plain functions over slices, testable and benchable
//! without ONNX Runtime. [`Detector`] owns the `ort::Session` (`run` takes `&mut self`: one thread owns
//! it) and the buffers reused from frame to frame.

pub mod card;
pub mod decode;
pub mod fill;
mod session;
pub mod twowheel;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use card::{ModelCard, OutputFormat};
pub use decode::{Candidate, TileCandidate};
pub use fill::ImageView;
/// What junction counts; defined with the rules that name it ([`junction_schema::rules`]).
pub use junction_schema::rules::VehicleClass;
pub use session::{
    DEFAULT_EVERY, DEFAULT_NMS_IOU, Detector, DetectorOptions, Job, ORT_SUPPORTED, OptLevel, OrtRange, Provider,
    StageTimes, check_runtime_library, resolve_runtime_library, runtime_version,
};

use crate::geometry::FrameBox;

/// One detected object, in source-frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    #[serde(rename = "box")]
    pub bbox: FrameBox,
    pub class: VehicleClass,
    /// Model confidence, 0–1 (objectness × class score for YOLOX).
    pub score: f32,
    /// Riders fused into this two-wheeler ([`twowheel::fuse`]): 0 for a detection as the model gave it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub riders: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("model card {path}: {source}")]
    CardRead { path: PathBuf, source: std::io::Error },
    #[error("model card {path}: {field}{}{message}", if field.is_empty() { "" } else { ": " })]
    CardParse { path: PathBuf, field: String, message: String },
    #[error("model card {path}: {problems}")]
    CardInvalid { path: PathBuf, problems: String },
    #[error("model file {path} (named by {card}): {source}")]
    ModelRead { path: PathBuf, card: PathBuf, source: std::io::Error },
    #[error(
        "model file {path}: sha256 {actual} differs from {expected} in its card {card}; \
         the file is not the model the card describes"
    )]
    Sha256Mismatch { path: PathBuf, card: PathBuf, expected: String, actual: String },
    #[error(
        "ONNX Runtime library not found (looked in: {looked}); run scripts/setup.sh, which installs it \
         from the PyPI onnxruntime==1.32.0 wheel into .onnxruntime/, or set ORT_DYLIB_PATH or pass \
         --onnxruntime with the path of libonnxruntime.so"
    )]
    RuntimeMissing { looked: String },
    #[error("ONNX Runtime library {path} failed to load: {message}")]
    RuntimeLoad { path: PathBuf, message: String },
    #[error(
        "ONNX Runtime library {path} is version {found}, outside the supported range {supported}; install a \
         supported one (scripts/setup.sh installs 1.32.0) and point detector.onnxruntime or --onnxruntime at it"
    )]
    RuntimeVersion { path: PathBuf, found: String, supported: session::OrtRange },
    #[error("model {path}: ONNX Runtime could not create a session: {message}")]
    Session { path: PathBuf, message: String },
    #[error("execution provider {provider} could not be registered: {message} (no silent fallback to CPU)")]
    Provider { provider: &'static str, message: String },
    /// The model's tensors do not fit its card (names, shapes).
    #[error("model {path}: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    #[error("inference failed: {0}")]
    Inference(String),
}
