//! The ONNX Runtime side: locating the library, building the session, running it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::card::OutputFormat;
use super::decode::{self, Candidate, GridCell, TileCandidate};
use super::fill::{self, ImageView, Normalise};
use super::{DetectError, Detection, ModelCard};
pub use junction_schema::site::{DEFAULT_EVERY, DEFAULT_NMS_IOU, OptLevel, Provider};

use crate::geometry::{Plan, Size};

/// File name of the library that `scripts/setup.sh` installs from the PyPI wheel.
const ORT_LIB: &str = "libonnxruntime.so.1.32.0";

/// Most side-by-side sessions [`DetectorOptions::parallel`] = 0 makes when `intra_threads` is 0 too.
pub const MAX_AUTO_PARALLEL: usize = 8;

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
    /// Class-aware NMS IoU override (the card's `thresholds.nms_iou` otherwise): above it, two boxes
    /// of one class are one object. Higher keeps two motorcycles side by side (their boxes overlap
    /// heavily in dense traffic) as two, at the cost of more duplicates of one vehicle.
    pub nms_iou: Option<f32>,
    /// Let ONNX Runtime's idle intra-op threads spin between runs (its own default). Off (junction's
    /// default), they sleep: the decoder and the analysis thread get the cores back between frames,
    /// which on 2 cores was faster end to end (benches/README.md).
    pub spinning: bool,
    /// `junction run`: detect on every Nth frame of a camera; the tracker predicts the frames between
    /// (DeepStream's `interval` + 1), except while a new track awaits confirmation. 1: every frame.
    /// Default [`DEFAULT_EVERY`].
    pub every: u32,
    /// Most images (tiles, frames of several cameras) in one model run, for a model whose batch
    /// dimension is dynamic.
    pub max_batch: usize,
    /// Model runs at once when a call has several images (tiles, cameras' frames), each on a
    /// session of one thread (CPU only). One image is run on the main session (`intra_threads`).
    /// 0: one per thread of `intra_threads` (when that is 0: one per available core, at most
    /// [`MAX_AUTO_PARALLEL`]); 1: off.
    pub parallel: usize,
    /// `junction run`: once one camera's frame waits, how long to wait for the others' so that they
    /// share a model run (zero: only frames already waiting are batched).
    pub batch_wait: Duration,
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
            nms_iou: None,
            spinning: false,
            every: DEFAULT_EVERY,
            max_batch: 8,
            parallel: 0,
            batch_wait: Duration::ZERO,
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

/// The process's ONNX Runtime environment: ort allows one per process, ever, so detectors made one
/// after another (`junction eval --sweep`) share it; they must also share its library.
fn environment(lib: &Path) -> Result<ort::environment::Environment, DetectError> {
    static ENV: std::sync::Mutex<Option<(PathBuf, ort::environment::Environment)>> = std::sync::Mutex::new(None);
    let load_err = |message: String| DetectError::RuntimeLoad { path: lib.to_owned(), message };
    let mut slot = ENV.lock().map_err(|_| load_err("environment lock poisoned".into()))?;
    if let Some((loaded, env)) = slot.as_ref() {
        if loaded != lib {
            return Err(load_err(format!("this process already runs ONNX Runtime from {}", loaded.display())));
        }
        return Ok(env.clone());
    }
    let version = check_runtime_library(lib)?;
    tracing::info!(path = %lib.display(), version = %version, "ONNX Runtime library");
    let env = ort::init_from(lib)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("junction")
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    *slot = Some((lib.to_owned(), env.clone()));
    Ok(env)
}

/// Time spent per stage, summed over frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub fill: Duration,
    pub infer: Duration,
    pub postprocess: Duration,
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, o: Self) {
        self.fill += o.fill;
        self.infer += o.infer;
        self.postprocess += o.postprocess;
    }
}

/// One frame to detect on: its image (the scaled region of interest, from [`crate::source::Frame`])
/// and how it maps to the model inputs.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub image: ImageView<'a>,
    pub plan: &'a Plan,
}

