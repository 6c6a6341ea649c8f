//! The site file (TOML), every section of it: [`SiteFile`] as written, each default stated once (on
//! its section's `Default`), with the pure checks of each section (`problems()`, as (field,
//! message)). The box resolves it (relative paths, camera addresses, calibration files, bin lengths)
//! and reads the files it names at start-up; nothing here touches a file.
//!
//! - this module: the file, `[detector]`, `[[camera]]`, `[aggregate]`, `[store]`;
//! - [`tuning`]: `[tracker]`, `[rules]`, `[two_wheelers]`, `[scale]`, `[motion]`, `[pcu]`;
//! - [`network`]: `[mqtt]` and `[http]`, which the centre reads too.

mod network;
mod tuning;

pub use network::*;
pub use tuning::*;

use std::path::PathBuf;

use serde::Deserialize;

/// A site file as written (unknown fields refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// The junction's id: an MQTT topic level.
    pub site: String,
    #[serde(default)]
    pub detector: DetectorSection,
    #[serde(default)]
    pub tracker: TrackerConfig,
    #[serde(default)]
    pub rules: RuleParams,
    /// Riders and their bikes as one vehicle.
    #[serde(default)]
    pub two_wheelers: TwoWheelerParams,
    #[serde(default)]
    pub scale: ScaleParams,
    #[serde(default)]
    pub motion: MotionParams,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraSection>,
    #[serde(default)]
    pub aggregate: AggregateSection,
    #[serde(default)]
    pub store: StoreSection,
    /// Passenger-car unit factors per class.
    #[serde(default)]
    pub pcu: PcuFactors,
    /// Absent: store only.
    pub mqtt: Option<MqttConfig>,
    /// Absent: no HTTP endpoint.
    pub http: Option<HttpConfig>,
}

impl SiteFile {
    /// Every problem the sections have on their own, as (field, message), in the file's order. What
    /// needs the box (camera addresses, calibration files, bin lengths) is checked where it is
    /// resolved.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !is_identifier(&self.site) {
            out.push((
                "site".to_owned(),
                "must be letters, digits, '-', '_' or '.' (it is an MQTT topic level)".into(),
            ));
        }
        let prefixed = |section: &str, p: Vec<(&'static str, String)>| {
            p.into_iter().map(move |(f, m)| (format!("{section}.{f}"), m)).collect::<Vec<_>>()
        };
        out.extend(prefixed("detector", self.detector.problems()));
        out.extend(self.tracker.problems().into_iter().map(|(f, m)| (format!("tracker.{f}"), m)));
        out.extend(prefixed("rules", self.rules.problems()));
        out.extend(prefixed("pcu", self.pcu.problems()));
        out.extend(prefixed("two_wheelers", self.two_wheelers.problems()));
        out.extend(prefixed("scale", self.scale.problems()));
        out.extend(prefixed("motion", self.motion.problems()));
        if self.cameras.is_empty() {
            out.push(("camera".to_owned(), "no [[camera]]: at least one is needed".into()));
        }
        for (i, cam) in self.cameras.iter().enumerate() {
            out.extend(cam.problems().into_iter().map(|(f, m)| (format!("camera[{i}] ({}).{f}", cam.id), m)));
            if self.cameras[..i].iter().any(|o| o.id == cam.id) {
                out.push((format!("camera[{i}] ({}).id", cam.id), "used by another camera".into()));
            }
        }
        if self.aggregate.bins.is_empty() {
            out.push(("aggregate.bins".to_owned(), "at least one bin length is needed".into()));
        }
        out.extend(prefixed("store", self.store.problems()));
        out.extend(self.http.iter().flat_map(HttpConfig::problems));
        out.extend(self.mqtt.iter().flat_map(MqttConfig::problems));
        out
    }
}

