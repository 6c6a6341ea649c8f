//! The ONNX Runtime side: locating the library, building the session, running it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use serde::Deserialize;

use super::card::OutputFormat;
use super::decode::{self, Candidate, GridCell};
use super::fill::{self, ImageView, Normalise};
use super::{DetectError, Detection, ModelCard};
use crate::geometry::Letterbox;

/// File name of the library that `scripts/setup.sh` installs from the PyPI wheel.
const ORT_LIB: &str = "libonnxruntime.so.1.32.0";

/// The ONNX Runtime versions junction runs on: from the C API level it is built against (ort's
/// `api-20` feature: 1.20, JetPack 6's build) through every later 1.x, whose C API keeps the older
/// levels. CI runs the oldest (1.20.1) and the newest (1.32.0) PyPI CPU builds.
pub const ORT_SUPPORTED: OrtRange = OrtRange { major: 1, min_minor: 20 };

/// A range of ONNX Runtime versions: `major.min_minor` up to, not including, the next major version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtRange {
    pub major: u32,
    pub min_minor: u32,
}

impl OrtRange {
    /// Whether a version string such as `1.20.1` lies in the range; `None` when it is not `X.Y[.Z…]`.
    pub fn contains(&self, version: &str) -> Option<bool> {
        let mut parts = version.trim().split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        Some(major == self.major && minor >= self.min_minor)
    }
}

impl std::fmt::Display for OrtRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, ">= {}.{} and < {}.0", self.major, self.min_minor, self.major + 1)
    }
}

/// Opens the library and asks its version (`OrtGetApiBase()->GetVersionString()`), before ort does:
/// ort would take an older library's API table and fail later, or abort.
pub fn runtime_version(lib: &Path) -> Result<String, DetectError> {
    let load_err = |message: String| DetectError::RuntimeLoad { path: lib.to_owned(), message };
    // SAFETY: loading runs the library's initialisers; this is the library the user chose to run.
    let library = unsafe { libloading::Library::new(lib) }.map_err(|e| load_err(e.to_string()))?;
    // SAFETY: the symbol's type is the C API's `const OrtApiBase* OrtGetApiBase(void)`.
    let get_base = unsafe { library.get::<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase>(b"OrtGetApiBase") }
        .map_err(|_| load_err("no OrtGetApiBase symbol: not an ONNX Runtime library".into()))?;
    // SAFETY: OrtGetApiBase returns a pointer to a static struct, valid while the library is loaded.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(load_err("OrtGetApiBase returned nothing".into()));
    }
    // SAFETY: GetVersionString returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(((*base).GetVersionString)()) };
    Ok(version.to_string_lossy().into_owned())
}

/// The library's version, refused (naming both) when outside [`ORT_SUPPORTED`].
pub fn check_runtime_library(lib: &Path) -> Result<String, DetectError> {
    let version = runtime_version(lib)?;
    if ORT_SUPPORTED.contains(&version) != Some(true) {
        return Err(DetectError::RuntimeVersion { path: lib.to_owned(), found: version, supported: ORT_SUPPORTED });
    }
    Ok(version)
}

/// Where inference runs. There is no silent fallback: a provider that cannot be registered is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    /// CUDA (x86 GPU boxes; Jetson). Needs a GPU build of ONNX Runtime.
    Cuda,
    /// TensorRT with FP16 and an engine cache on disk (Jetson). Needs a GPU build of ONNX Runtime.
    Tensorrt,
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda),
            "tensorrt" => Ok(Provider::Tensorrt),
            other => Err(format!("unknown provider {other:?} (cpu | cuda | tensorrt)")),
        }
    }
}

/// ONNX Runtime graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

#[derive(Debug, Clone)]
pub struct DetectorOptions {
    pub provider: Provider,
    /// Threads inside one operator; 0 lets ONNX Runtime choose (one per physical core).
    pub intra_threads: usize,
    /// Threads across operators; 0 lets ONNX Runtime choose.
    pub inter_threads: usize,
    pub optimization: OptLevel,
    /// The ONNX Runtime shared library; `None` searches (see [`resolve_runtime_library`]).
    pub onnxruntime: Option<PathBuf>,
    /// CUDA/TensorRT device.
    pub device_id: i32,
    /// TensorRT engine cache folder.
    pub engine_cache: PathBuf,
    /// Score threshold override (the card's default otherwise).
    pub score: Option<f32>,
    /// Let ONNX Runtime's idle intra-op threads spin between runs (its own default). Off (junction's
    /// default), they sleep: the decoder and the analysis thread get the cores back between frames,
    /// which on 2 cores was faster end to end (benches/README.md).
    pub spinning: bool,
    /// `junction run`: detect on every Nth frame of a camera; the tracker predicts the frames between
    /// (DeepStream's `interval` + 1). 1: every frame.
    pub every: u32,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            provider: Provider::Cpu,
            intra_threads: 0,
            inter_threads: 0,
            optimization: OptLevel::All,
            onnxruntime: None,
            device_id: 0,
            engine_cache: PathBuf::from("/var/lib/junction/trt-cache"),
            score: None,
            spinning: false,
            every: 1,
        }
    }
}