/// Owns the ONNX Runtime sessions and the buffers reused across frames. One thread owns it.
pub struct Detector {
    card: ModelCard,
    /// The session that runs a lone image, with `intra_threads` threads.
    main: Lane,
    /// Sessions of one thread each that run a call's images side by side ([`DetectorOptions::parallel`]):
    /// on 2 cores two single-threaded runs of YOLOX-Nano do 1.3–1.9 times the images a second of
    /// one run on two threads (benches/README.md). Empty: off.
    lanes: Vec<Lane>,
    norm: Normalise,
    /// Per frame of a `detect` call: its tiles' candidates, frame pixels.
    tiled: Vec<Vec<TileCandidate>>,
    score: f32,
    /// Images per model run: 1 when the model's batch dimension is fixed.
    max_batch: usize,
    pub times: StageTimes,
}

/// One ONNX Runtime session and the buffers of its runs.
struct Lane {
    session: Session,
    /// `[N, 3, H, W]` row-major, N = images in the batch being run.
    input: Vec<f32>,
    /// DETR: `[N, 2]` (width, height) the boxes are scaled to.
    sizes: Vec<i64>,
    /// A raw YOLOX head's anchor grid per input size (model pixels) seen so far: one for a fixed-size
    /// model, a few for a rectangular one (one per camera shape).
    grids: Vec<(Size, Vec<GridCell>)>,
    cands: Vec<Candidate>,
    /// Candidates of the images this lane ran: (job, candidate in frame pixels).
    found: Vec<(usize, TileCandidate)>,
    times: StageTimes,
}

/// What every lane reads while it runs.
struct Shared<'a> {
    card: &'a ModelCard,
    norm: &'a Normalise,
    score: f32,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector").field("model", &self.card.name).finish_non_exhaustive()
    }
}

impl Detector {
    /// Loads ONNX Runtime, builds the session and checks the model's tensors against its card.
    pub fn new(mut card: ModelCard, opts: &DetectorOptions) -> Result<Self, DetectError> {
        let lib = resolve_runtime_library(opts.onnxruntime.as_deref())?;
        let env = environment(&lib)?;
        if let Some(iou) = opts.nms_iou {
            card.thresholds.nms_iou = iou;
        }
        let session_err = |message: String| DetectError::Session { path: card.model_path.clone(), message };

        let build = |intra_threads: usize| -> Result<Session, DetectError> {
            let mut builder = Session::builder(&env).map_err(|e| session_err(e.to_string()))?;
            builder = builder
                .with_optimization_level(match opts.optimization {
                    OptLevel::Disable => GraphOptimizationLevel::Disable,
                    OptLevel::Basic => GraphOptimizationLevel::Level1,
                    OptLevel::Extended => GraphOptimizationLevel::Level2,
                    OptLevel::All => GraphOptimizationLevel::All,
                })
                .map_err(|e| session_err(e.to_string()))?;
            if intra_threads > 0 {
                builder = builder.with_intra_threads(intra_threads).map_err(|e| session_err(e.to_string()))?;
            }
            if !opts.spinning {
                builder = builder.with_intra_op_spinning(false).map_err(|e| session_err(e.to_string()))?;
            }
            if opts.inter_threads > 0 {
                builder = builder.with_inter_threads(opts.inter_threads).map_err(|e| session_err(e.to_string()))?;
            }
            let provider_err = |provider: &'static str| {
                move |e: ort::Error<_>| DetectError::Provider { provider, message: e.to_string() }
            };
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
            builder.commit_from_file(&card.model_path).map_err(|e| session_err(e.to_string()))
        };
        let session = build(opts.intra_threads)?;
        let dynamic_batch = check_tensors(&card, &session)?;