/// Letters, digits, '-', '_' or '.': ids that become MQTT topic levels, metric labels and file names.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `value` finite and within `range`, else a problem naming `field` and the range (with `unit`).
fn in_range<T: PartialOrd + std::fmt::Display + Copy + Into<f64>>(
    out: &mut Vec<(&'static str, String)>,
    field: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) {
    if !(value.into().is_finite() && range.contains(&value)) {
        out.push((field, format!("must be {} to {}{unit} (got {value})", range.start(), range.end())));
    }
}

// ---------------------------------------------------------------------------------------------------
// [detector]

/// Detect on every 2nd frame by default: on both bundled truth clips it counts what detecting on every
/// frame counts (7 of 8, 0 of 4) at 1.7–1.8 times the frames per second; every 3rd frame lost a
/// crossing (`junction eval --sweep`, benches/README.md).
pub const DEFAULT_EVERY: u32 = 2;

/// Class-aware NMS IoU of `junction run` and `eval` (`[detector] nms_iou`), over the model card's
/// (YOLOX: 0.45). Two motorcycles side by side or one just behind another overlap by IoU 0.45–0.6; at
/// 0.45 NMS kept one of them. Over the six truth clips (`junction eval --sweep "nms_iou=0.45|0.6
/// match_cost=0.8|0.9 score=0.2|0.3"`, benches/README.md) 0.6 with `match_cost` 0.9 had the fewest
/// errors. `junction detect` keeps the card's value: it shows the model as its authors decode it.
pub const DEFAULT_NMS_IOU: f32 = 0.6;

/// Tiles overlap by a fifth of their side: a vehicle up to that long is whole in one of them.
pub const DEFAULT_TILE_OVERLAP: f32 = 0.2;

/// `[detector]`: the model and how it runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorSection {
    /// The model card (TOML), relative to the site file.
    pub model: PathBuf,
    pub provider: Provider,
    /// ONNX Runtime intra-op threads (0: one per physical core).
    pub threads: usize,
    pub optimization: OptLevel,
    /// The ONNX Runtime shared library (default: searched for).
    pub onnxruntime: Option<PathBuf>,
    /// Detector score threshold feeding the tracker; default: the tracker's `low_score`.
    pub score: Option<f32>,
    /// Class-aware NMS IoU; default [`DEFAULT_NMS_IOU`].
    pub nms_iou: Option<f32>,
    /// Detect on every Nth frame; the tracker predicts the others.
    pub every: u32,
    /// ONNX Runtime's idle intra-op threads spin between runs (off by default: measured faster here).
    pub spinning: bool,
    /// Share of a tile's side that neighbouring tiles overlap by (a vehicle on a border is whole in one).
    pub tile_overlap: f32,
    /// Most images (tiles, cameras' frames) per model run, for a model with a dynamic batch dimension.
    pub max_batch: usize,
    /// Model runs side by side, each on one thread, when a round has several images (0: one per
    /// intra-op thread; 1: off).
    pub parallel: usize,
    /// Milliseconds to wait for other cameras' frames once one is waiting, so that they share a run
    /// (0: batch only what is already waiting; no added latency).
    pub batch_wait_ms: u64,
}

impl Default for DetectorSection {
    fn default() -> Self {
        Self {
            model: PathBuf::from("models/yolox_nano.toml"),
            provider: Provider::Cpu,
            threads: 0,
            optimization: OptLevel::All,
            onnxruntime: None,
            score: None,
            nms_iou: None,
            every: DEFAULT_EVERY,
            spinning: false,
            tile_overlap: DEFAULT_TILE_OVERLAP,
            max_batch: 8,
            parallel: 0,
            batch_wait_ms: 0,
        }
    }
}

impl DetectorSection {
    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        if let Some(s) = self.score
            && !(0.0..=1.0).contains(&s)
        {
            out.push(("score", "must be within 0..=1".into()));
        }
        if let Some(iou) = self.nms_iou
            && !(0.05..=0.95).contains(&iou)
        {
            out.push(("nms_iou", "must be within 0.05..=0.95".into()));
        }
        if !(1..=30).contains(&self.every) {
            out.push(("every", "must be 1 to 30 (1: detect on every frame)".into()));
        }
        if !(0.0..=0.5).contains(&self.tile_overlap) {
            out.push(("tile_overlap", "must be within 0..=0.5 (a share of a tile's side)".into()));
        }
        if !(1..=64).contains(&self.max_batch) {
            out.push(("max_batch", "must be 1 to 64 images".into()));
        }
        if self.parallel > 64 {
            out.push(("parallel", "must be at most 64 model runs at once (0: one per thread)".into()));
        }
        if self.batch_wait_ms > 1000 {
            out.push(("batch_wait_ms", "must be at most 1000 ms (it delays every camera's analysis)".into()));
        }
        out
    }
}

/// Where inference runs. There is no silent fallback: a provider that cannot be registered is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    /// CUDA (x86 GPU boxes; Jetson). Needs a GPU build of ONNX Runtime.
    Cuda,
    /// TensorRT with FP16 and an engine cache on disk (Jetson). Needs a GPU build of ONNX Runtime.
    Tensorrt,
}

/// ONNX Runtime graph optimisation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

// ---------------------------------------------------------------------------------------------------
// [[camera]]

/// Seconds without a frame before a live stream is restarted, by default.
pub const DEFAULT_STALL_TIMEOUT_S: u64 = 10;