/// Finds the ONNX Runtime library: the explicit path, then `ORT_DYLIB_PATH`, then `.onnxruntime/` in the
/// working directory and in the source checkout this binary was built from.
pub fn resolve_runtime_library(explicit: Option<&Path>) -> Result<PathBuf, DetectError> {
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_owned());
    } else if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    } else {
        candidates.push(PathBuf::from(".onnxruntime").join(ORT_LIB));
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".onnxruntime").join(ORT_LIB));
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    Err(DetectError::RuntimeMissing { looked: looked.join(", ") })
}

/// Time spent per stage, summed over frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub fill: Duration,
    pub infer: Duration,
    pub postprocess: Duration,
}

/// Owns the ONNX Runtime session and the buffers reused across frames. One thread owns it.
pub struct Detector {
    card: ModelCard,
    session: Session,
    input: Vec<f32>,
    norm: Normalise,
    grid: Option<Vec<GridCell>>,
    cands: Vec<Candidate>,
    score: f32,
    pub times: StageTimes,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("model", &self.card.name).finish_non_exhaustive()
    }
}

impl Detector {
    /// Loads ONNX Runtime, builds the session and checks the model's tensors against its card.
    pub fn new(card: ModelCard, opts: &DetectorOptions) -> Result<Self, DetectError> {
        let lib = resolve_runtime_library(opts.onnxruntime.as_deref())?;
        let version = check_runtime_library(&lib)?;
        tracing::info!(path = %lib.display(), version = %version, "ONNX Runtime library");
        let load_err = |message: String| DetectError::RuntimeLoad { path: lib.clone(), message };
        let env = ort::init_from(&lib)
            .map_err(|e| load_err(e.to_string()))?
            .with_name("junction")
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let session_err = |message: String| DetectError::Session { path: card.model_path.clone(), message };

        let mut builder = Session::builder(&env).map_err(|e| session_err(e.to_string()))?;
        builder = builder
            .with_optimization_level(match opts.optimization {
                OptLevel::Disable => GraphOptimizationLevel::Disable,
                OptLevel::Basic => GraphOptimizationLevel::Level1,
                OptLevel::Extended => GraphOptimizationLevel::Level2,
                OptLevel::All => GraphOptimizationLevel::All,
            })
            .map_err(|e| session_err(e.to_string()))?;
        if opts.intra_threads > 0 {
            builder = builder.with_intra_threads(opts.intra_threads).map_err(|e| session_err(e.to_string()))?;
        }
        if !opts.spinning {
            builder = builder.with_intra_op_spinning(false).map_err(|e| session_err(e.to_string()))?;
        }
        if opts.inter_threads > 0 {
            builder = builder.with_inter_threads(opts.inter_threads).map_err(|e| session_err(e.to_string()))?;
        }
        let provider_err =
            |provider: &'static str| move |e: ort::Error<_>| DetectError::Provider { provider, message: e.to_string() };
        builder = match opts.provider {
            Provider::Cpu => builder,
            Provider::Cuda => builder
                .with_execution_providers([ort::ep::CUDA::default()
                    .with_device_id(opts.device_id)
                    .build()
                    .error_on_failure()])
                .map_err(provider_err("cuda"))?,
            Provider::Tensorrt => builder
                .with_execution_providers([ort::ep::TensorRT::default()
                    .with_device_id(opts.device_id)
                    .with_fp16(true)
                    .with_engine_cache(true)
                    .with_engine_cache_path(opts.engine_cache.display())
                    .build()
                    .error_on_failure()])
                .map_err(provider_err("tensorrt"))?,
        };
        let session = builder.commit_from_file(&card.model_path).map_err(|e| session_err(e.to_string()))?;
        check_tensors(&card, &session)?;

        let input = vec![0.0; 3 * card.input.width as usize * card.input.height as usize];
        let norm = Normalise::new(card.input.scale, card.input.mean, card.input.std, card.letterbox.pad_value);
        let grid =
            card.grid_anchors().map(|_| decode::yolox_grid(card.input.width, card.input.height, &card.output.strides));
        let score = opts.score.unwrap_or(card.thresholds.score);
        Ok(Self {
            card,
            session,
            input,
            norm,
            grid,
            cands: Vec::with_capacity(256),
            score,
            times: StageTimes::default(),
        })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Fills the input tensor from a letterboxed image (see [`fill::fill_nchw`]).
    pub fn fill(&mut self, img: &ImageView<'_>, lb: &Letterbox) -> Result<(), DetectError> {
        let t = Instant::now();
        fill::fill_nchw(img, lb, &self.norm, &mut self.input).map_err(|e| DetectError::Inference(e.to_string()))?;
        self.times.fill += t.elapsed();
        Ok(())
    }

    /// The filled input tensor, `[1, 3, H, W]` row-major.
    pub fn input(&self) -> &[f32] {
        &self.input
    }

    /// Runs the model on the filled input and appends detections in frame pixels to `out`.
    pub fn infer(&mut self, lb: &Letterbox, out: &mut Vec<Detection>) -> Result<(), DetectError> {
        let t = Instant::now();
        let (w, h) = (self.card.input.width as usize, self.card.input.height as usize);
        let tensor = TensorRef::from_array_view(([1usize, 3, h, w], &self.input[..]))
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.card.input.name.as_str() => tensor])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let value = outputs
            .get(self.card.output.name.as_str())
            .ok_or_else(|| DetectError::Inference(format!("no output named {:?}", self.card.output.name)))?;
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| DetectError::Inference(e.to_string()))?;
        let t_post = Instant::now();
        self.times.infer += t_post - t;

        let c = self.card.num_classes();
        let map = &self.card.class_map;
        let keep = |k: usize| map.get(k).is_some_and(Option::is_some);
        self.cands.clear();
        match self.card.output.format {
            OutputFormat::Yolox => {
                if shape.len() != 3 || shape[2] as usize != 5 + c {
                    return Err(DetectError::Inference(format!("output shape {shape:?}, expected [1, N, {}]", 5 + c)));
                }
                decode::decode_yolox(data, c, self.grid.as_deref(), self.score, keep, &mut self.cands);
            }
            OutputFormat::Yolov8 => {
                if shape.len() != 3 || shape[1] as usize != 4 + c {
                    return Err(DetectError::Inference(format!("output shape {shape:?}, expected [1, {}, N]", 4 + c)));
                }
                decode::decode_yolov8(data, c, shape[2] as usize, self.score, keep, &mut self.cands);
            }
        }
        decode::nms(&mut self.cands, self.card.thresholds.nms_iou);
        out.extend(self.cands.iter().filter_map(|cand| {
            let class = (*map.get(cand.class as usize)?)?;
            Some(Detection { bbox: lb.to_frame(&cand.bbox), class, score: cand.score })
        }));
        self.times.postprocess += t_post.elapsed();
        Ok(())
    }
}

