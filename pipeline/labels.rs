//! A model's detection accuracy on a labelled set (`junction eval --labels`): each labelled image
//! read through the same GStreamer scaling as a camera's frames, detected on whole (one model input,
//! the card's size), riders fused with their bikes as `junction run` does before its tracker, and
//! scored by [`crate::coco::evaluate`].
//!
//! The model runs at [`LOW_SCORE`] so that the precision–recall curve reaches low scores (AP needs
//! the tail); the two-wheeler fusion sees only the detections at the card's threshold, as in `run`,
//! and the rest are scored as the model gave them. Precision and recall are read at the card's
//! threshold, which is what `run` counts with.

use std::path::{Path, PathBuf};

use crate::coco::{self, Accuracy, Confusion, Dataset, Scored};
use crate::detect::twowheel::{TwoWheelerParams, fuse};
use crate::detect::{DetectError, Detection, Detector, DetectorOptions, ModelCard, VehicleClass};
use crate::source::{Source, SourceError, SourceOptions};

/// The score the model runs at for average precision (0–1): low, so that the precision–recall curve
/// reaches the low scores AP integrates over; each image keeps its [`crate::coco::MAX_DETS`] best, as
/// pycocotools does.
pub const LOW_SCORE: f32 = 0.01;

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error(transparent)]
    Coco(#[from] coco::CocoError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("labelled image {image}: {source}")]
    Source { image: PathBuf, source: Box<SourceError> },
    #[error("labelled image {image}: no frame decoded")]
    Empty { image: PathBuf },
    #[error("labelled image {image}: decoded {actual}, labelled as {labelled} (labels of another size do not fit)")]
    Size { image: PathBuf, actual: String, labelled: String },
    #[error("labelled set {set}: image {file_name:?} not found beside it ({tried})")]
    Missing { set: PathBuf, file_name: String, tried: String },
    #[error("labelled set {set}: no category named car, motorcycle, bus, truck, bicycle or person (has {has})")]
    NoClasses { set: PathBuf, has: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A labelled set on disk: the COCO file and the folder its images are found in.
#[derive(Debug, Clone)]
pub struct LabelledSet {
    pub path: PathBuf,
    pub set: Dataset,
    /// Each image's file, in the order of `set.images`.
    pub files: Vec<PathBuf>,
}

impl LabelledSet {
    /// `path`: a COCO JSON file, or a folder holding `annotations.json` (junction collect's and this
    /// repository's layout) or `annotations/instances_default.json` (a CVAT "COCO 1.0" export).
    /// Images are looked for beside the file, in `images/` beside it, and in `images/` one folder up.
    pub fn load(path: &Path) -> Result<Self, LabelsError> {
        let file = if path.is_dir() {
            let cvat = path.join("annotations/instances_default.json");
            if cvat.is_file() { cvat } else { path.join("annotations.json") }
        } else {
            path.to_path_buf()
        };
        let set = Dataset::load(&file)?;
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut files = Vec::with_capacity(set.images.len());
        for im in &set.images {
            let rel = Path::new(&im.file_name);
            // A name that climbs out of the set's folder is not an image of the set.
            if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(LabelsError::Missing {
                    set: file.clone(),
                    file_name: im.file_name.clone(),
                    tried: "a relative path inside the set's folder is required".into(),
                });
            }
            let tries = [base.join(rel), base.join("images").join(rel), base.join("../images").join(rel)];
            match tries.iter().find(|p| p.is_file()) {
                Some(p) => files.push(p.clone()),
                None => {
                    return Err(LabelsError::Missing {
                        set: file.clone(),
                        file_name: im.file_name.clone(),
                        tried: tries.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }
        Ok(Self { path: file, set, files })
    }

    /// The set's category id for each junction class it labels.
    fn category_of(&self, class: VehicleClass) -> Option<u64> {
        self.set.categories.iter().find(|c| c.name == class.as_str()).map(|c| c.id)
    }
}

/// One model's detections on a set and their accuracy.
#[derive(Debug, Clone)]
pub struct ModelAccuracy {
    pub model: String,
    pub card: PathBuf,
    /// Model input (width × height, model pixels) each image was scaled into.
    pub input: String,
    pub detections: Vec<Scored>,
    pub accuracy: Accuracy,
    pub confusion: Confusion,
    /// Labelled categories that are not junction classes, and so never detected.
    pub not_classes: Vec<String>,
}

/// Detects on every image of `labelled` with `model` (loaded from `card`) and scores the detections.
pub fn evaluate_model(
    labelled: &LabelledSet,
    model: ModelCard,
    card: &Path,
    opts: &DetectorOptions,
    two_wheelers: &TwoWheelerParams,
) -> Result<ModelAccuracy, LabelsError> {
    let threshold = opts.score.unwrap_or(model.thresholds.score);
    let source_opts = SourceOptions::for_card(&model);
    let input = format!("{}x{}", model.input_size().width, model.input_size().height);
    let name = model.name.clone();
    let mut detector = Detector::new(model, &DetectorOptions { score: Some(LOW_SCORE), ..opts.clone() })?;
    let classes: Vec<(VehicleClass, u64)> =
        VehicleClass::ALL.iter().filter_map(|&c| labelled.category_of(c).map(|id| (c, id))).collect();
    if classes.is_empty() {
        let has = labelled.set.categories.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(LabelsError::NoClasses { set: labelled.path.clone(), has });
    }
    let mut detections = Vec::new();
    let mut out = vec![Vec::new()];
    let mut scratch = Vec::new();
    for (im, file) in labelled.set.images.iter().zip(&labelled.files) {
        let err = |source| LabelsError::Source { image: file.clone(), source: Box::new(source) };
        let mut source = Source::open(&file.to_string_lossy(), source_opts.clone()).map_err(err)?;
        let frame = source.next_frame().map_err(err)?.ok_or_else(|| LabelsError::Empty { image: file.clone() })?;
        let size = frame.frame_size();
        if (size.width, size.height) != (im.width, im.height) {
            return Err(LabelsError::Size {
                image: file.clone(),
                actual: format!("{}x{}", size.width, size.height),
                labelled: format!("{}x{}", im.width, im.height),
            });
        }
        detector.detect(&[frame.job()], &mut out)?;
        let (mut kept, tail): (Vec<Detection>, Vec<Detection>) = out[0].drain(..).partition(|d| d.score >= threshold);
        fuse(&mut kept, two_wheelers, &mut scratch);
        for d in kept.iter().chain(&tail) {
            let Some(&(_, category_id)) = classes.iter().find(|(c, _)| *c == d.class) else { continue };
            let (x1, y1) = (f64::from(d.bbox.x1), f64::from(d.bbox.y1));
            let bbox = [x1, y1, f64::from(d.bbox.x2) - x1, f64::from(d.bbox.y2) - y1];
            detections.push(Scored { image_id: im.id, category_id, bbox, score: f64::from(d.score) });
        }
    }
    let accuracy = coco::evaluate(&labelled.set, &detections, f64::from(threshold));
    let confusion = coco::confusion(&labelled.set, &detections, f64::from(threshold));
    let not_classes = labelled
        .set
        .categories
        .iter()
        .filter(|c| !classes.iter().any(|(_, id)| *id == c.id))
        .map(|c| c.name.clone())
        .collect();
    Ok(ModelAccuracy { model: name, card: card.to_path_buf(), input, detections, accuracy, confusion, not_classes })
}

/// The detections as a COCO result file (a list of `{image_id, category_id, bbox, score}`), which
/// pycocotools' `COCO.loadRes` reads.
pub fn write_results(path: &Path, detections: &[Scored]) -> Result<(), LabelsError> {
    let list: Vec<serde_json::Value> = detections
        .iter()
        .map(|d| {
            serde_json::json!({ "image_id": d.image_id, "category_id": d.category_id, "bbox": d.bbox, "score": d.score })
        })
        .collect();
    let text = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    std::fs::write(path, text).map_err(|source| LabelsError::Write { path: path.to_path_buf(), source })
}

/// The accuracy tables of one or several models, side by side, as Markdown.
pub fn table(set: &LabelledSet, runs: &[ModelAccuracy]) -> String {
    use std::fmt::Write;
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v));
    let mut s = String::new();
    let labelled = set.set.annotations.iter().filter(|a| a.iscrowd == 0).count();
    let _ = writeln!(s, "{}: {} images, {} labelled boxes", set.path.display(), set.set.images.len(), labelled);
    let _ = writeln!(s, "\n| model | input | AP@0.5 | AP@0.5:0.95 |");
    let _ = writeln!(s, "|---|---|---|---|");
    for r in runs {
        let _ = writeln!(s, "| {} | {} | {} | {} |", r.model, r.input, pct(r.accuracy.ap50), pct(r.accuracy.ap));
    }
    for r in runs {
        let _ = writeln!(
            s,
            "\n{} ({}): per class; precision and recall at IoU 0.5 and score ≥ {:.2}",
            r.model,
            r.card.display(),
            r.accuracy.threshold
        );
        let _ = writeln!(s, "\n| class | labelled | AP@0.5 | AP@0.5:0.95 | precision | recall | found | false |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for c in &r.accuracy.classes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.name,
                c.labelled,
                pct(c.ap50),
                pct(c.ap),
                pct(c.precision),
                pct(c.recall),
                c.true_positives,
                c.false_positives
            );
        }
        let n = r.confusion.names.len();
        let _ = writeln!(s, "\nlabelled (rows) found as (columns), IoU ≥ 0.5 whatever the class:\n");
        let _ = writeln!(s, "| labelled \\ found | {} | missed |", r.confusion.names.join(" | "));
        let _ = writeln!(s, "|---|{}---|", "---|".repeat(n));
        for (i, row) in r.confusion.counts.iter().enumerate() {
            let label = r.confusion.names.get(i).map_or("(nothing)", String::as_str);
            let cells: Vec<String> = row.iter().map(usize::to_string).collect();
            let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
        }
        if !r.not_classes.is_empty() {
            let _ = writeln!(s, "\nnot junction classes (never detected): {}", r.not_classes.join(", "));
        }
    }
    s
}