/// One `[[camera]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    pub id: String,
    /// rtsp://…, a file (relative to the site file), v4l2://…, test://…
    pub uri: Option<String>,
    /// The calibration file (frame size, rules, ground plane), relative to the site file.
    pub calibration: Option<PathBuf>,
    pub on_inference_busy: Option<OnInferenceBusy>,
    /// Live sources: seconds without a frame before the stream is restarted (default
    /// [`DEFAULT_STALL_TIMEOUT_S`]).
    pub stall_timeout_s: Option<f64>,
    /// Files: replay at the recording's own rate, as a live camera (load tests, demos).
    #[serde(default)]
    pub realtime: bool,
    /// Model inputs the region of interest is split into: "auto" (the default) or [cols, rows].
    pub tiles: Option<TilesDoc>,
    /// Video decoder: auto | software | nvv4l2decoder | nvh264dec | vaapi.
    #[serde(default)]
    pub decoder: Decoder,
    /// `junction collect` may save this camera's frames for labelling (default false: frames of
    /// people and plates stay off the disk unless a person switched it on).
    #[serde(default)]
    pub collect: bool,
}

impl CameraSection {
    /// Every problem with the values, as (field, message). The address is checked by the box.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        if !is_identifier(&self.id) {
            out.push(("id", "must be letters, digits, '-', '_' or '.' (it is an MQTT topic level)".into()));
        }
        match &self.tiles {
            Some(TilesDoc::Word(w)) if w != "auto" => {
                out.push(("tiles", format!("{w:?}: expected \"auto\" or [cols, rows]")));
            }
            Some(TilesDoc::Grid([cols, rows])) if !tile_grid_fits(*cols, *rows) => {
                out.push(("tiles", format!("[cols, rows]: each must be 1 to {MAX_TILES_PER_SIDE}")));
            }
            _ => {}
        }
        if let Some(s) = self.stall_timeout_s
            && !(s.is_finite() && s > 0.0 && s <= 3600.0)
        {
            out.push(("stall_timeout_s", "must be more than 0 and at most 3600 seconds".into()));
        }
        out
    }
}

/// Tiles across and down a camera's region, at most (each model input is one run).
pub const MAX_TILES_PER_SIDE: u32 = 8;

/// Whether a grid of `cols × rows` tiles may be asked for: each 1 to [`MAX_TILES_PER_SIDE`].
pub fn tile_grid_fits(cols: u32, rows: u32) -> bool {
    (1..=MAX_TILES_PER_SIDE).contains(&cols) && (1..=MAX_TILES_PER_SIDE).contains(&rows)
}

/// Tiles as written: `"auto"` or `[cols, rows]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TilesDoc {
    Word(String),
    Grid([u32; 2]),
}

/// What happens when a frame arrives while the previous one is still being analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum OnInferenceBusy {
    /// Keep only the newest 2 frames (the box's `source::KEEP_LATEST_FRAMES`); older ones are dropped
    /// (and counted). For live cameras: the analysis stays current, at the cost of frames skipped
    /// under load.
    KeepLatest,
    /// Hold the decoder until the frame is taken; nothing is dropped. For files: every frame is analysed,
    /// at whatever rate inference allows. On a live source this stalls the camera's pipeline.
    Block,
}

/// Which video decoder a camera uses (`[[camera]] decoder`): GStreamer's choice by rank, or one
/// kind. A kind that is not installed is refused when the camera opens, naming the decoders there are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum Decoder {
    /// The highest-ranked decoder GStreamer has for the stream (a hardware one where its plugin ranks
    /// it first, as NVIDIA's do on a Jetson).
    #[default]
    Auto,
    /// CPU decoders only (libav's avdec_*): the same on every box, for comparisons and as a fallback.
    Software,
    /// Jetson's V4L2 hardware decoder (NVIDIA's L4T GStreamer plugins).
    Nvv4l2decoder,
    /// NVDEC on x86 NVIDIA GPUs (gst-plugins-bad's nvcodec), H.264 only.
    Nvh264dec,
    /// VA-API (Intel and AMD GPUs): gstreamer-vaapi's vaapi*dec or gst-plugins-bad's va*dec.
    Vaapi,
}

impl Decoder {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decoder::Auto => "auto",
            Decoder::Software => "software",
            Decoder::Nvv4l2decoder => "nvv4l2decoder",
            Decoder::Nvh264dec => "nvh264dec",
            Decoder::Vaapi => "vaapi",
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// [aggregate], [store]

/// `[aggregate]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateSection {
    /// Bin lengths (`1m`, `15m`, `1h`), each dividing a day so bins align to UTC midnight; parsed and
    /// checked by the box.
    pub bins: Vec<String>,
}

impl Default for AggregateSection {
    fn default() -> Self {
        Self { bins: vec!["1m".into(), "15m".into()] }
    }
}

