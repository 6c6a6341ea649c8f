//! Site configuration and camera calibration files: parsed (unknown fields refused), then resolved and
//! validated, every problem reported at once with its file and field.
//!
//! Relative paths (model card, calibration files, file sources, the store) are relative to the file
//! that names them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use junction_schema::calibration::DEFAULT_ROI_MARGIN;
use junction_schema::calibration::{CalibrationFile, GroundPointDoc, RoiDoc};
use junction_schema::rules::{ApproachDoc, LineDoc, LoopDoc, RulesDoc, ZoneDoc};
pub use junction_schema::site::{DEFAULT_CHECKPOINT_S, DEFAULT_STALL_TIMEOUT_S, DEFAULT_TILE_OVERLAP};
use junction_schema::site::{HttpConfig, MAX_TILES_PER_SIDE, SiteFile, TilesDoc, is_identifier, tile_grid_fits};

use crate::aggregate::PcuFactors;
use crate::analytics::{ApproachSpec, LineSpec, LoopSpec, Region, RuleParams, ZoneSpec, segments_intersect};
use crate::detect::twowheel::TwoWheelerParams;
use crate::detect::{DetectorOptions, ModelCard};
use crate::geometry::{
    FramePoint, GroundPoint, Homography, Lens, PointPair, Rect, RegionSpec, Size, TileGrid, TileSpec,
};
use crate::motion::MotionParams;
use crate::scale::ScaleParams;
use crate::source::{Decoder, OnInferenceBusy, SourceUri};
use crate::track::TrackerConfig;

/// One problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
    }
}

/// Every problem found; the configuration is refused as a whole.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "configuration refused: {one}"),
            all => {
                write!(f, "configuration refused ({} problems):", all.len())?;
                for p in all {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// The region of interest of a camera, before the frame size is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Roi {
    /// The box around the camera's lines, zones, approaches and loops, grown by `margin` × the frame's
    /// size on each side; the whole frame for a camera without rules.
    Auto {
        margin: f32,
    },
    Full,
    /// Frame pixels.
    Rect(Rect),
}

impl Default for Roi {
    fn default() -> Self {
        Roi::Auto { margin: DEFAULT_ROI_MARGIN }
    }
}

/// Parses a region of interest: `auto`, `full` or `x1,y1,x2,y2` (frame pixels).
pub fn parse_roi(s: &str) -> Result<Roi, String> {
    match s.trim() {
        "auto" => Ok(Roi::default()),
        "full" => Ok(Roi::Full),
        other => {
            let [x1, y1, x2, y2] =
                parse_line_arg(other).map_err(|_| format!("--roi {s:?}: expected auto, full or x1,y1,x2,y2"))?;
            roi_rect([x1, y1, x2, y2]).map(Roi::Rect)
        }
    }
}

fn roi_rect([x1, y1, x2, y2]: [f32; 4]) -> Result<Rect, String> {
    if ![x1, y1, x2, y2].iter().all(|v| v.is_finite() && *v >= 0.0) || x2 - x1 < 1.0 || y2 - y1 < 1.0 {
        return Err(format!("[{x1}, {y1}, {x2}, {y2}]: needs x1 < x2, y1 < y2, all >= 0 (frame pixels)"));
    }
    let (l, t) = (x1.floor() as u32, y1.floor() as u32);
    Ok(Rect::new(l, t, x2.ceil() as u32 - l, y2.ceil() as u32 - t))
}

/// Parses tiles: `auto`, `1` (none) or `CxR` (e.g. `2x1`).
pub fn parse_tiles(s: &str, overlap: f32) -> Result<TileSpec, String> {
    match s.trim() {
        "auto" => Ok(auto_tiles(overlap)),
        "1" | "1x1" => Ok(TileSpec::Grid(TileGrid::ONE)),
        other => {
            let (c, r) = other.split_once('x').unwrap_or((other, "1"));
            match (c.parse::<u32>(), r.parse::<u32>()) {
                (Ok(c), Ok(r)) => tile_grid(c, r, overlap),
                _ => None,
            }
            .ok_or_else(|| format!("{s:?}: expected auto or COLSxROWS, each 1-{MAX_TILES_PER_SIDE} (e.g. 2x1)"))
        }
    }
}

/// A grid of `cols × rows` tiles, each 1 to [`MAX_TILES_PER_SIDE`]; `None` outside that.
fn tile_grid(cols: u32, rows: u32, overlap: f32) -> Option<TileSpec> {
    tile_grid_fits(cols, rows).then_some(TileSpec::Grid(TileGrid { cols, rows, overlap }))
}

/// `tiles = "auto"`: tiles only where one model input would shrink the region more than twice, at
/// most 6 of them. On the bundled clip tiled 3 × 3 into 1920 × 1080 (scripts/make_mosaic.sh), YOLOX-Nano
/// at 416 counted 0 of 72 crossings in one input, 44 in 4 tiles (the best 4 can do, 0.39 of the
/// frame's pixels) and 60 in 6 (3 × 2, 0.56), at 33 and 25 frames/s (benches/README.md).
pub fn auto_tiles(overlap: f32) -> TileSpec {
    TileSpec::Auto { overlap, max_downscale: 2.0, max_tiles: 6 }
}

// ---------------------------------------------------------------------------------------------------
// Resolved.

#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (for messages); `None` for an ad-hoc run.
    pub path: Option<PathBuf>,
    pub site: String,
    pub model_card: PathBuf,
    pub detector: DetectorOptions,
    pub tracker: TrackerConfig,
    pub rules: RuleParams,
    pub two_wheelers: TwoWheelerParams,
    /// How `tiles = "auto"` cameras choose their scale from the vehicles' size.
    pub scale: ScaleParams,
    /// When inference is skipped because nothing moves ([`crate::motion`]).
    pub motion: MotionParams,
    pub cameras: Vec<CameraConfig>,
    /// Bin lengths, each dividing a day so bins align to UTC midnight.
    pub bins: Vec<Duration>,
    pub store: StoreConfig,
    pub pcu: PcuFactors,
    /// Absent: reports stay in the store only.
    pub mqtt: Option<junction_schema::site::MqttConfig>,
    /// Absent: no /metrics, /healthz, /readyz.
    pub http: Option<junction_schema::site::HttpConfig>,
}

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub id: String,
    pub uri: String,
    /// Calibration file, if any: the frame size its coordinates refer to is checked against the stream.
    pub calibration: Option<PathBuf>,
    pub frame_size: Option<Size>,
    pub lines: Vec<LineSpec>,
    pub zones: Vec<ZoneSpec>,
    pub approaches: Vec<ApproachSpec>,
    pub loops: Vec<LoopSpec>,
    /// The ground plane, when the calibration has ground points.
    pub ground: Option<Homography>,
    pub on_inference_busy: Option<OnInferenceBusy>,
    /// Live sources: no frame for this long restarts the stream.
    pub stall_timeout: Duration,
    /// Files: replayed at their own rate.
    pub realtime: bool,
    /// The part of the frame the detector sees.
    pub roi: Roi,
    pub tiles: TileSpec,
    pub decoder: Decoder,
    /// Frames may be saved for labelling (`junction collect`).
    pub collect: bool,
}

