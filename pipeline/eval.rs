//! `junction eval`: a clip and its truth file → count errors per line, direction and class, crossings
//! matched in time, and frames per second; `--sweep` runs a grid of settings (model, region of
//! interest, tiles, detect-every, thresholds) so that an engineer commissioning a camera picks its
//! settings from evidence.
//!
//! The counts come from the same code as `junction run` ([`crate::runtime::run`]) on an ad-hoc site of
//! one camera whose lines are the truth file's, with a throw-away store.
//!
//! A truth file (TOML, beside its clip; `tests/data/*.truth.toml`):
//!
//! ```toml
//! clip = "street_topdown_640x360.mp4"      # relative to this file
//! frame_size = [640, 360]
//! until = 22.1                              # optional: count up to this second only (a scene cut)
//! evidence = "street_topdown_scan_x320.png" # what the counts were read from (optional)
//! [[line]]
//! id = "x320"
//! points = [[320, 60], [320, 220]]          # frame pixels
//! in_side = "left"
//! anchor = "centre"
//! expected = { in = { car = 3 }, out = { car = 4, bus = 1 } }
//! [[line.crossing]]                         # optional: when each vehicle crossed
//! t = 6.1                                   # seconds from the clip's first frame
//! direction = "out"
//! class = "car"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::aggregate::FlowReport;
use crate::analytics::{Anchor, Direction, EventKind, LineSpec, Side, TrafficEvent};
use crate::config::{CameraConfig, Config, DEFAULT_TILE_OVERLAP, Roi, parse_roi, parse_tiles};
use crate::detect::VehicleClass;
use crate::geometry::{FramePoint, TileGrid, TileSpec};
use crate::runtime::{Observer, RunError, RunOptions};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("truth file {path}: {message}")]
    Truth { path: PathBuf, message: String },
    #[error("--sweep {spec:?}: {message}")]
    Sweep { spec: String, message: String },
    #[error("{path}: {source}")]
    Store { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Run(#[from] RunError),
}

/// One line's crossing, as read off the evidence.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TruthCrossing {
    /// Seconds from the clip's first frame (PTS).
    pub t: f64,
    pub direction: Direction,
    pub class: VehicleClass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTruthLine {
    id: String,
    points: [[f32; 2]; 2],
    #[serde(default)]
    in_side: Side,
    #[serde(default)]
    anchor: Anchor,
    /// Vehicles per direction and class.
    expected: BTreeMap<Direction, BTreeMap<VehicleClass, u32>>,
    #[serde(default, rename = "crossing")]
    crossings: Vec<TruthCrossing>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTruth {
    clip: PathBuf,
    frame_size: [u32; 2],
    #[serde(default)]
    until: Option<f64>,
    #[serde(default)]
    evidence: Option<PathBuf>,
    #[serde(default)]
    note: Option<String>,
    #[serde(rename = "line")]
    lines: Vec<RawTruthLine>,
}

/// A clip and what crosses its lines.
#[derive(Debug, Clone)]
pub struct Truth {
    pub path: PathBuf,
    pub clip: PathBuf,
    pub frame_size: [u32; 2],
    /// Seconds from the clip's first frame after which nothing counts (a clip that cuts to another
    /// scene); `None`: the whole clip.
    pub until: Option<f64>,
    /// What the counts were read from (a line scan), and how.
    pub evidence: Option<PathBuf>,
    pub note: Option<String>,
    pub lines: Vec<TruthLine>,
}

#[derive(Debug, Clone)]
pub struct TruthLine {
    pub spec: LineSpec,
    pub expected: BTreeMap<(Direction, VehicleClass), u32>,
    pub crossings: Vec<TruthCrossing>,
}

impl Truth {
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let bad = |message: String| EvalError::Truth { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let raw: RawTruth = toml::from_str(&text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let clip = dir.join(&raw.clip);
        if !clip.is_file() {
            return Err(bad(format!("clip: {} is not a file", clip.display())));
        }
        if raw.lines.is_empty() {
            return Err(bad("no [[line]]: nothing to count".into()));
        }
        if let Some(u) = raw.until
            && !(u.is_finite() && u > 0.0)
        {
            return Err(bad("until: must be seconds > 0".into()));
        }
        let [w, h] = raw.frame_size;
        let mut lines = Vec::new();
        for (i, l) in raw.lines.iter().enumerate() {
            let [[x1, y1], [x2, y2]] = l.points;
            if (x1 - x2).hypot(y1 - y2) < 1.0 {
                return Err(bad(format!("line[{i}] ({}).points: the two points are the same", l.id)));
            }
            if [x1, x2].iter().any(|x| !(0.0..=w as f32).contains(x))
                || [y1, y2].iter().any(|y| !(0.0..=h as f32).contains(y))
            {
                return Err(bad(format!("line[{i}] ({}).points: outside the {w}x{h} frame", l.id)));
            }
            if lines.iter().any(|o: &TruthLine| *o.spec.id == *l.id) {
                return Err(bad(format!("line[{i}] ({}).id: used twice", l.id)));
            }
            let expected: BTreeMap<(Direction, VehicleClass), u32> =
                l.expected.iter().flat_map(|(d, by_class)| by_class.iter().map(move |(c, n)| ((*d, *c), *n))).collect();
            for (k, c) in l.crossings.iter().enumerate() {
                if !(c.t.is_finite() && c.t >= 0.0) {
                    return Err(bad(format!("line[{i}] ({}).crossing[{k}].t: must be seconds >= 0", l.id)));
                }
            }
            if !l.crossings.is_empty() {
                let mut listed: BTreeMap<(Direction, VehicleClass), u32> = BTreeMap::new();
                for c in &l.crossings {
                    *listed.entry((c.direction, c.class)).or_default() += 1;
                }
                let nonzero: BTreeMap<_, _> = expected.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (*k, *n)).collect();
                if listed != nonzero {
                    return Err(bad(format!(
                        "line[{i}] ({}): the crossings listed ({}) disagree with expected",
                        l.id,
                        l.crossings.len()
                    )));
                }
            }
            lines.push(TruthLine {
                spec: LineSpec {
                    id: l.id.as_str().into(),
                    a: FramePoint { x: x1, y: y1 },
                    b: FramePoint { x: x2, y: y2 },
                    in_side: l.in_side,
                    anchor: l.anchor,
                    lane: None,
                    classes: None,
                },
                expected,
                crossings: l.crossings.clone(),
            });
        }
        let evidence = raw.evidence.map(|e| dir.join(e));
        if let Some(e) = evidence.as_ref().filter(|e| !e.is_file()) {
            return Err(bad(format!("evidence: {} is not a file", e.display())));
        }
        Ok(Self {
            path: path.to_owned(),
            clip,
            frame_size: raw.frame_size,
            until: raw.until,
            evidence,
            note: raw.note,
            lines,
        })
    }
}

/// What can change between runs of one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Model card.
    pub model: PathBuf,
    pub roi: Roi,
    pub tiles: TileSpec,
    pub every: u32,
    /// The tracker's `high_score` and `new_track_score` (default: the tracker's).
    pub score: Option<f32>,
    /// `tracker.class_high_score` for motorcycles.
    pub motorcycle_score: Option<f32>,
    pub two_wheelers: bool,
    /// `motion.enabled`: skip inference on a still scene ([`crate::motion`]).
    pub motion: bool,
    /// The detector's class-aware NMS IoU (default: [`crate::detect::DEFAULT_NMS_IOU`]).
    pub nms_iou: Option<f32>,
    /// The tracker's first-association gate `match_cost` (default: the tracker's).
    pub match_cost: Option<f32>,
    /// `scale.target_px`: model pixels a motorcycle must be tall at the rules (`tiles = auto`).
    pub scale_px: Option<f32>,
    /// ONNX Runtime intra-op threads (0: ONNX Runtime's choice).
    pub threads: usize,
    pub onnxruntime: Option<PathBuf>,
}

impl Settings {
    /// junction's defaults with this model card.
    pub fn defaults(model: PathBuf) -> Self {
        let cam = CameraConfig::new("camera", String::new());
        Self {
            model,
            roi: cam.roi,
            tiles: cam.tiles,
            every: crate::detect::DEFAULT_EVERY,
            score: None,
            motorcycle_score: None,
            two_wheelers: true,
            motion: true,
            nms_iou: None,
            match_cost: None,
            scale_px: None,
            threads: 0,
            onnxruntime: None,
        }
    }

    /// Every setting, named, in the order tables show them.
    fn fields(&self) -> [(&'static str, String); 11] {
        let score = |s: Option<f32>| s.map_or("default".into(), |s| s.to_string());
        [
            ("model", model_name(&self.model)),
            ("roi", roi_name(&self.roi)),
            ("tiles", tiles_name(&self.tiles)),
            ("every", self.every.to_string()),
            ("score", score(self.score)),
            ("moto_score", score(self.motorcycle_score)),
            ("two_wheelers", if self.two_wheelers { "on" } else { "off" }.into()),
            ("motion", if self.motion { "on" } else { "off" }.into()),
            ("nms_iou", score(self.nms_iou)),
            ("match_cost", score(self.match_cost)),
            ("scale_px", self.scale_px.map_or("default".into(), |s| s.to_string())),
        ]
    }

    /// `key=value` pairs that differ from `base`, for tables ("defaults" when none).
    pub fn describe(&self, base: &Settings) -> String {
        let parts: Vec<String> = self
            .fields()
            .into_iter()
            .zip(base.fields())
            .filter(|(a, b)| a.1 != b.1)
            .map(|((k, v), _)| format!("{k}={v}"))
            .collect();
        if parts.is_empty() { "defaults".into() } else { parts.join(" ") }
    }

    /// Every setting, named.
    pub fn full(&self) -> BTreeMap<&'static str, String> {
        self.fields().into_iter().collect()
    }

    /// Sets one `key=value` (the keys of `--sweep`).
    pub fn set(&mut self, key: &str, value: &str, models: &Path) -> Result<(), String> {
        let number = |v: &str| {
            v.parse::<f32>().ok().filter(|s| (0.0..=1.0).contains(s)).ok_or(format!("{key}={v}: a score 0-1"))
        };
        match key {
            "model" => {
                self.model =
                    if value.ends_with(".toml") { PathBuf::from(value) } else { models.join(format!("{value}.toml")) }
            }
            "roi" => self.roi = parse_roi(value)?,
            "tiles" => self.tiles = parse_tiles(value, DEFAULT_TILE_OVERLAP)?,
            "every" => {
                self.every = value.parse().ok().filter(|n| *n >= 1).ok_or(format!("every={value}: 1 or more"))?
            }
            "score" => self.score = if value == "default" { None } else { Some(number(value)?) },
            "moto_score" => self.motorcycle_score = if value == "default" { None } else { Some(number(value)?) },
            "nms_iou" => self.nms_iou = if value == "default" { None } else { Some(number(value)?) },
            "match_cost" => self.match_cost = if value == "default" { None } else { Some(number(value)?) },
            "scale_px" => {
                self.scale_px = if value == "default" {
                    None
                } else {
                    Some(
                        value
                            .parse()
                            .ok()
                            .filter(|s| (4.0..=200.0).contains(s))
                            .ok_or(format!("scale_px={value}: model pixels 4-200"))?,
                    )
                }
            }
            "two_wheelers" => {
                self.two_wheelers = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("two_wheelers={value}: on or off")),
                }
            }
            "motion" => {
                self.motion = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("motion={value}: on or off")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown key {key:?} (model, roi, tiles, every, score, moto_score, two_wheelers, motion, \
                     nms_iou, match_cost, scale_px)"
                ));
            }
        }
        Ok(())
    }
}

