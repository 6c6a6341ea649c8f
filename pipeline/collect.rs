//! `junction collect`: frames worth labelling, saved with the model's detections as pre-labels in
//! the formats labelling tools import, so that a model can be fine-tuned on the camera's own view.
//!
//! [`Selector`] picks frames as they are analysed, for one or more [`Reason`]s: a frame every
//! `sample_s` seconds (so that every time of day is in the set), a track whose class flipped, boxes
//! scoring near the threshold (the model unsure), and crowds of overlapping boxes (dense traffic,
//! where two-wheelers merge and split). Saved frames are at least `min_gap_s` apart and at most
//! `max_frames / 24` of a live camera's fall in one hour of the day (UTC), so a rush hour cannot fill
//! the set.
//!
//! [`Collection`] writes one folder that CVAT and Label Studio both import (README "Labelling"):
//!
//! ```text
//! DIR/annotations.json    COCO detection file: images (`file_name` NAME.jpg), pre-label boxes, categories
//! DIR/annotations/instances_default.json   the same, where CVAT and Datumaro look in a folder or zip
//! DIR/images/NAME.jpg     the frames, at the camera's own size
//! DIR/labels/NAME.txt     YOLO: one "class cx cy w h" line a box, normalised to the image (Label
//!                         Studio, Ultralytics)
//! DIR/images/NAME.txt     the same beside the image, where CVAT's "YOLO 1.1" looks
//! DIR/classes.txt         YOLO class names, one a line, in class-index order
//! DIR/train.txt, obj.data, data.yaml   the image list and the YOLO 1.1 and Ultralytics descriptions
//! DIR/manifest.jsonl      one line a frame: camera, time, why chosen, model and card sha256
//! ```
//!
//! The folder is bounded by `max_frames` and `max_bytes` (images and labels together); a second run
//! into the same folder goes on from what is there, within the same bounds. Nothing of it is
//! published: it stays on the box until a person takes it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::coco::{Annotation, Category, Dataset, Image};
use crate::detect::{Detection, VehicleClass};
use crate::track::TrackedObject;

/// The categories of a collection and of the bundled labelled set: COCO's ids for these classes.
pub const CATEGORIES: [(u64, VehicleClass); 6] = [
    (1, VehicleClass::Person),
    (2, VehicleClass::Bicycle),
    (3, VehicleClass::Car),
    (4, VehicleClass::Motorcycle),
    (6, VehicleClass::Bus),
    (8, VehicleClass::Truck),
];

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Source(Box<crate::source::SourceError>),
    /// `uri` with any password removed.
    #[error("collect {uri}: no frame")]
    NoFrame { uri: String },
    #[error("collect: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("collect: {path}: {message}")]
    Existing { path: PathBuf, message: String },
    #[error("collect: encoding a frame as JPEG: {0}")]
    Encode(String),
    #[error("collect: {path}: another collection is writing this folder")]
    Busy { path: PathBuf },
}

/// Why a frame was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The periodic sample (the first analysed frame, then one every `sample_s`).
    Sample,
    /// A confirmed track's class changed on this frame.
    ClassChange,
    /// At least `near_min` boxes scored within `near` of the threshold.
    NearThreshold,
    /// At least `crowd_pairs` pairs of boxes overlap by IoU ≥ `crowd_iou`.
    Crowded,
}

/// What makes a frame worth labelling, and the bounds of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectParams {
    /// Seconds of stream time between periodic samples.
    pub sample_s: f64,
    /// Fewest seconds of stream time between two saved frames.
    pub min_gap_s: f64,
    /// Half-width of the score band around the threshold (0–1).
    pub near: f32,
    /// Boxes in that band that make a frame "near threshold".
    pub near_min: usize,
    /// IoU above which two boxes overlap, and the pairs that make a crowd.
    pub crowd_iou: f32,
    pub crowd_pairs: usize,
    /// Most frames, and most bytes of images and labels, in the folder.
    pub max_frames: usize,
    pub max_bytes: u64,
    /// At most `max_frames / 24` frames an hour of the day (UTC): live cameras, whose collection
    /// spans days; a recording is one stretch of time.
    pub hour_quota: bool,
}