/// Seconds between checkpoints of open bins, by default.
pub const DEFAULT_CHECKPOINT_S: f64 = 10.0;

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The SQLite file, relative to the site file.
    pub path: PathBuf,
    pub retention_days: u32,
    /// Bound on the store's live data, MiB.
    pub max_size_mb: u64,
    /// Folder of the daily ATSPM CSV files of loop detector events (default: `atspm/` beside the store).
    pub atspm_dir: Option<PathBuf>,
    /// Seconds between checkpoints of each camera's open bins: what a crash can lose at most.
    pub checkpoint_s: f64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/junction/junction.db"),
            retention_days: 30,
            max_size_mb: 1024,
            atspm_dir: None,
            checkpoint_s: DEFAULT_CHECKPOINT_S,
        }
    }
}

impl StoreSection {
    /// Every problem with the values, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        // Ten years: a larger span only risks arithmetic past the calendar (it panicked once).
        in_range(&mut out, "retention_days", self.retention_days, 1..=3650, " days");
        in_range(&mut out, "max_size_mb", self.max_size_mb as f64, 16.0..=16.0 * 1024.0 * 1024.0, " MiB");
        if !(self.checkpoint_s.is_finite() && (1.0..=3600.0).contains(&self.checkpoint_s)) {
            out.push(("checkpoint_s", "must be 1 to 3600 seconds".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_reads_and_has_no_problems() {
        let site: SiteFile = toml::from_str(include_str!("../../deploy/junction.example.toml")).unwrap();
        assert_eq!((site.site.as_str(), site.cameras.len()), ("example-street", 1));
        assert!(matches!(site.cameras[0].tiles, Some(TilesDoc::Grid([1, 1]))));
        assert_eq!(site.cameras[0].on_inference_busy, Some(OnInferenceBusy::Block));
        assert_eq!(site.problems(), Vec::<(String, String)>::new());
    }

    #[test]
    fn an_empty_section_is_its_defaults() {
        let site: SiteFile = toml::from_str("site = \"s\"\n[[camera]]\nid = \"a\"\n[detector]\n[tracker]\n").unwrap();
        let d = DetectorSection::default();
        assert_eq!((site.detector.every, site.detector.tile_overlap), (DEFAULT_EVERY, DEFAULT_TILE_OVERLAP));
        assert_eq!((site.detector.max_batch, &site.detector.model), (d.max_batch, &d.model));
        assert_eq!(site.tracker.min_hits, TrackerConfig::default().min_hits);
        assert_eq!(site.store.checkpoint_s, DEFAULT_CHECKPOINT_S);
        assert_eq!(site.aggregate.bins, ["1m", "15m"]);
        assert_eq!((site.cameras[0].decoder.as_str(), site.cameras[0].stall_timeout_s), ("auto", None));
        assert!(site.problems().is_empty(), "{:?}", site.problems());
    }

    #[test]
    fn every_section_names_its_problems_by_field() {
        let text = r#"
            site = "a b"
            [detector]
            every = 31
            [tracker]
            low_score = 0.5
            high_score = 0.4
            [rules]
            band_share = 2.0
            [pcu]
            motorcycle = -1.0
            [two_wheelers]
            leg_reach = 3.0
            [scale]
            target_px = 1.0
            [motion]
            threshold = 0
            [[camera]]
            id = "a"
            tiles = [9, 1]
            [[camera]]
            id = "a"
            stall_timeout_s = 0
            [aggregate]
            bins = []
            [store]
            checkpoint_s = 0.5
        "#;
        let site: SiteFile = toml::from_str(text).unwrap();
        let fields: Vec<String> = site.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(
            fields,
            [
                "site",
                "detector.every",
                "tracker.low_score",
                "rules.band_share",
                "pcu.motorcycle",
                "two_wheelers.leg_reach",
                "scale.target_px",
                "motion.threshold",
                "camera[0] (a).tiles",
                "camera[1] (a).stall_timeout_s",
                "camera[1] (a).id",
                "aggregate.bins",
                "store.checkpoint_s",
            ]
        );
        let pcu = site.problems().into_iter().find(|p| p.0 == "pcu.motorcycle").unwrap().1;
        assert_eq!(pcu, "must be 0 to 10 passenger-car units (got -1)");
    }

    #[test]
    fn unknown_fields_are_refused_in_every_section() {
        for section in ["detector", "tracker", "rules", "two_wheelers", "scale", "motion", "aggregate", "store", "pcu"]
        {
            let text = format!("site = \"s\"\n[{section}]\nno_such_field = 1\n");
            let e = toml::from_str::<SiteFile>(&text).unwrap_err().to_string();
            assert!(e.contains("no_such_field"), "[{section}]: {e}");
        }
        let e = toml::from_str::<SiteFile>("site = \"s\"\n[[camera]]\nid = \"a\"\nspeed = 1\n").unwrap_err();
        assert!(e.to_string().contains("speed"), "{e}");
    }
}