        let norm = Normalise::new(card.input.scale, card.input.mean, card.input.std, card.letterbox.pad_value);
        let score = opts.score.unwrap_or(card.thresholds.score);
        let max_batch = if dynamic_batch { opts.max_batch.max(1) } else { 1 };
        let parallel = match opts.parallel {
            _ if opts.provider != Provider::Cpu => 1,
            0 if opts.intra_threads > 0 => opts.intra_threads,
            // Each lane is a session with its own buffers: a big box gets a few, not one per core.
            0 => std::thread::available_parallelism().map_or(1, usize::from).min(MAX_AUTO_PARALLEL),
            n => n,
        };
        let lanes = if parallel > 1 {
            (0..parallel).map(|_| build(1).map(Lane::new)).collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            card,
            main: Lane::new(session),
            lanes,
            norm,
            tiled: Vec::new(),
            score,
            max_batch,
            times: StageTimes::default(),
        })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The model's inputs and outputs as its graph declares them: (\"input\" or \"output\", name,
    /// shape with `N` for a dynamic dimension, element type).
    pub fn tensors(&self) -> Vec<(&'static str, String, String, String)> {
        let describe = |what: &'static str, o: &ort::value::Outlet| {
            let shape = o.dtype().tensor_shape().map_or_else(
                || "?".to_owned(),
                |s| {
                    let dims: Vec<String> = s.iter().map(|v| if *v < 0 { "N".into() } else { v.to_string() }).collect();
                    format!("[{}]", dims.join(", "))
                },
            );
            let ty = o.dtype().tensor_type().map_or_else(|| "?".to_owned(), |t| format!("{t:?}").to_lowercase());
            (what, o.name().to_owned(), shape, ty)
        };
        let session = &self.main.session;
        let inputs = session.inputs().iter().map(|o| describe("input", o));
        inputs.chain(session.outputs().iter().map(|o| describe("output", o))).collect()
    }

    /// Runs the model once on a grey image of its input size (cut to its stride when rectangular,
    /// as a 16:9 frame would be) and returns (input pixels, time of the run): ONNX Runtime's first run
    /// allocates and starts threads. A second run is timed, the first one's cost being one-off. The
    /// side-by-side sessions run once each. `None` when a run fails (the first frames will say why).
    pub fn warm_up(&mut self) -> Option<(u64, Duration)> {
        let input = self.card.input_size();
        let frame = Size::new(input.width, input.height * 9 / 16);
        let align = self.card.letterbox.align;
        let mut plan = Plan::new(frame, None, input, align, crate::geometry::TileGrid::ONE);
        if let Some(stride) = self.card.input_stride() {
            plan = plan.fit_to_stride(stride, align);
        }
        let (w, h) = (plan.scaled.width as usize, plan.scaled.height as usize);
        let data = vec![114u8; w * h * 3];
        let image = ImageView { data: &data, width: w as u32, height: h as u32, stride: w * 3 };
        let job = [Job { image, plan: &plan }];
        let mut out = [Vec::new()];
        let times = self.times;
        let mut timed = None;
        for _ in 0..2 {
            let t = Instant::now();
            if let Err(e) = self.detect(&job, &mut out) {
                tracing::warn!(error = %e, "the detector's warm-up run failed");
                return None;
            }
            timed = Some(t.elapsed());
        }
        // The side-by-side sessions allocate on their first run too.
        if self.lanes.len() > 1 {
            let jobs = vec![Job { image, plan: &plan }; self.lanes.len()];
            let mut out = vec![Vec::new(); jobs.len()];
            if let Err(e) = self.detect(&jobs, &mut out) {
                tracing::warn!(error = %e, "the detector's warm-up run failed");
                return None;
            }
        }
        self.times = times;
        timed.map(|t| (plan.input_pixels(), t))
    }

    /// Detects on each job's frame: every tile of every frame, in batches of up to `max_batch` images
    /// per model run (1 for a model whose batch dimension is fixed). `out[j]` is cleared and receives frame `j`'s detections, frame pixels.
    pub fn detect(&mut self, jobs: &[Job<'_>], out: &mut [Vec<Detection>]) -> Result<(), DetectError> {
        if out.len() < jobs.len() {
            return Err(DetectError::Inference(format!("{} outputs for {} frames", out.len(), jobs.len())));
        }
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            out[j].clear();
            pending.extend((0..job.plan.tiles.len()).map(|t| (j, t)));
        }
        // One model run takes inputs of one size: group them (a rectangular model's cameras may differ).
        let input_of = |&(j, t): &(usize, usize)| {
            let s = jobs[j].plan.tiles[t].input;
            (s.width, s.height)
        };
        pending.sort_by_key(input_of);
        // Side by side on the lanes when there are several images: chunks small enough that every
        // lane gets one.
        let lanes = if pending.len() >= 2 { self.lanes.len() } else { 0 };
        let most = if lanes > 1 { self.max_batch.min(pending.len().div_ceil(lanes)) } else { self.max_batch };
        let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        for k in 1..=pending.len() {
            if k == pending.len() || k - start == most || input_of(&pending[k]) != input_of(&pending[start]) {
                chunks.push(start..k);
                start = k;
            }
        }
        let shared = Shared { card: &self.card, norm: &self.norm, score: self.score };
        let result = if lanes > 1 && chunks.len() > 1 {
            let t = Instant::now();
            let used = lanes.min(chunks.len());
            let (first, rest) = self.lanes[..used].split_at_mut(1);
            let run = |lane: &mut Lane, k: usize| -> Result<(), DetectError> {
                for chunk in chunks.iter().skip(k).step_by(used) {
                    lane.run(&shared, jobs, &pending[chunk.clone()])?;
                }
                Ok(())
            };
            let results = std::thread::scope(|scope| {
                let others: Vec<_> =
                    rest.iter_mut().enumerate().map(|(k, lane)| scope.spawn(move || run(lane, k + 1))).collect();
                // Lane 0 runs here: a panic in it is an error like one in another lane's thread.
                let here = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut first[0], 0)));
                let mut results =
                    vec![here.unwrap_or_else(|_| Err(DetectError::Inference("a parallel model run panicked".into())))];
                results.extend(others.into_iter().map(|h| {
                    h.join().unwrap_or_else(|_| Err(DetectError::Inference("a parallel model run panicked".into())))
                }));
                results
            });
            // The lanes' stage times are CPU time; the call's are its wall time, shared out in
            // their proportions.
            let wall = t.elapsed();
            let mut sum = StageTimes::default();
            for lane in &mut self.lanes[..used] {
                sum += std::mem::take(&mut lane.times);
            }
            let cpu = (sum.fill + sum.infer + sum.postprocess).as_secs_f64().max(1e-9);
            let share = |d: Duration| wall.mul_f64(d.as_secs_f64() / cpu);
            self.times.fill += share(sum.fill);
            self.times.infer += share(sum.infer);
            self.times.postprocess += share(sum.postprocess);
            results.into_iter().collect::<Result<Vec<()>, _>>().map(|_| ())
        } else {
            let r = chunks.iter().try_for_each(|chunk| self.main.run(&shared, jobs, &pending[chunk.clone()]));
            self.times += std::mem::take(&mut self.main.times);
            r
        };
        // Candidates of every tile, grouped back per frame.
        let mut per_frame = std::mem::take(&mut self.tiled);
        per_frame.resize_with(jobs.len(), Vec::new);
        per_frame.iter_mut().for_each(Vec::clear);
        for lane in std::iter::once(&mut self.main).chain(self.lanes.iter_mut()) {
            for (j, c) in lane.found.drain(..) {
                if let Some(f) = per_frame.get_mut(j) {
                    f.push(c);
                }
            }
        }
        if let Err(e) = result {
            self.tiled = per_frame;
            return Err(e);
        }
        let t = Instant::now();
        let map = &self.card.class_map;
        for (j, tiled) in per_frame.iter_mut().enumerate() {
            if jobs[j].plan.tiles.len() > 1 {
                // Lanes finish in any order: the tiles' candidates in tile order, as one lane
                // would have found them.
                tiled.sort_by_key(|c| c.tile);
                decode::merge_tiles(tiled, self.card.thresholds.nms_iou);
            }
            out[j].extend(tiled.iter().filter_map(|c| {
                let class = (*map.get(c.class as usize)?)?;
                Some(Detection { bbox: c.bbox, class, score: c.score, riders: 0 })
            }));
        }
        self.tiled = per_frame;
        self.times.postprocess += t.elapsed();
        Ok(())
    }
}