/// Checks the graph's input and output tensors against the card: names, ranks, and every fixed dimension.
fn check_tensors(card: &ModelCard, session: &Session) -> Result<(), DetectError> {
    let mismatch = |detail: String| DetectError::Mismatch { path: card.model_path.clone(), detail };
    let find = |what: &str, outlets: &[ort::value::Outlet], name: &str, field: &str| {
        let found = outlets.iter().position(|o| o.name() == name);
        found.ok_or_else(|| {
            let names: Vec<String> = outlets.iter().map(|o| format!("{:?}", o.name())).collect();
            mismatch(format!(
                "has no {what} named {name:?} (it has {}); fix {field} in {}",
                names.join(", "),
                card.card_path.display()
            ))
        })
    };
    let input = &session.inputs()[find("input", session.inputs(), &card.input.name, "input.name")?];
    let output = &session.outputs()[find("output", session.outputs(), &card.output.name, "output.name")?];
    let c = card.num_classes() as i64;
    let (w, h) = (i64::from(card.input.width), i64::from(card.input.height));
    let anchors = card.grid_anchors().map_or(-1, |n| n as i64);
    let expected_in = [1, 3, h, w];
    let expected_out = match card.output.format {
        OutputFormat::Yolox => [1, anchors, 5 + c],
        OutputFormat::Yolov8 => [1, 4 + c, -1],
    };
    let show = |d: &[i64]| {
        let parts: Vec<String> = d.iter().map(|v| if *v < 0 { "N".into() } else { v.to_string() }).collect();
        format!("[{}]", parts.join(", "))
    };
    for (what, outlet, expected) in [("input", input, &expected_in[..]), ("output", output, &expected_out[..])] {
        let actual: Vec<i64> = outlet.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
        // -1 on either side is a dynamic dimension: it fits anything.
        let fits =
            actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| *a < 0 || *e < 0 || a == e);
        if !fits {
            return Err(mismatch(format!(
                "{what} {:?} has shape {}, but its card {} says {} ({:?} format, {c} classes)",
                outlet.name(),
                show(&actual),
                card.card_path.display(),
                show(expected),
                card.output.format,
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_range_is_major_one_from_minor_twenty() {
        for v in ["1.20.0", "1.20.1", "1.32.0", "1.40.2-dev"] {
            assert_eq!(ORT_SUPPORTED.contains(v), Some(true), "{v}");
        }
        for v in ["1.19.2", "1.16.3", "0.25.0", "2.0.0"] {
            assert_eq!(ORT_SUPPORTED.contains(v), Some(false), "{v}");
        }
        assert_eq!(ORT_SUPPORTED.contains("garbage"), None);
        assert_eq!(ORT_SUPPORTED.to_string(), ">= 1.20 and < 2.0");
    }
}