fn model_name(card: &Path) -> String {
    card.file_stem().map_or_else(|| card.display().to_string(), |s| s.to_string_lossy().into_owned())
}

fn roi_name(r: &Roi) -> String {
    match r {
        Roi::Auto { .. } => "auto".into(),
        Roi::Full => "full".into(),
        Roi::Rect(r) => format!("{},{},{},{}", r.x, r.y, r.x + r.width, r.y + r.height),
    }
}

fn tiles_name(t: &TileSpec) -> String {
    match t {
        TileSpec::Grid(TileGrid { cols, rows, .. }) => format!("{cols}x{rows}"),
        TileSpec::Auto { .. } => "auto".into(),
    }
}

/// The default sweep: junction's defaults, then one setting changed at a time.
pub const DEFAULT_SWEEP: &[&str] = &[
    "",
    "every=1",
    "every=3",
    "roi=full",
    "tiles=1",
    "tiles=2x1",
    "model=yolox_nano_640",
    "model=deimv2_femto",
    "score=0.25",
    "score=0.4",
    "moto_score=0.2",
    "two_wheelers=off",
    "motion=off",
    "nms_iou=0.45",
    "match_cost=0.8",
    "scale_px=20",
    "scale_px=32",
];

/// The runs of a sweep: `spec` is `key=v1|v2 key2=…` (every combination), or `None` for
/// [`DEFAULT_SWEEP`] (one change at a time from `base`).
pub fn sweep(base: &Settings, spec: Option<&str>, models: &Path) -> Result<Vec<Settings>, EvalError> {
    let err = |spec: &str, message: String| EvalError::Sweep { spec: spec.to_owned(), message };
    let Some(spec) = spec else {
        return DEFAULT_SWEEP
            .iter()
            .map(|kv| {
                let mut s = base.clone();
                if let Some((k, v)) = kv.split_once('=') {
                    s.set(k, v, models).map_err(|m| err(kv, m))?;
                }
                Ok(s)
            })
            .collect();
    };
    let mut runs = vec![base.clone()];
    for part in spec.split_whitespace() {
        let (k, vs) = part.split_once('=').ok_or_else(|| err(spec, format!("{part:?} is not key=v1|v2")))?;
        let mut next = Vec::new();
        for s in &runs {
            for v in vs.split('|') {
                let mut s = s.clone();
                s.set(k, v, models).map_err(|m| err(spec, m))?;
                next.push(s);
            }
        }
        runs = next;
    }
    if runs.len() > 200 {
        return Err(err(spec, format!("{} runs: at most 200", runs.len())));
    }
    Ok(runs)
}