impl Lane {
    fn new(session: Session) -> Self {
        Self {
            session,
            input: Vec::new(),
            sizes: Vec::new(),
            grids: Vec::new(),
            cands: Vec::with_capacity(256),
            found: Vec::new(),
            times: StageTimes::default(),
        }
    }

    /// Fills the input with the images `slots` ((job, tile) each), runs the model once, and decodes
    /// each image into `self.found`.
    fn run(&mut self, sh: &Shared<'_>, jobs: &[Job<'_>], slots: &[(usize, usize)]) -> Result<(), DetectError> {
        let t = Instant::now();
        let n = slots.len();
        let Some(&(j0, t0)) = slots.first() else { return Ok(()) };
        let size = jobs[j0].plan.tiles[t0].input;
        if !sh.card.input.rectangular && size != sh.card.input_size() {
            return Err(DetectError::Inference(format!(
                "input {}x{} planned for a model of fixed size {}x{}",
                size.width, size.height, sh.card.input.width, sh.card.input.height
            )));
        }
        let (w, h) = (size.width as usize, size.height as usize);
        let slot_len = 3 * w * h;
        self.input.resize(n * slot_len, 0.0);
        for (k, &(j, tile)) in slots.iter().enumerate() {
            let lb = &jobs[j].plan.tiles[tile];
            fill::fill_nchw(&jobs[j].image, lb, sh.norm, &mut self.input[k * slot_len..(k + 1) * slot_len])
                .map_err(|e| DetectError::Inference(e.to_string()))?;
        }
        self.sizes.clear();
        for _ in 0..n {
            self.sizes.extend([w as i64, h as i64]);
        }
        let t_run = Instant::now();
        self.times.fill += t_run - t;
        let inference = |e: ort::Error| DetectError::Inference(e.to_string());
        let tensor = TensorRef::from_array_view(([n, 3, h, w], &self.input[..])).map_err(inference)?;
        let outputs = match &sh.card.input.sizes {
            Some(sizes_name) => {
                let sizes = TensorRef::from_array_view(([n, 2usize], &self.sizes[..])).map_err(inference)?;
                self.session.run(ort::inputs![
                    sh.card.input.name.as_str() => tensor,
                    sizes_name.as_str() => sizes,
                ])
            }
            None => self.session.run(ort::inputs![sh.card.input.name.as_str() => tensor]),
        }
        .map_err(inference)?;
        let t_post = Instant::now();
        self.times.infer += t_post - t_run;

        let card = sh.card;
        if card.grid_anchors().is_some() && !self.grids.iter().any(|(s, _)| *s == size) {
            if self.grids.len() >= 16 {
                self.grids.remove(0);
            }
            self.grids.push((size, decode::yolox_grid(size.width, size.height, &card.output.strides)));
        }
        let grid = self.grids.iter().find(|(s, _)| *s == size).map(|(_, g)| g.as_slice());
        let c = card.num_classes();
        let map = &card.class_map;
        let keep = |k: usize| map.get(k).is_some_and(Option::is_some);
        let output =
            |name: &str| outputs.get(name).ok_or_else(|| DetectError::Inference(format!("no output named {name:?}")));
        // The batch's outputs, checked once; each image's rows are its share of them.
        let batch = match card.output.format {
            OutputFormat::Yolox | OutputFormat::Yolov8 => {
                let (shape, data) = output(&card.output.name)?.try_extract_tensor::<f32>().map_err(inference)?;
                // (axis of the attributes, its length, axis of the anchors)
                let (attr_axis, attrs, anchor_axis) =
                    if card.output.format == OutputFormat::Yolox { (2, 5 + c, 1) } else { (1, 4 + c, 2) };
                if shape.len() != 3 || shape[attr_axis] as usize != attrs {
                    let expected = if attr_axis == 2 { format!("[N, A, {attrs}]") } else { format!("[N, {attrs}, A]") };
                    return Err(DetectError::Inference(format!("output shape {shape:?}, expected {expected}")));
                }
                let anchors = shape[anchor_axis] as usize;
                if let Some(g) = grid
                    && g.len() != anchors
                {
                    return Err(DetectError::Inference(format!(
                        "output has {anchors} anchors, the {w}x{h} input's grid {}",
                        g.len()
                    )));
                }
                Outputs::Yolo { data, anchors }
            }
            OutputFormat::Detr => {
                let (_, labels) = output(&card.output.labels)?.try_extract_tensor::<i64>().map_err(inference)?;
                let (_, boxes) = output(&card.output.boxes)?.try_extract_tensor::<f32>().map_err(inference)?;
                let (_, scores) = output(&card.output.scores)?.try_extract_tensor::<f32>().map_err(inference)?;
                let q = scores.len() / n.max(1);
                if labels.len() != n * q || boxes.len() != n * q * 4 {
                    return Err(DetectError::Inference(format!(
                        "DETR outputs disagree: {} labels, {} box values, {} scores for {n} images",
                        labels.len(),
                        boxes.len(),
                        scores.len()
                    )));
                }
                Outputs::Detr { labels, boxes, scores, queries: q }
            }
        };
        for (k, &(j, tile)) in slots.iter().enumerate() {
            self.cands.clear();
            match &batch {
                Outputs::Yolo { data, anchors } => {
                    let per_image = data.len() / n.max(1);
                    let data = &data[k * per_image..(k + 1) * per_image];
                    if card.output.format == OutputFormat::Yolox {
                        decode::decode_yolox(data, c, grid, sh.score, keep, &mut self.cands);
                    } else {
                        decode::decode_yolov8(data, c, *anchors, sh.score, keep, &mut self.cands);
                    }
                    decode::nms(&mut self.cands, card.thresholds.nms_iou);
                }
                Outputs::Detr { labels, boxes, scores, queries: q } => decode::decode_detr(
                    &labels[k * q..(k + 1) * q],
                    &boxes[k * q * 4..(k + 1) * q * 4],
                    &scores[k * q..(k + 1) * q],
                    sh.score,
                    keep,
                    &mut self.cands,
                ),
            }
            if let Some(iou) = card.thresholds.label_merge_iou {
                decode::merge_labels(&mut self.cands, iou);
            }
            let lb = &jobs[j].plan.tiles[tile];
            let edges = lb.inner_edges();
            // A box within 2 % of the window (at least 2 frame px) of an inner edge is cut by it.
            let (sx, sy) = lb.frame_per_scaled();
            let tol_x = (0.02 * lb.window.width as f32 * sx).max(2.0);
            let tol_y = (0.02 * lb.window.height as f32 * sy).max(2.0);
            self.found.extend(self.cands.iter().map(|cand| {
                let bbox = lb.to_frame(&cand.bbox);
                let near = |edge: Option<f32>, v: f32, tol: f32| edge.is_some_and(|e| (v - e).abs() <= tol);
                let cut = near(edges[0], bbox.x1, tol_x)
                    || near(edges[1], bbox.y1, tol_y)
                    || near(edges[2], bbox.x2, tol_x)
                    || near(edges[3], bbox.y2, tol_y);
                (j, TileCandidate { bbox, score: cand.score, class: cand.class, tile: tile as u16, cut })
            }));
        }
        self.times.postprocess += t_post.elapsed();
        Ok(())
    }
}