fn xy(p: FramePoint) -> [f32; 2] {
    [p.x, p.y]
}

impl CameraConfig {
    /// The camera's rules as written (the console's editor document).
    pub fn rules(&self) -> RulesDoc {
        let cam = self;
        let poly = |p: &[FramePoint]| p.iter().copied().map(xy).collect::<Vec<_>>();
        RulesDoc {
            frame_size: cam.frame_size.map(|s| [s.width, s.height]),
            lines: cam
                .lines
                .iter()
                .map(|l| LineDoc {
                    id: l.id.to_string(),
                    points: vec![xy(l.a), xy(l.b)],
                    in_side: l.in_side,
                    anchor: l.anchor,
                    lane: l.lane.as_deref().map(str::to_owned),
                    classes: l.classes.clone(),
                })
                .collect(),
            zones: cam
                .zones
                .iter()
                .map(|z: &ZoneSpec| ZoneDoc {
                    id: z.id.to_string(),
                    polygon: poly(&z.polygon),
                    kind: z.kind,
                    anchor: z.anchor,
                })
                .collect(),
            approaches: cam
                .approaches
                .iter()
                .map(|a: &ApproachSpec| match &a.region {
                    Region::Polygon(p) => {
                        ApproachDoc { id: a.id.to_string(), polygon: Some(poly(p)), line: None, anchor: a.anchor }
                    }
                    Region::Line(p, q) => ApproachDoc {
                        id: a.id.to_string(),
                        polygon: None,
                        line: Some(vec![xy(*p), xy(*q)]),
                        anchor: a.anchor,
                    },
                })
                .collect(),
            loops: cam
                .loops
                .iter()
                .map(|l: &LoopSpec| LoopDoc {
                    id: l.id.to_string(),
                    polygon: poly(&l.polygon),
                    channel: l.channel,
                    anchor: l.anchor,
                })
                .collect(),
        }
    }

    /// The box around every rule (lines, zones, approaches, loops), `[x1, y1, x2, y2]` frame pixels;
    /// `None` without rules.
    pub fn rules_bbox(&self) -> Option<[f32; 4]> {
        let mut pts: Vec<FramePoint> = Vec::new();
        for l in &self.lines {
            pts.extend([l.a, l.b]);
        }
        for z in &self.zones {
            pts.extend(&z.polygon);
        }
        for a in &self.approaches {
            match &a.region {
                Region::Polygon(p) => pts.extend(p),
                Region::Line(p, q) => pts.extend([*p, *q]),
            }
        }
        for l in &self.loops {
            pts.extend(&l.polygon);
        }
        let first = pts.first()?;
        Some(pts.iter().fold([first.x, first.y, first.x, first.y], |b, p| {
            [b[0].min(p.x), b[1].min(p.y), b[2].max(p.x), b[3].max(p.y)]
        }))
    }

    /// What the source crops to, once it knows the frame size.
    pub fn region(&self) -> RegionSpec {
        match self.roi {
            Roi::Full => RegionSpec::Full,
            Roi::Rect(r) => RegionSpec::Rect(r),
            Roi::Auto { margin } => match self.rules_bbox() {
                Some(bbox) => RegionSpec::Rules { bbox, margin },
                None => RegionSpec::Full,
            },
        }
    }