/// One cell of the comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    pub line: String,
    pub direction: Direction,
    pub class: VehicleClass,
    pub expected: u32,
    pub counted: u32,
}

/// One run of a clip with one set of settings, compared with the truth.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub settings: BTreeMap<&'static str, String>,
    pub frames: u64,
    /// Frames the detector ran on.
    pub detected: u64,
    /// Analysed frames per second of wall time, model loading included.
    pub fps: f64,
    pub cells: Vec<Cell>,
    pub expected: u32,
    pub counted: u32,
    /// Σ |counted − expected| over lines × directions × classes: a motorcycle counted as a car is two.
    pub class_errors: u32,
    /// Σ |counted − expected| over lines × directions, classes pooled.
    pub volume_errors: u32,
    /// Truth crossings with a counted crossing of the same line and direction within `tolerance_s`.
    pub matched: Option<u32>,
    pub listed: u32,
}

/// Collects the crossings of a run.
#[derive(Default)]
struct Crossings(Vec<(String, Direction, VehicleClass, f64)>);

impl Observer for Crossings {
    fn event(&mut self, _camera: &str, e: &TrafficEvent) {
        if let EventKind::Crossing { direction } = e.kind {
            self.0.push((e.rule.to_string(), direction, e.class, e.pts.as_secs_f64()));
        }
    }
    fn report(&mut self, _: &FlowReport) {}
}