impl Default for CollectParams {
    fn default() -> Self {
        Self {
            sample_s: 600.0,
            min_gap_s: 5.0,
            near: 0.1,
            near_min: 2,
            crowd_iou: 0.3,
            crowd_pairs: 3,
            max_frames: 500,
            max_bytes: 500 * 1024 * 1024,
            hour_quota: true,
        }
    }
}

/// One analysed frame, as the selector and the collection see it.
#[derive(Debug, Clone, Copy)]
pub struct Analysed<'a> {
    /// Stream time, and capture time (UTC).
    pub pts: Duration,
    pub wall: SystemTime,
    /// The model's detections down to `threshold − near`, frame pixels.
    pub raw: &'a [Detection],
    /// Those at the threshold after the two-wheeler fusion: the pre-labels.
    pub kept: &'a [Detection],
    /// Confirmed tracks after this frame, and the tracks that ended on it.
    pub tracks: &'a [TrackedObject],
    pub ended: &'a [u64],
}

/// A frame's pixels: BGR rows, `width` × `height` frame pixels, `stride` bytes from one row to the
/// next (GStreamer pads rows to 4 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    pub bgr: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

/// Decides, frame by frame, which analysed frames to keep.
#[derive(Debug)]
pub struct Selector {
    p: CollectParams,
    /// The model's score threshold (0–1).
    threshold: f32,
    last_saved: Option<Duration>,
    last_sample: Option<Duration>,
    /// Confirmed tracks' classes on their last update.
    classes: HashMap<u64, VehicleClass>,
    /// Frames saved per hour of the day (UTC).
    per_hour: [usize; 24],
}

impl Selector {
    pub fn new(p: CollectParams, threshold: f32) -> Self {
        Self { p, threshold, last_saved: None, last_sample: None, classes: HashMap::new(), per_hour: [0; 24] }
    }

    /// Counts the frames a folder already holds per hour of the day, so that the quota spans runs.
    pub fn with_hours(mut self, per_hour: [usize; 24]) -> Self {
        self.per_hour = per_hour;
        self
    }

    /// The reasons to keep an analysed frame (empty: not kept). Call [`Selector::saved`] when the
    /// frame was written.
    pub fn consider(&mut self, f: &Analysed<'_>) -> Vec<Reason> {
        let Analysed { pts, wall, raw, kept, tracks, ended } = *f;
        let threshold = self.threshold;
        let mut reasons = Vec::new();
        let flipped = tracks.iter().any(|t| self.classes.get(&t.id).is_some_and(|c| *c != t.class));
        for t in tracks {
            self.classes.insert(t.id, t.class);
        }
        for id in ended {
            self.classes.remove(id);
        }
        if self.last_saved.is_some_and(|s| pts.saturating_sub(s).as_secs_f64() < self.p.min_gap_s) {
            return reasons;
        }
        if self.p.hour_quota && self.per_hour[hour_of_day(wall)] >= self.hour_quota() {
            return reasons;
        }
        if self.last_sample.is_none_or(|s| pts.saturating_sub(s).as_secs_f64() >= self.p.sample_s) {
            reasons.push(Reason::Sample);
        }
        if flipped {
            reasons.push(Reason::ClassChange);
        }
        let near = raw.iter().filter(|d| (d.score - threshold).abs() < self.p.near).count();
        if near >= self.p.near_min {
            reasons.push(Reason::NearThreshold);
        }
        let mut pairs = 0;
        for (i, a) in kept.iter().enumerate() {
            pairs += kept[i + 1..].iter().filter(|b| a.bbox.iou(&b.bbox) >= self.p.crowd_iou).count();
        }
        if pairs >= self.p.crowd_pairs {
            reasons.push(Reason::Crowded);
        }
        reasons
    }

    /// The frame considered last was saved with these reasons.
    pub fn saved(&mut self, f: &Analysed<'_>, reasons: &[Reason]) {
        self.last_saved = Some(f.pts);
        if reasons.contains(&Reason::Sample) {
            self.last_sample = Some(f.pts);
        }
        self.per_hour[hour_of_day(f.wall)] += 1;
    }

    fn hour_quota(&self) -> usize {
        self.p.max_frames.div_ceil(24).max(1)
    }
}

fn hour_of_day(wall: SystemTime) -> usize {
    let s = wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ((s / 3600) % 24) as usize
}