/// One batch's model outputs, as ONNX Runtime returned them.
enum Outputs<'a> {
    /// YOLOX `[N, A, 5 + C]` or YOLOv8 `[N, 4 + C, A]`, row-major.
    Yolo { data: &'a [f32], anchors: usize },
    /// `[N, Q]` labels, `[N, Q, 4]` boxes, `[N, Q]` scores.
    Detr { labels: &'a [i64], boxes: &'a [f32], scores: &'a [f32], queries: usize },
}

/// Checks the graph's input and output tensors against the card: names, ranks, and every fixed
/// dimension. Returns whether the batch dimension is dynamic (several images per run).
fn check_tensors(card: &ModelCard, session: &Session) -> Result<bool, DetectError> {
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
    let c = card.num_classes() as i64;
    let (w, h) =
        if card.input.rectangular { (-1, -1) } else { (i64::from(card.input.width), i64::from(card.input.height)) };
    let anchors = if card.input.rectangular { -1 } else { card.grid_anchors().map_or(-1, |n| n as i64) };
    let mut checks: Vec<(&str, &ort::value::Outlet, Vec<i64>)> = Vec::new();
    let input = &session.inputs()[find("input", session.inputs(), &card.input.name, "input.name")?];
    checks.push(("input", input, vec![-1, 3, h, w]));
    if let Some(sizes) = &card.input.sizes {
        checks.push(("input", &session.inputs()[find("input", session.inputs(), sizes, "input.sizes")?], vec![-1, 2]));
    }
    // (tensor name, card field, expected shape) of each output the format reads.
    let wanted: Vec<(&str, &str, Vec<i64>)> = match card.output.format {
        OutputFormat::Yolox => vec![(&card.output.name, "output.name", vec![-1, anchors, 5 + c])],
        OutputFormat::Yolov8 => vec![(&card.output.name, "output.name", vec![-1, 4 + c, -1])],
        OutputFormat::Detr => vec![
            (&card.output.labels, "output.labels", vec![-1, -1]),
            (&card.output.boxes, "output.boxes", vec![-1, -1, 4]),
            (&card.output.scores, "output.scores", vec![-1, -1]),
        ],
    };
    let outputs = session.outputs();
    for (name, field, expected) in wanted {
        checks.push(("output", &outputs[find("output", outputs, name, field)?], expected));
    }
    let show = |d: &[i64]| {
        let parts: Vec<String> = d.iter().map(|v| if *v < 0 { "N".into() } else { v.to_string() }).collect();
        format!("[{}]", parts.join(", "))
    };
    let shape = |o: &ort::value::Outlet| -> Vec<i64> {
        o.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default()
    };
    for (what, outlet, expected) in &checks {
        let actual = shape(outlet);
        // -1 on either side is a dynamic dimension: it fits anything. The batch (first) dimension may be
        // 1 or dynamic.
        let fits = actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected)
                .enumerate()
                .all(|(i, (a, e))| *a < 0 || (i == 0 && *a == 1) || (*e >= 0 && a == e) || (*e < 0 && i > 0));
        if !fits {
            let expected: Vec<i64> = expected.iter().enumerate().map(|(i, e)| if i == 0 { 1 } else { *e }).collect();
            return Err(mismatch(format!(
                "{what} {:?} has shape {}, but its card {} says {} ({:?} format, {c} classes)",
                outlet.name(),
                show(&actual),
                card.card_path.display(),
                show(&expected),
                card.output.format,
            )));
        }
    }
    let input_shape = shape(input);
    if card.input.rectangular && !(input_shape.len() == 4 && input_shape[2] < 0 && input_shape[3] < 0) {
        return Err(mismatch(format!(
            "input {:?} has shape {}: a fixed height and width, but its card {} says input.rectangular = true; \
             remove that line, or export the model with dynamic H and W",
            input.name(),
            show(&input_shape),
            card.card_path.display()
        )));
    }
    Ok(input_shape.first().is_some_and(|d| *d < 0))
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