    /// A camera with no calibration or rules yet, and the default timeouts.
    pub fn new(id: &str, uri: String) -> Self {
        Self {
            id: id.to_owned(),
            uri,
            calibration: None,
            frame_size: None,
            lines: Vec::new(),
            zones: Vec::new(),
            approaches: Vec::new(),
            loops: Vec::new(),
            ground: None,
            on_inference_busy: None,
            stall_timeout: Duration::from_secs(DEFAULT_STALL_TIMEOUT_S),
            realtime: false,
            roi: Roi::default(),
            tiles: auto_tiles(DEFAULT_TILE_OVERLAP),
            decoder: Decoder::Auto,
            collect: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Time between checkpoints of each camera's open bins (a crash loses at most this much).
    pub checkpoint: Duration,
    pub path: PathBuf,
    pub retention_days: u32,
    /// Bound on the store's live data, MiB: past it the oldest events and delivered reports go
    /// first, then (logged as errors, counted) the oldest undelivered reports.
    pub max_size_mb: u64,
    /// Daily ATSPM CSV files of loop detector events.
    pub atspm_dir: PathBuf,
}

struct Collector {
    problems: Vec<Problem>,
    /// Fields set from the command line, and the flag that set each: named beside a problem there.
    overridden: Vec<(String, &'static str)>,
}

impl Collector {
    fn new(overrides: &[Override]) -> Self {
        Self { problems: Vec::new(), overridden: overrides.iter().map(|o| (o.field.clone(), o.flag)).collect() }
    }

    fn add(&mut self, file: &Path, field: impl Into<String>, message: impl Into<String>) {
        let mut field = field.into();
        let flag = self.overridden.iter().find(|(f, _)| {
            field.strip_prefix(f.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
        });
        if let Some((_, flag)) = flag {
            field = format!("{field} (from {flag})");
        }
        self.problems.push(Problem { file: file.to_owned(), field, message: message.into() });
    }

    fn into_result<T>(self, ok: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() { Ok(ok) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// A value from the command line laid over the site file before it is validated (low → high: the
/// defaults, the file, the flags), so a flag is held to the file's rules.
#[derive(Debug, Clone)]
pub struct Override {
    /// Its dotted place in the file: `detector.every`, `store.path`, `camera.0.uri`.
    pub field: String,
    pub value: toml_edit::Value,
    /// The flag it came from (`--detect-every`), named beside a problem with it.
    pub flag: &'static str,
}

impl Override {
    pub fn new(field: &str, value: impl Into<toml_edit::Value>, flag: &'static str) -> Self {
        Self { field: field.to_owned(), value: value.into(), flag }
    }
}

/// Sets `value` at `parts` (a number is an index into an array of tables); tables are made as
/// needed. False when the place cannot hold it (an index past the end, a value where a table is).
fn set_in(table: &mut dyn toml_edit::TableLike, parts: &[&str], value: toml_edit::Value) -> bool {
    match parts {
        [] => false,
        [key] => {
            table.insert(key, toml_edit::Item::Value(value));
            true
        }
        [key, index, rest @ ..] if index.bytes().all(|b| b.is_ascii_digit()) => {
            let i: usize = index.parse().unwrap_or(usize::MAX);
            match table.get_mut(key).and_then(|it| it.as_array_of_tables_mut()).and_then(|a| a.get_mut(i)) {
                Some(t) => set_in(t, rest, value),
                None => false,
            }
        }
        [key, rest @ ..] => match table.entry(key).or_insert_with(toml_edit::table).as_table_like_mut() {
            Some(t) => set_in(t, rest, value),
            None => false,
        },
    }
}

fn relative_to(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_owned() } else { base.parent().unwrap_or(Path::new(".")).join(p) }
}

/// Parses a bin length: `30s`, `1m`, `15m`, `1h`.
pub fn parse_bin(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a length like 30s, 1m, 15m, 1h"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    }
    // (An overflowing length, e.g. from the console's export query, panicked here: found by fuzzing.)
    .unwrap_or(u64::MAX);
    if secs == 0 || 86_400 % secs != 0 {
        return Err(format!("{s:?} must be positive and divide a day, so that bins align to midnight UTC"));
    }
    Ok(Duration::from_secs(secs))
}

/// The site file of an ad-hoc run: one camera `uri` (id `camera`), the model card `model`, the
/// store `junction.db`; everything else the file's defaults.
fn adhoc_site(uri: &str, model: &Path) -> String {
    let mut doc = toml_edit::DocumentMut::new();
    doc["site"] = toml_edit::value("adhoc");
    doc["detector"] = toml_edit::table();
    doc["detector"]["model"] = toml_edit::value(model.display().to_string());
    let mut camera = toml_edit::Table::new();
    camera["id"] = toml_edit::value("camera");
    camera["uri"] = toml_edit::value(uri);
    let mut cameras = toml_edit::ArrayOfTables::new();
    cameras.push(camera);
    doc["camera"] = toml_edit::Item::ArrayOfTables(cameras);
    doc["store"] = toml_edit::table();
    doc["store"]["path"] = toml_edit::value("junction.db");
    doc.to_string()
}

impl Config {
    /// A site of one camera with every default, for a survey without a site file (`junction eval`,
    /// benches): store `junction.db`, the site file's defaults everywhere else (the same resolve, so
    /// each default is stated once). Reads no file.
    pub fn adhoc(model_card: PathBuf, camera: CameraConfig) -> Self {
        // A constant text: `adhoc_is_the_files_defaults` shows it valid.
        let site = adhoc_site("test://ball", Path::new("model.toml"));
        let mut cfg = Self::from_text(Path::new("(ad hoc)"), &site, &[]).expect("the ad-hoc site is valid");
        cfg.path = None;
        cfg.model_card = model_card;
        cfg.cameras = vec![camera];
        cfg
    }

    /// The site file at `path` and the calibration files it names, validated, and the files it names
    /// checked ([`Config::check_files`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &[])
    }

    /// [`Config::load`] with the command line's values laid over the file before validation.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut c = Collector::new(&[]);
            c.add(path, "(file)", e.to_string());
            ConfigError { problems: c.problems }
        })?;
        let cfg = Self::from_text(path, &text, overrides)?;
        cfg.check_files()?;
        Ok(cfg)
    }

    /// An ad-hoc site (no file): one camera `uri` and the model card `model`, with the command line
    /// laid over it; validated like a file, the files it names checked. Relative paths are the
    /// working directory's.
    pub fn load_adhoc(uri: &str, model: &Path, overrides: &[Override]) -> Result<Self, ConfigError> {
        // Relative to the working directory: the parent of a bare name is the empty path.
        let mut cfg = Self::from_text(Path::new("(command line)"), &adhoc_site(uri, model), overrides)?;
        cfg.path = None;
        cfg.check_files()?;
        Ok(cfg)
    }

    /// The configuration in `text` (the file at `path`, whose folder relative paths are resolved
    /// against), with `overrides` laid over it, validated in one pass that reports every problem
    /// with its place. Reads nothing but the configuration's own documents (its calibration files):
    /// the model, TLS and password files are [`Config::check_files`]'.
    pub fn from_text(path: &Path, text: &str, overrides: &[Override]) -> Result<Self, ConfigError> {
        let mut c = Collector::new(overrides);
        let refuse = |c: Collector| Err(ConfigError { problems: c.problems });
        // The file as written first: its own mistakes are placed by its own lines.
        let file = match toml::from_str::<SiteFile>(text) {
            Ok(r) => r,
            Err(e) => {
                c.add(path, parse_error_place(text, &e), e.message().to_owned());
                return refuse(c);
            }
        };
        let raw = if overrides.is_empty() {
            Ok(file)
        } else {
            let mut doc: toml_edit::DocumentMut = match text.parse() {
                Ok(d) => d,
                Err(e) => {
                    c.add(path, "(file)", e.to_string());
                    return refuse(c);
                }
            };
            for o in overrides {
                let parts: Vec<&str> = o.field.split('.').collect();
                if !set_in(doc.as_table_mut(), &parts, o.value.clone()) {
                    c.add(path, o.field.clone(), format!("{} cannot be set here", o.flag));
                }
            }
            toml::from_str::<SiteFile>(&doc.to_string())
        };
        let raw = match raw {
            Ok(r) => r,
            // The file alone was right: a flag's value is of the wrong kind.
            Err(e) => {
                let flags: Vec<&str> = overrides.iter().map(|o| o.flag).collect();
                c.add(path, format!("(from {})", flags.join(", ")), e.message().to_owned());
                return refuse(c);
            }
        };
        let cfg = Self::resolve(path, raw, &mut c);
        c.into_result(cfg)
    }

    /// The start-up step after validation: the files the configuration names, read and checked (the
    /// model against its card's sha256, the console's password and TLS files, the broker's CA, client
    /// certificate and password).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let path = self.path.clone().unwrap_or_else(|| PathBuf::from("(command line)"));
        let mut c = Collector::new(&[]);
        if let Err(e) = ModelCard::load(&self.model_card) {
            c.add(&path, "detector.model", e.to_string());
        }
        if let Some(h) = &self.http {
            for (field, message) in http_file_problems(h) {
                c.add(&path, field, message);
            }
        }
        // The files it names (CA, client certificate, password); the section itself was validated.
        if let Some(m) = &self.mqtt
            && let Err(e) = junction_common::mqtt::connection_settings(m)
        {
            c.add(&path, "mqtt", e.to_string());
        }
        c.into_result(())
    }

    fn resolve(path: &Path, raw: SiteFile, c: &mut Collector) -> Self {
        for (field, message) in raw.problems() {
            c.add(path, field, message);
        }
        let model_card = relative_to(path, &raw.detector.model);
        let mut cameras: Vec<CameraConfig> = Vec::new();
        for (i, cam) in raw.cameras.iter().enumerate() {
            let field = |f: &str| format!("camera[{i}] ({}).{f}", cam.id);
            let uri = match cam.uri.as_deref().map(str::trim) {
                None | Some("") => {
                    c.add(path, field("uri"), "missing: the camera's address (rtsp://…, a file, v4l2://…, test://)");
                    String::new()
                }
                Some(u) => match SourceUri::parse(u) {
                    Ok(SourceUri::File(p)) => relative_to(path, &p).display().to_string(),
                    Ok(_) => u.to_owned(),
                    Err(e) => {
                        c.add(path, field("uri"), e.to_string());
                        String::new()
                    }
                },
            };
            let mut camera = CameraConfig {
                on_inference_busy: cam.on_inference_busy,
                realtime: cam.realtime,
                collect: cam.collect,
                decoder: cam.decoder.clone(),
                ..CameraConfig::new(&cam.id, uri)
            };
            // Out of range values were refused above (`CameraSection::problems`).
            let overlap = raw.detector.tile_overlap;
            camera.tiles = match &cam.tiles {
                Some(TilesDoc::Grid([cols, rows])) => tile_grid(*cols, *rows, overlap).unwrap_or(camera.tiles),
                _ => auto_tiles(overlap),
            };
            if let Some(s) = cam.stall_timeout_s {
                camera.stall_timeout = Duration::try_from_secs_f64(s).unwrap_or(camera.stall_timeout);
            }
            if let Some(cal) = &cam.calibration {
                let cal_path = relative_to(path, cal);
                load_calibration(&cal_path, &mut camera, c);
                camera.calibration = Some(cal_path);
            }
            cameras.push(camera);
        }
        let mut bins = Vec::new();
        for (i, b) in raw.aggregate.bins.iter().enumerate() {
            match parse_bin(b) {
                Ok(d) if bins.contains(&d) => c.add(path, format!("aggregate.bins[{i}]"), "listed twice"),
                Ok(d) => bins.push(d),
                Err(e) => c.add(path, format!("aggregate.bins[{i}]"), e),
            }
        }
        let store_path = relative_to(path, &raw.store.path);
        // Relative files are relative to this configuration.
        let mqtt = raw.mqtt.map(|mut m| {
            for f in [&mut m.ca_file, &mut m.client_cert, &mut m.client_key, &mut m.password_file] {
                if let Some(p) = f.as_mut() {
                    *p = relative_to(path, p);
                }
            }
            m
        });
        let http = raw.http.map(|mut h| {
            for f in [&mut h.password_file, &mut h.tls_cert, &mut h.tls_key].into_iter().flatten() {
                *f = relative_to(path, f);
            }
            h
        });
        Self {
            path: Some(path.to_owned()),
            site: raw.site,
            model_card,
            detector: DetectorOptions {
                provider: raw.detector.provider,
                intra_threads: raw.detector.threads,
                optimization: raw.detector.optimization,
                onnxruntime: raw.detector.onnxruntime.map(|p| relative_to(path, &p)),
                score: Some(raw.detector.score.unwrap_or(raw.tracker.low_score)),
                nms_iou: Some(raw.detector.nms_iou.unwrap_or(crate::detect::DEFAULT_NMS_IOU)),
                every: raw.detector.every,
                spinning: raw.detector.spinning,
                max_batch: raw.detector.max_batch,
                parallel: raw.detector.parallel,
                batch_wait: Duration::from_millis(raw.detector.batch_wait_ms),
                ..DetectorOptions::default()
            },
            tracker: raw.tracker,
            rules: raw.rules,
            two_wheelers: raw.two_wheelers,
            scale: raw.scale,
            motion: raw.motion,
            cameras,
            bins,
            store: StoreConfig {
                // Out of range is refused above; the fallback only keeps this line from panicking.
                checkpoint: Duration::try_from_secs_f64(raw.store.checkpoint_s.clamp(1.0, 3600.0))
                    .unwrap_or(Duration::from_secs_f64(DEFAULT_CHECKPOINT_S)),
                atspm_dir: match &raw.store.atspm_dir {
                    Some(d) => relative_to(path, d),
                    None => store_path.parent().unwrap_or(Path::new(".")).join("atspm"),
                },
                path: store_path,
                retention_days: raw.store.retention_days,
                max_size_mb: raw.store.max_size_mb,
            },
            pcu: raw.pcu,
            mqtt,
            http,
        }
    }
}

// Files named by `[http]`, read at start-up.

/// The console's password hash, from the configuration or its file; `None`: no login configured.
pub fn http_credential(h: &HttpConfig) -> Result<Option<String>, (String, String)> {
    let hash = match (&h.password_hash, &h.password_file) {
        (Some(_), Some(_)) => {
            return Err(("http.password_hash".into(), "give one of password_hash or password_file".into()));
        }
        (Some(h), None) => h.trim().to_owned(),
        (None, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => t.lines().next().unwrap_or("").trim().to_owned(),
            Err(e) => return Err(("http.password_file".into(), format!("{}: {e}", f.display()))),
        },
        (None, None) => return Ok(None),
    };
    let field = if h.password_file.is_some() { "http.password_file" } else { "http.password_hash" };
    match argon2::PasswordHash::new(&hash) {
        Ok(h) if h.algorithm.as_str().starts_with("argon2") => Ok(Some(hash)),
        _ => Err((field.into(), "not an argon2 password hash: make one with `junction hash-password`".into())),
    }
}

/// The TLS server configuration from `tls_cert` and `tls_key`; `None`: plain HTTP.
pub fn http_tls(h: &HttpConfig) -> Result<Option<Arc<rustls::ServerConfig>>, (String, String)> {
    let (cert, key) = match (&h.tls_cert, &h.tls_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(("http.tls_cert".into(), "tls_cert and tls_key go together".into())),
    };
    let read = |field: &str, p: &PathBuf| {
        std::fs::read(p).map_err(|e| (format!("http.{field}"), format!("{}: {e}", p.display())))
    };
    let pem = read("tls_cert", cert)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut &pem[..]).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(("http.tls_cert".into(), format!("{}: holds no PEM certificate", cert.display())));
    }
    let pem = read("tls_key", key)?;
    let key_der = rustls_pemfile::private_key(&mut &pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| ("http.tls_key".to_owned(), format!("{}: holds no PEM private key", key.display())))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| ("http.tls_key".to_owned(), format!("{}: {e}", key.display())))?;
    Ok(Some(Arc::new(config)))
}