/// Who made the pre-labels, for the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub camera: String,
    pub model: String,
    /// sha256 of the ONNX file and of the card's text.
    pub model_sha256: String,
    pub card_sha256: String,
}

#[derive(Serialize)]
struct ManifestLine<'a> {
    file: &'a str,
    camera: &'a str,
    /// Capture time, RFC 3339 UTC.
    time: String,
    /// Stream time, seconds.
    pts_s: f64,
    reasons: &'a [Reason],
    /// Pre-label boxes written.
    boxes: usize,
    model: &'a str,
    model_sha256: &'a str,
    card_sha256: &'a str,
}

/// A collection folder being written.
#[derive(Debug)]
pub struct Collection {
    dir: PathBuf,
    params: CollectParams,
    who: Provenance,
    set: Dataset,
    bytes: u64,
    /// A frame did not fit the byte bound: the folder is full.
    refused: bool,
    /// Frames in the folder per hour of the day (UTC), from the manifest.
    hours: [usize; 24],
    /// An exclusive lock on `DIR/.lock` while this collection writes: two writers would each
    /// rewrite annotations.json without the other's frames.
    _lock: std::fs::File,
}

impl Collection {
    /// Opens `dir` (created if missing); a collection already there is continued.
    pub fn open(dir: &Path, params: CollectParams, who: Provenance) -> Result<Self, CollectError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CollectError::Io { path, source }
        };
        for sub in ["images", "labels", "annotations"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(&dir.join(sub)))?;
        }
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(CollectError::Busy { path: dir.to_path_buf() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(CollectError::Io { path: lock_path, source: e }),
        }
        let file = dir.join("annotations.json");
        let set = if file.exists() {
            let set = Dataset::load(&file)
                .map_err(|e| CollectError::Existing { path: file.clone(), message: e.to_string() })?;
            let ours = CATEGORIES.iter().all(|(id, c)| set.category_name(*id) == Some(c.as_str()));
            if !ours {
                return Err(CollectError::Existing {
                    path: file,
                    message: "its categories are not junction's (person 1, bicycle 2, car 3, motorcycle 4, bus 6, \
                              truck 8): collect into another folder"
                        .into(),
                });
            }
            set
        } else {
            Dataset {
                info: Some(serde_json::json!({
                    "description": format!("junction collect: camera {} pre-labelled by {}", who.camera, who.model),
                    "note": "pre-labels: the model's detections, to be checked and corrected by a person; \
                             a motorcycle or bicycle box holds its riders",
                })),
                images: Vec::new(),
                annotations: Vec::new(),
                categories: CATEGORIES
                    .iter()
                    .map(|(id, c)| Category { id: *id, name: c.as_str().into(), supercategory: None })
                    .collect(),
            }
        };
        // Files a stopped run wrote before it listed them (the index is written after the frame):
        // this collection's own names only, never anything else in the folder.
        let listed: std::collections::HashSet<String> =
            set.images.iter().map(|i| i.file_name.trim_end_matches(".jpg").to_owned()).collect();
        let ours = format!("{}_", sanitise(&who.camera));
        let mut bytes = 0;
        for sub in ["images", "labels"] {
            let entries = std::fs::read_dir(dir.join(sub)).map_err(io(&dir.join(sub)))?;
            for e in entries.flatten() {
                let path = e.path();
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                if stem.starts_with(&ours) && !listed.contains(&stem) {
                    tracing::info!(file = %path.display(), "collect: removing a frame a stopped run did not list");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
        let mut hours = [0usize; 24];
        if let Ok(text) = std::fs::read_to_string(dir.join("manifest.jsonl")) {
            for line in text.lines() {
                let time = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["time"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()));
                if let Some(t) = time {
                    hours[hour_of_day(t)] += 1;
                }
            }
        }
        Ok(Self { dir: dir.to_path_buf(), params, who, set, bytes, refused: false, hours, _lock: lock })
    }

    /// Frames in the folder per hour of the day (UTC), for [`Selector::with_hours`].
    pub fn hours(&self) -> [usize; 24] {
        self.hours
    }

    /// Frames in the folder.
    pub fn len(&self) -> usize {
        self.set.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.images.is_empty()
    }

    /// Bytes of images and labels in the folder.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// No frame more fits.
    pub fn full(&self) -> bool {
        self.refused || self.set.images.len() >= self.params.max_frames || self.bytes >= self.params.max_bytes
    }

    /// Saves a frame with its pre-labels (`f.kept`, frame pixels). `Ok(false)`: the frame would pass
    /// a bound, nothing written.
    pub fn save(&mut self, pic: &Picture<'_>, f: &Analysed<'_>, reasons: &[Reason]) -> Result<bool, CollectError> {
        let Picture { bgr, width, height, stride } = *pic;
        let (pts, wall, labels) = (f.pts, f.wall, f.kept);
        if self.set.images.len() >= self.params.max_frames {
            return Ok(false);
        }
        let jpeg = crate::snapshot::encode_jpeg_rows(bgr, width, height, stride, 92).map_err(CollectError::Encode)?;
        let id = self.set.images.iter().map(|i| i.id).max().unwrap_or(0) + 1;
        let stamp = humantime::format_rfc3339_millis(wall).to_string().replace([':', '-'], "");
        let name = format!("{}_{stamp}_{id:06}", sanitise(&self.who.camera));
        let (fw, fh) = (f64::from(width), f64::from(height));
        let mut yolo = String::new();
        let mut boxes = Vec::new();
        for d in labels {
            let Some(k) = CATEGORIES.iter().position(|(_, c)| *c == d.class) else { continue };
            let b = d.bbox;
            let (x1, y1) = (f64::from(b.x1).clamp(0.0, fw), f64::from(b.y1).clamp(0.0, fh));
            let (x2, y2) = (f64::from(b.x2).clamp(0.0, fw), f64::from(b.y2).clamp(0.0, fh));
            // (NaN fails the test too: such a box is no box.)
            if !(x2 - x1 >= 1.0 && y2 - y1 >= 1.0) {
                continue;
            }
            let (w, h) = (x2 - x1, y2 - y1);
            yolo.push_str(&format!(
                "{k} {:.6} {:.6} {:.6} {:.6}\n",
                (x1 + w / 2.0) / fw,
                (y1 + h / 2.0) / fh,
                w / fw,
                h / fh
            ));
            boxes.push((CATEGORIES[k].0, [round2(x1), round2(y1), round2(w), round2(h)]));
        }
        if self.bytes + (jpeg.len() + 2 * yolo.len()) as u64 > self.params.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        let image = format!("{name}.jpg");
        write(&self.dir.join("images").join(&image), &jpeg)?;
        write(&self.dir.join("labels").join(format!("{name}.txt")), yolo.as_bytes())?;
        write(&self.dir.join("images").join(format!("{name}.txt")), yolo.as_bytes())?;
        self.bytes += (jpeg.len() + 2 * yolo.len()) as u64;
        let first = self.set.annotations.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        self.set.images.push(Image { id, file_name: image.clone(), width, height });
        for (next, (category_id, bbox)) in (first..).zip(&boxes) {
            self.set.annotations.push(Annotation {
                id: next,
                image_id: id,
                category_id: *category_id,
                bbox: *bbox,
                area: Some(bbox[2] * bbox[3]),
                iscrowd: 0,
                score: None,
                segmentation: Some(serde_json::json!([])),
            });
        }
        let line = ManifestLine {
            file: &format!("images/{image}"),
            camera: &self.who.camera,
            time: humantime::format_rfc3339_millis(wall).to_string(),
            pts_s: pts.as_secs_f64(),
            reasons,
            boxes: boxes.len(),
            model: &self.who.model,
            model_sha256: &self.who.model_sha256,
            card_sha256: &self.who.card_sha256,
        };
        let manifest = self.dir.join("manifest.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&manifest)
            .map_err(|source| CollectError::Io { path: manifest.clone(), source })?;
        let text = serde_json::to_string(&line).unwrap_or_default();
        writeln!(f, "{text}").map_err(|source| CollectError::Io { path: manifest.clone(), source })?;
        self.write_index()?;
        Ok(true)
    }

    /// The COCO file (twice), the class names, the image list and the YOLO descriptions, each
    /// replaced whole (a crash leaves the previous one).
    fn write_index(&self) -> Result<(), CollectError> {
        let text = serde_json::to_vec_pretty(&self.set).unwrap_or_default();
        write(&self.dir.join("annotations.json"), &text)?;
        write(&self.dir.join("annotations/instances_default.json"), &text)?;
        let names: String = CATEGORIES.iter().map(|(_, c)| format!("{}\n", c.as_str())).collect();
        write(&self.dir.join("classes.txt"), names.as_bytes())?;
        let list: String = self.set.images.iter().map(|i| format!("images/{}\n", i.file_name)).collect();
        write(&self.dir.join("train.txt"), list.as_bytes())?;
        // CVAT's "YOLO 1.1" (names and list relative to its data/ root; labels beside the images).
        let obj = format!(
            "classes = {}\ntrain = data/train.txt\nnames = data/classes.txt\nbackup = backup/\n",
            CATEGORIES.len()
        );
        write(&self.dir.join("obj.data"), obj.as_bytes())?;
        // Ultralytics training: the images folder (labels found by replacing images/ with labels/),
        // relative to this file's folder (no `path:`); validated on the same frames until a person
        // splits them. No `nc:` key: CVAT's reader takes every key but a few as a subset.
        let mut yaml = String::from("train: images\nval: images\nnames:\n");
        for (k, (_, c)) in CATEGORIES.iter().enumerate() {
            yaml.push_str(&format!("  {k}: {}\n", c.as_str()));
        }
        write(&self.dir.join("data.yaml"), yaml.as_bytes())
    }
}

impl From<crate::source::SourceError> for CollectError {
    fn from(e: crate::source::SourceError) -> Self {
        Self::Source(Box::new(e))
    }
}

/// One collection: where the frames come from, the model and rules that analyse them, the folder.
#[derive(Debug, Clone)]
pub struct Job {
    pub camera: String,
    pub uri: String,
    /// The model card of the pre-labels.
    pub card: PathBuf,
    pub detector: crate::detect::DetectorOptions,
    pub two_wheelers: crate::detect::twowheel::TwoWheelerParams,
    pub tracker: crate::track::TrackerConfig,
    pub params: CollectParams,
    pub out: PathBuf,
    /// The camera's video decoder.
    pub decoder: crate::source::Decoder,
    /// Detect on every Nth frame.
    pub every: u32,
    /// Stop after this many decoded frames (0: no limit), or at this instant.
    pub frames: u64,
    pub until: Option<std::time::Instant>,
}

/// What a collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames saved by this run, and in the folder after it.
    pub saved: usize,
    pub total: usize,
    /// Bytes of images and labels in the folder.
    pub bytes: u64,
    pub analysed: u64,
    pub decoded: u64,
    /// The folder was full before the run: nothing was opened.
    pub already_full: bool,
}

/// Runs a collection until the stream ends, the folder is full, `job.frames` or `job.until` is
/// reached, or `stop` is set; `saved(n)` is told the frames saved so far after each one. Frames are
/// read at the camera's own size (what the labeller sees); the model's copy is scaled here.
pub fn run(
    job: &Job,
    stop: &std::sync::atomic::AtomicBool,
    mut saved: impl FnMut(usize),
) -> Result<Summary, CollectError> {
    use crate::detect::card::ChannelOrder;
    use crate::detect::{Detector, ImageView, Job as DetectJob, ModelCard};
    use crate::geometry::{Plan, RegionSpec, TileGrid, TileSpec};
    use crate::source::{Source, SourceOptions};
    use crate::track::{ClassEvidence, Tracker, TrackerOutput};
    use sha2::Digest;
    use std::sync::atomic::Ordering;

    let card = ModelCard::load(&job.card)?;
    let card_text = std::fs::read(&job.card).map_err(|source| CollectError::Io { path: job.card.clone(), source })?;
    let who = Provenance {
        camera: job.camera.clone(),
        model: card.name.clone(),
        model_sha256: card.sha256.clone(),
        card_sha256: sha2::Sha256::digest(&card_text).iter().map(|b| format!("{b:02x}")).collect(),
    };
    let mut out = Collection::open(&job.out, job.params.clone(), who)?;
    let mut summary = Summary { total: out.len(), bytes: out.bytes(), ..Summary::default() };
    if out.full() {
        summary.already_full = true;
        return Ok(summary);
    }
    let threshold = job.detector.score.unwrap_or(card.thresholds.score);
    let input = card.input_size();
    let (align, stride, swap) =
        (card.letterbox.align, card.input_stride(), card.input.channel_order == ChannelOrder::Rgb);
    // The model sees down to `near` below its threshold: the unsure boxes are a reason to keep a frame.
    let opts =
        crate::detect::DetectorOptions { score: Some((threshold - job.params.near).max(0.01)), ..job.detector.clone() };
    let mut detector = Detector::new(card, &opts)?;
    let evidence = ClassEvidence { two_wheelers: job.two_wheelers.clone(), ground: None };
    let mut tracker = Tracker::new(job.tracker.clone()).with_evidence(evidence);
    let mut selector = Selector::new(job.params.clone(), threshold).with_hours(out.hours());

    let open = |input: Option<crate::geometry::Size>| {
        let mut o = SourceOptions {
            decoder: job.decoder.clone(),
            channel_order: ChannelOrder::Bgr,
            open_timeout: Duration::from_secs(20),
            stall_timeout: Some(Duration::from_secs(30)),
            ..SourceOptions::default()
        };
        if let Some(i) = input {
            o.input = i;
        }
        Source::open(&job.uri, o)
    };
    // The first frame tells the camera's size; the collection reads frames at that size.
    let native = {
        let mut probe = open(None)?;
        let f = probe.next_frame()?.ok_or_else(|| CollectError::NoFrame { uri: crate::source::redact(&job.uri) })?;
        f.frame_size()
    };
    let mut source = open(Some(native))?;
    let mut dets = vec![Vec::new()];
    let mut scratch = Vec::new();
    let mut tracked = TrackerOutput::default();
    let every = u64::from(job.every.max(1));
    while !stop.load(Ordering::Relaxed) && job.until.is_none_or(|u| std::time::Instant::now() < u) {
        let Some(frame) = source.next_frame()? else { break };
        summary.decoded += 1;
        if job.frames > 0 && summary.decoded > job.frames {
            break;
        }
        if !(summary.decoded - 1).is_multiple_of(every) {
            continue;
        }
        let size = frame.frame_size();
        let full = frame.image();
        if full.width != size.width || full.height != size.height {
            // The stream changed size: this frame came scaled to the old one.
            continue;
        }
        summary.analysed += 1;
        let plan = Plan::for_frame(size, &RegionSpec::Full, &TileSpec::Grid(TileGrid::ONE), input, align, stride);
        let scaled = resize(&full, plan.scaled.width, plan.scaled.height, swap);
        let (w, h) = (plan.scaled.width, plan.scaled.height);
        let image = ImageView { data: &scaled, width: w, height: h, stride: w as usize * 3 };
        detector.detect(&[DetectJob { image, plan: &plan }], &mut dets)?;
        let raw = &dets[0];
        let mut kept: Vec<Detection> = raw.iter().filter(|d| d.score >= threshold).copied().collect();
        crate::detect::twowheel::fuse(&mut kept, &job.two_wheelers, &mut scratch);
        tracker.update(frame.pts, &kept, &mut tracked);
        let seen = Analysed {
            pts: frame.pts,
            wall: frame.wall,
            raw,
            kept: &kept,
            tracks: &tracked.tracks,
            ended: &tracked.ended,
        };
        let reasons = selector.consider(&seen);
        if reasons.is_empty() {
            continue;
        }
        let picture = Picture { bgr: full.data, width: size.width, height: size.height, stride: full.stride };
        if out.save(&picture, &seen, &reasons)? {
            selector.saved(&seen, &reasons);
            summary.saved += 1;
            saved(summary.saved);
            tracing::info!(camera = %job.camera, pts = frame.pts.as_secs_f64(), ?reasons, boxes = kept.len(), "frame collected");
        }
        if out.full() {
            tracing::info!(frames = out.len(), bytes = out.bytes(), "collection full");
            break;
        }
    }
    summary.total = out.len();
    summary.bytes = out.bytes();
    Ok(summary)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A camera id as a file name: letters, digits, '-' and '_' kept, anything else '_' (so `..` is `__`).
pub fn sanitise(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Writes through a temporary file and a rename: a reader never sees half a file.
fn write(path: &Path, bytes: &[u8]) -> Result<(), CollectError> {
    let io = |source| CollectError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Packed 3-channel image resized by bilinear interpolation (pixel centres aligned, as OpenCV's
/// `INTER_LINEAR` and GStreamer's bilinear scaler), channels reversed when `swap` (BGR ↔ RGB).
pub fn resize(src: &crate::detect::ImageView<'_>, width: u32, height: u32, swap: bool) -> Vec<u8> {
    let (sw, sh) = (src.width as usize, src.height as usize);
    let (dw, dh) = (width as usize, height as usize);
    let mut out = vec![0u8; dw * dh * 3];
    if sw == 0 || sh == 0 {
        return out;
    }
    let (fx, fy) = (sw as f32 / dw as f32, sh as f32 / dh as f32);
    for y in 0..dh {
        let sy = ((y as f32 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f32);
        let (y0, wy) = (sy.floor() as usize, sy.fract());
        let y1 = (y0 + 1).min(sh - 1);
        for x in 0..dw {
            let sx = ((x as f32 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f32);
            let (x0, wx) = (sx.floor() as usize, sx.fract());
            let x1 = (x0 + 1).min(sw - 1);
            for c in 0..3 {
                let px =
                    |xx: usize, yy: usize| f32::from(src.data.get(yy * src.stride + xx * 3 + c).copied().unwrap_or(0));
                let top = px(x0, y0) * (1.0 - wx) + px(x1, y0) * wx;
                let bottom = px(x0, y1) * (1.0 - wx) + px(x1, y1) * wx;
                let v = top * (1.0 - wy) + bottom * wy;
                let oc = if swap { 2 - c } else { c };
                out[(y * dw + x) * 3 + oc] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::FrameBox;

    fn det(class: VehicleClass, score: f32, b: [f32; 4]) -> Detection {
        Detection { bbox: FrameBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] }, class, score, riders: 0 }
    }

    #[test]
    fn frames_are_chosen_for_their_reasons_and_spaced() {
        let p = CollectParams { sample_s: 60.0, min_gap_s: 5.0, ..CollectParams::default() };
        let mut s = Selector::new(p, 0.3);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64, raw, kept| Analysed {
            pts: Duration::from_secs(secs),
            wall: t0 + Duration::from_secs(secs),
            raw,
            kept,
            tracks: &[],
            ended: &[],
        };
        let car = [det(VehicleClass::Car, 0.8, [0.0, 0.0, 10.0, 10.0])];
        // The first frame is a sample.
        let f = at(0, &car, &car);
        let r = s.consider(&f);
        assert_eq!(r, [Reason::Sample]);
        s.saved(&f, &r);
        // Two boxes near the threshold, but within the gap: nothing.
        let unsure = [det(VehicleClass::Car, 0.25, [0.0; 4]), det(VehicleClass::Motorcycle, 0.33, [0.0; 4])];
        assert!(s.consider(&at(3, &unsure, &[])).is_empty());
        assert_eq!(s.consider(&at(10, &unsure, &[])), [Reason::NearThreshold]);
        // Three overlapping pairs among three boxes: a crowd.
        let crowd = [
            det(VehicleClass::Motorcycle, 0.6, [0.0, 0.0, 10.0, 10.0]),
            det(VehicleClass::Motorcycle, 0.6, [2.0, 0.0, 12.0, 10.0]),
            det(VehicleClass::Person, 0.6, [1.0, 1.0, 11.0, 11.0]),
        ];
        assert_eq!(s.consider(&at(10, &crowd, &crowd)), [Reason::Crowded]);
        // Past sample_s, the sample is due again.
        assert_eq!(s.consider(&at(61, &[], &[])), [Reason::Sample]);
    }

    #[test]
    fn a_track_that_changes_class_is_a_reason() {
        let mut s = Selector::new(CollectParams { sample_s: 1e9, min_gap_s: 0.0, ..CollectParams::default() }, 0.3);
        let wall = SystemTime::UNIX_EPOCH;
        let at = |secs: u64, tracks| Analysed {
            pts: Duration::from_secs(secs),
            wall,
            raw: &[],
            kept: &[],
            tracks,
            ended: &[],
        };
        let track = |class| TrackedObject {
            id: 7,
            bbox: FrameBox { x1: 0.0, y1: 0.0, x2: 10.0, y2: 10.0 },
            detection: FrameBox { x1: 0.0, y1: 0.0, x2: 10.0, y2: 10.0 },
            class,
            class_share: 0.6,
            person_share: 0.0,
            score: 0.5,
            velocity: (0.0, 0.0),
        };
        let person = [track(VehicleClass::Person)];
        let f = at(0, &person);
        let r = s.consider(&f);
        s.saved(&f, &r);
        let r = s.consider(&at(1, &person));
        assert!(r.is_empty(), "{r:?}");
        let r = s.consider(&at(2, &[track(VehicleClass::Motorcycle)]));
        assert_eq!(r, [Reason::ClassChange]);
    }

    #[test]
    fn a_rush_hour_cannot_fill_the_set() {
        // 48 frames at most: 2 an hour of the day.
        let p = CollectParams { sample_s: 0.0, min_gap_s: 0.0, max_frames: 48, ..CollectParams::default() };
        let mut s = Selector::new(p, 0.3);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(7 * 3600);
        let mut kept = 0;
        for k in 0..100u64 {
            let f = Analysed {
                pts: Duration::from_secs(k),
                wall: t0 + Duration::from_secs(k),
                raw: &[],
                kept: &[],
                tracks: &[],
                ended: &[],
            };
            let r = s.consider(&f);
            if !r.is_empty() {
                s.saved(&f, &r);
                kept += 1;
            }
        }
        assert_eq!(kept, 2);
    }

    fn who() -> Provenance {
        Provenance {
            camera: "north".into(),
            model: "m".into(),
            model_sha256: "0".repeat(64),
            card_sha256: "1".repeat(64),
        }
    }

    /// One folder, one writer; a frame over the byte bound fills the folder; a rerun drops the frames a
    /// stopped run did not list and goes on counting the hours of the frames already there.
    #[test]
    fn a_folder_has_one_writer_its_bounds_and_no_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let p = CollectParams { max_bytes: 1_000_000, ..CollectParams::default() };
        let mut c = Collection::open(dir.path(), p.clone(), who()).unwrap();
        let second = Collection::open(dir.path(), p.clone(), who()).unwrap_err();
        assert!(second.to_string().contains("another collection is writing this folder"), "{second}");
        let bgr: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let pic = Picture { bgr: &bgr, width: 64, height: 48, stride: 64 * 3 };
        let car = [
            det(VehicleClass::Car, 0.8, [4.0, 4.0, 30.0, 20.0]),
            det(VehicleClass::Car, 0.8, [f32::NAN, 0.0, 9.0, 9.0]),
        ];
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(7 * 3600 + 60);
        let f = Analysed { pts: Duration::ZERO, wall, raw: &car, kept: &car, tracks: &[], ended: &[] };
        assert!(c.save(&pic, &f, &[Reason::Sample]).unwrap());
        assert_eq!(c.set.annotations.len(), 1, "the NaN box is not written");
        let used = c.bytes();
        drop(c);
        // A frame written by a run that stopped before listing it.
        std::fs::write(dir.path().join("images/north_orphan.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("images/holiday.jpg"), b"not ours").unwrap();
        let tight = CollectParams { max_bytes: used + 10, ..p };
        let mut c = Collection::open(dir.path(), tight, who()).unwrap();
        assert!(!dir.path().join("images/north_orphan.jpg").exists());
        assert!(dir.path().join("images/holiday.jpg").exists(), "only the collection's own names");
        assert_eq!(c.hours()[7], 1);
        assert!(!c.full());
        let f = Analysed { pts: Duration::from_secs(60), ..f };
        assert!(!c.save(&pic, &f, &[Reason::Sample]).unwrap(), "over the byte bound");
        assert!(c.full(), "a frame that did not fit fills the folder");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn resizing_keeps_flat_colours_and_swaps_channels() {
        let data: Vec<u8> = [10u8, 20, 30].repeat(8 * 4);
        let src = crate::detect::ImageView { data: &data, width: 8, height: 4, stride: 24 };
        let out = resize(&src, 4, 2, false);
        assert!(out.chunks(3).all(|p| p == [10, 20, 30]));
        let out = resize(&src, 16, 8, true);
        assert!(out.chunks(3).all(|p| p == [30, 20, 10]));
    }
}