/// Runs the clip once with `settings` and compares with the truth. Crossing times match within
/// `tolerance_s` of the clip's first frame's PTS.
pub fn evaluate(truth: &Truth, settings: &Settings, tolerance_s: f64) -> Result<Outcome, EvalError> {
    let mut cam = CameraConfig::new("camera", truth.clip.display().to_string());
    cam.lines = truth.lines.iter().map(|l| l.spec.clone()).collect();
    cam.roi = settings.roi;
    cam.tiles = settings.tiles;
    let mut cfg = Config::adhoc(settings.model.clone(), cam);
    cfg.detector.every = settings.every;
    cfg.detector.intra_threads = settings.threads;
    cfg.detector.onnxruntime.clone_from(&settings.onnxruntime);
    if let Some(s) = settings.score {
        cfg.tracker.high_score = s;
        cfg.tracker.new_track_score = s;
        cfg.tracker.low_score = cfg.tracker.low_score.min(s);
    }
    if let Some(s) = settings.motorcycle_score {
        cfg.tracker.class_high_score.insert(VehicleClass::Motorcycle, s);
    }
    cfg.detector.score = Some(cfg.tracker.low_score);
    cfg.two_wheelers.enabled = settings.two_wheelers;
    cfg.motion.enabled = settings.motion;
    if let Some(iou) = settings.nms_iou {
        cfg.detector.nms_iou = Some(iou);
    }
    if let Some(c) = settings.match_cost {
        cfg.tracker.match_cost = c;
    }
    if let Some(px) = settings.scale_px {
        cfg.scale.target_px = px;
    }
    // A throw-away store: the counts are what matters.
    let dir = std::env::temp_dir().join(format!("junction-eval-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).map_err(|source| EvalError::Store { path: dir.clone(), source })?;
    cfg.store.path = dir.join("eval.db");
    cfg.store.atspm_dir = dir.join("atspm");
    let mut seen = Crossings::default();
    let started = Instant::now();
    let opts = RunOptions {
        start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_680_000)),
        ..RunOptions::default()
    };
    let result = crate::runtime::run(&cfg, &opts, &mut seen, &AtomicBool::new(false));
    let wall = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    let summary = result?;
    if let Some(until) = truth.until {
        seen.0.retain(|c| c.3 <= until);
    }
    let cam = summary.cameras.first();
    let frames = cam.map_or(0, |c| c.frames);
    Ok(compare(
        truth,
        settings.full(),
        frames,
        cam.map_or(0, |c| c.detected),
        frames as f64 / wall.max(1e-9),
        &seen.0,
        tolerance_s,
    ))
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Counts of a run (`crossings`: line, direction, class, seconds from the first frame) against the
/// truth.
fn compare(
    truth: &Truth,
    settings: BTreeMap<&'static str, String>,
    frames: u64,
    detected: u64,
    fps: f64,
    crossings: &[(String, Direction, VehicleClass, f64)],
    tolerance_s: f64,
) -> Outcome {
    let mut cells = Vec::new();
    let (mut class_errors, mut volume_errors, mut matched, mut listed) = (0, 0, 0, 0);
    for l in &truth.lines {
        let id = &*l.spec.id;
        let mut counted: BTreeMap<(Direction, VehicleClass), u32> = BTreeMap::new();
        for c in crossings.iter().filter(|c| c.0 == id) {
            *counted.entry((c.1, c.2)).or_default() += 1;
        }
        let mut keys: Vec<(Direction, VehicleClass)> = l.expected.keys().chain(counted.keys()).copied().collect();
        keys.sort();
        keys.dedup();
        for (d, class) in keys {
            let expected = l.expected.get(&(d, class)).copied().unwrap_or(0);
            let n = counted.get(&(d, class)).copied().unwrap_or(0);
            class_errors += expected.abs_diff(n);
            cells.push(Cell { line: id.to_owned(), direction: d, class, expected, counted: n });
        }
        for d in [Direction::In, Direction::Out] {
            let e: u32 = l.expected.iter().filter(|((x, _), _)| *x == d).map(|(_, n)| n).sum();
            let n: u32 = counted.iter().filter(|((x, _), _)| *x == d).map(|(_, n)| n).sum();
            volume_errors += e.abs_diff(n);
        }
        // Each truth crossing takes the nearest unused counted crossing of its line and direction.
        let mut used = vec![false; crossings.len()];
        for t in &l.crossings {
            listed += 1;
            let best = crossings
                .iter()
                .enumerate()
                .filter(|(k, c)| !used[*k] && c.0 == id && c.1 == t.direction && (c.3 - t.t).abs() <= tolerance_s)
                .min_by(|a, b| (a.1.3 - t.t).abs().total_cmp(&(b.1.3 - t.t).abs()));
            if let Some((k, _)) = best {
                used[k] = true;
                matched += 1;
            }
        }
    }
    let expected = cells.iter().map(|c| c.expected).sum();
    let counted = cells.iter().map(|c| c.counted).sum();
    Outcome {
        settings,
        frames,
        detected,
        fps,
        cells,
        expected,
        counted,
        class_errors,
        volume_errors,
        matched: (listed > 0).then_some(matched),
        listed,
    }
}

/// The comparison of one run as a table.
pub fn table(truth: &Truth, label: &str, o: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let clip =
        truth.clip.file_name().map_or_else(|| truth.clip.display().to_string(), |f| f.to_string_lossy().into_owned());
    let _ = writeln!(s, "{clip} · {label} · {} frames ({} detected) · {:.1} frames/s", o.frames, o.detected, o.fps);
    let _ =
        writeln!(s, "   {:<12} {:<4} {:<11} {:>8} {:>8} {:>6}", "line", "dir", "class", "expected", "counted", "error");
    for c in &o.cells {
        let _ = writeln!(
            s,
            "   {:<12} {:<4} {:<11} {:>8} {:>8} {:>+6}",
            c.line,
            c.direction.as_str(),
            c.class.as_str(),
            c.expected,
            c.counted,
            i64::from(c.counted) - i64::from(c.expected)
        );
    }
    let _ = writeln!(
        s,
        "   total: {} counted of {} · volume errors {} · class errors {}{}",
        o.counted,
        o.expected,
        o.volume_errors,
        o.class_errors,
        o.matched.map_or(String::new(), |m| format!(" · {m} of {} crossings matched in time", o.listed))
    );
    s
}

/// A sweep's runs, one row each.
pub fn sweep_table(truth: &Truth, base: &Settings, runs: &[(Settings, Outcome)]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let clip =
        truth.clip.file_name().map_or_else(|| truth.clip.display().to_string(), |f| f.to_string_lossy().into_owned());
    let expected = runs.first().map_or(0, |r| r.1.expected);
    let _ = writeln!(s, "{clip}: {expected} crossings");
    let _ = writeln!(s, "| settings | counted | volume errors | class errors | matched in time | frames/s |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (settings, o) in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.1} |",
            settings.describe(base),
            o.counted,
            o.volume_errors,
            o.class_errors,
            o.matched.map_or("-".into(), |m| format!("{m}/{}", o.listed)),
            o.fps
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> Truth {
        let line = |id: &str| LineSpec {
            id: id.into(),
            a: FramePoint { x: 0.0, y: 0.0 },
            b: FramePoint { x: 0.0, y: 10.0 },
            in_side: Side::Left,
            anchor: Anchor::Centre,
            lane: None,
            classes: None,
        };
        Truth {
            path: "t.toml".into(),
            clip: "c.mp4".into(),
            frame_size: [640, 360],
            until: None,
            evidence: None,
            note: None,
            lines: vec![TruthLine {
                spec: line("a"),
                expected: [((Direction::In, VehicleClass::Motorcycle), 2), ((Direction::Out, VehicleClass::Car), 1)]
                    .into_iter()
                    .collect(),
                crossings: vec![
                    TruthCrossing { t: 1.0, direction: Direction::In, class: VehicleClass::Motorcycle },
                    TruthCrossing { t: 5.0, direction: Direction::In, class: VehicleClass::Motorcycle },
                    TruthCrossing { t: 9.0, direction: Direction::Out, class: VehicleClass::Car },
                ],
            }],
        }
    }

    #[test]
    fn a_motorcycle_counted_as_a_car_is_two_class_errors_and_no_volume_error() {
        let crossings = vec![
            ("a".to_owned(), Direction::In, VehicleClass::Motorcycle, 1.2),
            ("a".to_owned(), Direction::In, VehicleClass::Car, 5.1),
            ("a".to_owned(), Direction::Out, VehicleClass::Car, 20.0),
        ];
        let o = compare(&truth(), BTreeMap::new(), 100, 100, 10.0, &crossings, 1.0);
        assert_eq!((o.expected, o.counted), (3, 3));
        assert_eq!(o.volume_errors, 0);
        assert_eq!(o.class_errors, 2);
        // The car out at 20 s is 11 s from the truth's 9 s: not matched.
        assert_eq!(o.matched, Some(2));
        let moto = o.cells.iter().find(|c| c.class == VehicleClass::Motorcycle).unwrap();
        assert_eq!((moto.expected, moto.counted), (2, 1));
    }

    #[test]
    fn sweep_specs() {
        let base = Settings::defaults("models/yolox_nano.toml".into());
        let models = Path::new("models");
        let runs = sweep(&base, Some("every=1|3 model=yolox_nano|deimv2_femto"), models).unwrap();
        assert_eq!(runs.len(), 4);
        assert_eq!(runs[3].describe(&base), "model=deimv2_femto every=3");
        assert_eq!(sweep(&base, None, models).unwrap().len(), DEFAULT_SWEEP.len());
        let err = sweep(&base, Some("colour=red"), models).unwrap_err().to_string();
        assert!(err.contains("unknown key \"colour\""), "{err}");
    }
}