/// What is wrong with the files `[http]` names (password hash file, TLS certificate and key): the
/// start-up step after [`HttpConfig::problems`]'s pure checks.
pub fn http_file_problems(h: &HttpConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // A pair given by half, or both of a pair of alternatives, is the pure check's to report.
    if h.tls_cert.is_some() == h.tls_key.is_some()
        && let Err(p) = http_tls(h)
    {
        out.push(p);
    }
    if !(h.password_hash.is_some() && h.password_file.is_some())
        && let Err(p) = http_credential(h)
    {
        out.push(p);
    }
    out
}

fn parse_error_place(text: &str, e: &toml::de::Error) -> String {
    e.span()
        .map(|s| {
            format!("line {}", text.as_bytes()[..s.start.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1)
        })
        .unwrap_or_else(|| "(parse)".into())
}

fn load_calibration(path: &Path, camera: &mut CameraConfig, c: &mut Collector) {
    match std::fs::read_to_string(path) {
        Ok(text) => calibration_from_text(path, &text, camera, c),
        Err(e) => c.add(path, "(file)", e.to_string()),
    }
}

/// Checks a calibration file's would-be text (the console's editor) with the same code as
/// `junction check-config`: the camera it describes, or every problem, named by field
/// (`line[1] (x100).points`).
pub fn check_calibration_text(path: &Path, text: &str) -> Result<CameraConfig, ConfigError> {
    let mut c = Collector::new(&[]);
    let mut camera = CameraConfig::new("check", String::new());
    camera.calibration = Some(path.to_owned());
    calibration_from_text(path, text, &mut camera, &mut c);
    if c.problems.is_empty() { Ok(camera) } else { Err(ConfigError { problems: c.problems }) }
}

fn calibration_from_text(path: &Path, text: &str, camera: &mut CameraConfig, c: &mut Collector) {
    let text = text.to_owned();
    let raw: CalibrationFile = match toml::from_str(&text) {
        Ok(r) => r,
        Err(e) => return c.add(path, parse_error_place(&text, &e), e.message().to_owned()),
    };
    let [w, h] = raw.frame_size;
    if w == 0 || h == 0 {
        c.add(path, "frame_size", "width and height must be positive");
    }
    let size = Size::new(w, h);
    camera.frame_size = Some(size);
    let mut ids: Vec<&str> = Vec::new();
    for (i, l) in raw.lines.iter().enumerate() {
        let field = |f: &str| format!("line[{i}] ({}).{f}", l.id);
        if !is_identifier(&l.id) || ids.contains(&l.id.as_str()) {
            c.add(path, field("id"), "must be a unique identifier (letters, digits, '-', '_', '.')");
        }
        ids.push(&l.id);
        if l.points.len() != 2 {
            c.add(path, field("points"), format!("needs exactly 2 points, has {}", l.points.len()));
            continue;
        }
        let (a, b) = (pt(l.points[0]), pt(l.points[1]));
        if (a.x - b.x).hypot(a.y - b.y) < 1.0 {
            c.add(path, field("points"), "the two points are the same: a line needs a length");
        }
        check_inside(path, &field("points"), &[a, b], size, c);
        camera.lines.push(LineSpec {
            id: Arc::from(l.id.as_str()),
            a,
            b,
            in_side: l.in_side,
            anchor: l.anchor,
            lane: l.lane.as_deref().map(Arc::from),
            classes: l.classes.clone(),
        });
    }
    for (i, z) in raw.zones.iter().enumerate() {
        let field = |f: &str| format!("zone[{i}] ({}).{f}", z.id);
        if !is_identifier(&z.id) || ids.contains(&z.id.as_str()) {
            c.add(path, field("id"), "must be a unique identifier (letters, digits, '-', '_', '.')");
        }
        ids.push(&z.id);
        let poly: Vec<FramePoint> = z.polygon.iter().copied().map(pt).collect();
        if poly.len() < 3 {
            c.add(path, field("polygon"), format!("needs at least 3 points, has {}", poly.len()));
            continue;
        }
        if let Some((e1, e2)) = self_intersection(&poly) {
            c.add(path, field("polygon"), format!("edges {e1} and {e2} cross: the polygon intersects itself"));
        } else if area(&poly).abs() < 1.0 {
            c.add(path, field("polygon"), "has no area");
        }
        check_inside(path, &field("polygon"), &poly, size, c);
        camera.zones.push(ZoneSpec { id: Arc::from(z.id.as_str()), polygon: poly, kind: z.kind, anchor: z.anchor });
    }
    for (i, a) in raw.approaches.iter().enumerate() {
        let field = |f: &str| format!("approach[{i}] ({}).{f}", a.id);
        if !is_identifier(&a.id) || ids.contains(&a.id.as_str()) {
            c.add(path, field("id"), "must be a unique identifier (letters, digits, '-', '_', '.')");
        }
        ids.push(&a.id);
        let region = match (&a.polygon, &a.line) {
            (Some(p), None) => match checked_polygon(path, &field("polygon"), p, size, c) {
                Some(poly) => Region::Polygon(poly),
                None => continue,
            },
            (None, Some(l)) if l.len() == 2 => {
                let (p, q) = (pt(l[0]), pt(l[1]));
                if (p.x - q.x).hypot(p.y - q.y) < 1.0 {
                    c.add(path, field("line"), "the two points are the same: a line needs a length");
                }
                check_inside(path, &field("line"), &[p, q], size, c);
                Region::Line(p, q)
            }
            (None, Some(l)) => {
                c.add(path, field("line"), format!("needs exactly 2 points, has {}", l.len()));
                continue;
            }
            _ => {
                c.add(path, field("polygon"), "give exactly one of polygon or line");
                continue;
            }
        };
        camera.approaches.push(ApproachSpec { id: Arc::from(a.id.as_str()), region, anchor: a.anchor });
    }
    if raw.approaches.len() == 1 {
        c.add(path, "approach", "one approach makes no movement: give at least 2 (or none)");
    }
    let mut channels: Vec<u16> = Vec::new();
    for (i, l) in raw.loops.iter().enumerate() {
        let field = |f: &str| format!("loop[{i}] ({}).{f}", l.id);
        if !is_identifier(&l.id) || ids.contains(&l.id.as_str()) {
            c.add(path, field("id"), "must be a unique identifier (letters, digits, '-', '_', '.')");
        }
        ids.push(&l.id);
        if !(1..=255).contains(&l.channel) || channels.contains(&l.channel) {
            c.add(path, field("channel"), "must be a detector channel 1-255, unique on the camera");
        }
        channels.push(l.channel);
        if let Some(poly) = checked_polygon(path, &field("polygon"), &l.polygon, size, c) {
            camera.loops.push(LoopSpec {
                id: Arc::from(l.id.as_str()),
                polygon: poly,
                channel: l.channel,
                anchor: l.anchor,
            });
        }
    }
    let margin = raw.roi_margin.unwrap_or(DEFAULT_ROI_MARGIN);
    if !(0.0..=1.0).contains(&margin) {
        c.add(path, "roi_margin", "must be within 0..=1 (a share of the frame's width and height)");
    }
    match &raw.roi {
        None => camera.roi = Roi::Auto { margin },
        Some(RoiDoc::Word(w)) if w == "auto" => camera.roi = Roi::Auto { margin },
        Some(RoiDoc::Word(w)) if w == "full" => camera.roi = Roi::Full,
        Some(RoiDoc::Word(w)) => c.add(path, "roi", format!("{w:?}: expected \"auto\", \"full\" or [x1, y1, x2, y2]")),
        Some(RoiDoc::Box(b)) => match roi_rect(*b) {
            Ok(r) if r.x + r.width > size.width || r.y + r.height > size.height => {
                c.add(path, "roi", format!("{b:?} reaches outside the {size} frame"))
            }
            Ok(r) => camera.roi = Roi::Rect(r),
            Err(e) => c.add(path, "roi", e),
        },
    }
    if raw.roi_margin.is_some() && !matches!(camera.roi, Roi::Auto { .. }) {
        c.add(path, "roi_margin", "only used with roi = \"auto\"");
    }
    let lens = raw.lens.as_ref().map(|l| Lens { camera_matrix: l.camera_matrix, distortion: l.distortion.clone() });
    if let Some(l) = &lens {
        let k = l.camera_matrix;
        if !(k[0][0] > 0.0 && k[1][1] > 0.0 && k[2] == [0.0, 0.0, 1.0]) {
            c.add(path, "lens.camera_matrix", "must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0");
        }
        if !matches!(l.distortion.len(), 4 | 5 | 8) {
            c.add(path, "lens.distortion", "needs 4, 5 or 8 coefficients (k1, k2, p1, p2[, k3[, k4, k5, k6]])");
        }
    }
    if !raw.ground_points.is_empty() {
        let pairs = point_pairs(&raw.ground_points);
        check_inside(path, "ground_points", &pairs.iter().map(|p| p.image).collect::<Vec<_>>(), size, c);
        match Homography::solve(&pairs, lens) {
            Ok(s) => camera.ground = Some(s.homography),
            Err(e) => c.add(path, "ground_points", e.to_string()),
        }
    } else if lens.is_some() {
        c.add(path, "lens", "a lens without ground_points is unused: add at least 4 ground points");
    }
}

fn point_pairs(raw: &[GroundPointDoc]) -> Vec<PointPair> {
    raw.iter()
        .map(|g| PointPair {
            image: FramePoint { x: g.image[0] as f32, y: g.image[1] as f32 },
            ground: GroundPoint { x: g.ground[0], y: g.ground[1] },
        })
        .collect()
}

/// A rule polygon: at least 3 points, simple, with an area, inside the frame.
fn checked_polygon(
    path: &Path,
    field: &str,
    raw: &[[f32; 2]],
    size: Size,
    c: &mut Collector,
) -> Option<Vec<FramePoint>> {
    let poly: Vec<FramePoint> = raw.iter().copied().map(pt).collect();
    if poly.len() < 3 {
        c.add(path, field, format!("needs at least 3 points, has {}", poly.len()));
        return None;
    }
    if let Some((e1, e2)) = self_intersection(&poly) {
        c.add(path, field, format!("edges {e1} and {e2} cross: the polygon intersects itself"));
        return None;
    }
    if area(&poly).abs() < 1.0 {
        c.add(path, field, "has no area");
        return None;
    }
    check_inside(path, field, &poly, size, c);
    Some(poly)
}

/// Reads a calibration file on its own (for `junction calibrate`): the camera it describes, or every
/// problem found.
pub fn load_calibration_file(path: &Path) -> Result<CameraConfig, ConfigError> {
    let mut c = Collector::new(&[]);
    let mut camera = CameraConfig::new("calibrate", String::new());
    camera.calibration = Some(path.to_owned());
    load_calibration(path, &mut camera, &mut c);
    if c.problems.is_empty() { Ok(camera) } else { Err(ConfigError { problems: c.problems }) }
}

/// The image ↔ ground pairs and lens of a calibration file, for `junction calibrate`.
pub fn calibration_points(path: &Path) -> Result<(Vec<PointPair>, Option<Lens>), ConfigError> {
    let refuse = |field: String, message: String| ConfigError {
        problems: vec![Problem { file: path.to_owned(), field, message }],
    };
    let text = std::fs::read_to_string(path).map_err(|e| refuse("(file)".into(), e.to_string()))?;
    let raw: CalibrationFile =
        toml::from_str(&text).map_err(|e| refuse(parse_error_place(&text, &e), e.message().to_owned()))?;
    let pairs = point_pairs(&raw.ground_points);
    let lens = raw.lens.map(|l| Lens { camera_matrix: l.camera_matrix, distortion: l.distortion });
    Ok((pairs, lens))
}

fn pt(p: [f32; 2]) -> FramePoint {
    FramePoint { x: p[0], y: p[1] }
}

fn check_inside(path: &Path, field: &str, pts: &[FramePoint], size: Size, c: &mut Collector) {
    for p in pts {
        if !(p.x.is_finite() && p.y.is_finite())
            || p.x < 0.0
            || p.y < 0.0
            || p.x > size.width as f32
            || p.y > size.height as f32
        {
            c.add(path, field, format!("point ({}, {}) is outside the {size} frame", p.x, p.y));
            return;
        }
    }
}

/// Checks an ad-hoc line against the frame size once the stream has negotiated it.
pub fn line_outside_frame(line: &LineSpec, size: Size) -> bool {
    [line.a, line.b].iter().any(|p| p.x < 0.0 || p.y < 0.0 || p.x > size.width as f32 || p.y > size.height as f32)
}

/// First pair of non-adjacent edges that cross (edge i runs from vertex i to vertex i+1).
fn self_intersection(poly: &[FramePoint]) -> Option<(usize, usize)> {
    let n = poly.len();
    for i in 0..n {
        for j in i + 1..n {
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                continue;
            }
            if segments_intersect(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n]) {
                return Some((i, j));
            }
        }
    }
    None
}

fn area(poly: &[FramePoint]) -> f32 {
    let n = poly.len();
    0.5 * (0..n).map(|i| poly[i].x * poly[(i + 1) % n].y - poly[(i + 1) % n].x * poly[i].y).sum::<f32>()
}

/// An ad-hoc line from `x1,y1,x2,y2` (frame pixels).
pub fn parse_line_arg(s: &str) -> Result<[f32; 4], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|p| p.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--line {s:?}: expected x1,y1,x2,y2 in frame pixels"))?;
    let [x1, y1, x2, y2] = v[..] else { return Err(format!("--line {s:?}: expected 4 numbers, got {}", v.len())) };
    if (x1 - x2).hypot(y1 - y2) < 1.0 {
        return Err(format!("--line {s:?}: the two points are the same"));
    }
    Ok([x1, y1, x2, y2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins() {
        assert_eq!(parse_bin("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_bin("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_bin("9223372036854775808m").is_err(), "an overflowing length is refused, not a panic");
        assert!(parse_bin("7m").is_err());
        assert!(parse_bin("0s").is_err());
        assert!(parse_bin("m").is_err());
    }

    #[test]
    fn bowtie_intersects_itself() {
        let p = |x, y| FramePoint { x, y };
        assert_eq!(self_intersection(&[p(0.0, 0.0), p(10.0, 10.0), p(10.0, 0.0), p(0.0, 10.0)]), Some((0, 2)));
        assert_eq!(self_intersection(&[p(0.0, 0.0), p(10.0, 0.0), p(10.0, 10.0), p(0.0, 10.0)]), None);
    }

    const SITE: &str = "site = \"s\"\n[detector]\nmodel = \"no-such-card.toml\"\nevery = 2\n\n[[camera]]\nid = \"c\"\nuri = \"test://ball\"\n";

    fn fields(e: ConfigError) -> Vec<String> {
        e.problems.into_iter().map(|p| p.field).collect()
    }

    /// The command line is held to the file's rules, named as the flag it came from; what it sets
    /// wins over the file; a section it needs is made.
    #[test]
    fn overrides_are_laid_over_the_file_before_validation() {
        let path = Path::new("/site/s.toml");
        let bad = Config::from_text(path, SITE, &[Override::new("detector.every", 31, "--detect-every")]);
        assert_eq!(fields(bad.expect_err("31 is refused in the file")), ["detector.every (from --detect-every)"]);
        let o = [
            Override::new("detector.every", 3, "--detect-every"),
            Override::new("store.path", "/data/j.db", "--store"),
            Override::new("mqtt.url", "mqtt://127.0.0.1:1884", "--mqtt"),
            Override::new("camera.0.uri", "/clips/a.mp4", "URI"),
        ];
        let cfg = Config::from_text(path, SITE, &o).expect("valid");
        assert_eq!(cfg.detector.every, 3);
        assert_eq!(cfg.store.path, PathBuf::from("/data/j.db"));
        assert_eq!(cfg.mqtt.as_ref().map(|m| (m.url.as_str(), m.keep_alive_s)), Some(("mqtt://127.0.0.1:1884", 30)));
        assert_eq!(cfg.cameras[0].uri, "/clips/a.mp4");
        let bad = Config::from_text(path, SITE, &[Override::new("mqtt.url", "broker:1883", "--mqtt")]);
        assert_eq!(fields(bad.expect_err("no scheme")), ["mqtt.url (from --mqtt)"]);
        let bad = Config::from_text(path, SITE, &[Override::new("camera.3.uri", "x.mp4", "URI")]);
        assert_eq!(fields(bad.expect_err("no fourth camera")), ["camera.3.uri (from URI)"]);
        let bad = Config::from_text(path, SITE, &[Override::new("detector.every", "x", "--detect-every")]);
        assert_eq!(fields(bad.expect_err("a word")), ["(from --detect-every)"]);
        // The file's own mistakes are placed by its lines, whatever the flags.
        let bad = Config::from_text(path, &SITE.replace("every = 2", "every = \"2\""), &o);
        assert_eq!(fields(bad.expect_err("a string")), ["line 4"]);
    }

    /// Validation reads no model, TLS or password file: a card that does not exist is found at
    /// start-up, by the second step.
    #[test]
    fn files_are_read_in_their_own_step() {
        let cfg = Config::from_text(Path::new("/site/s.toml"), SITE, &[]).expect("the text is valid");
        let e = cfg.check_files().expect_err("no such card");
        assert_eq!(e.problems[0].field, "detector.model");
        assert!(e.problems[0].message.contains("no-such-card.toml"), "{e}");
    }

    /// The ad-hoc site is the site file's defaults: nothing restated.
    #[test]
    fn adhoc_is_the_files_defaults() {
        let cam = || CameraConfig::new("camera", "clip.mp4".into());
        let a = Config::adhoc(PathBuf::from("m.toml"), cam());
        assert_eq!((a.path.as_deref(), a.model_card.to_str()), (None, Some("m.toml")));
        assert_eq!(a.bins, [Duration::from_secs(60), Duration::from_secs(900)]);
        assert_eq!((a.store.path.to_str(), a.store.atspm_dir.to_str()), (Some("junction.db"), Some("atspm")));
        assert_eq!((a.store.retention_days, a.store.max_size_mb), (30, 1024));
        assert_eq!(a.detector.score, Some(a.tracker.low_score));
        assert!(a.mqtt.is_none() && a.http.is_none());
        assert_eq!(a.cameras.iter().map(|c| c.uri.as_str()).collect::<Vec<_>>(), ["clip.mp4"]);
    }

    #[test]
    fn line_args() {
        assert_eq!(parse_line_arg("320,60,320,220"), Ok([320.0, 60.0, 320.0, 220.0]));
        assert!(parse_line_arg("1,2,3").is_err());
        assert!(parse_line_arg("5,5,5,5").is_err());
    }
}
