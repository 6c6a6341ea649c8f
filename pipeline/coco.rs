//! COCO detection sets: labelled frames read by `junction eval --labels`, pre-labels written by
//! `junction collect`, and the detection accuracy of a model on them.
//!
//! [`evaluate`] computes what pycocotools' `COCOeval` computes for boxes (`iouType = "bbox"`, area
//! "all", at most 100 detections an image and category): per category the precision at 101 recall points for
//! each IoU threshold 0.50, 0.55, …, 0.95, averaged into AP@0.5 and AP@0.5:0.95, with its greedy
//! matching (detections by falling score, each to the best still unmatched box, crowd boxes
//! matchable again and never counted missed) and its interpolation (precision made monotone from
//! the high-recall end, read at the first point reaching each recall). The order of equal scores
//! follows pycocotools too (stable sorts, images by id). One difference, on purpose: pycocotools
//! takes a labelled box whose `id` is 0 as never matched (it stores the id as the match flag), which
//! Label Studio's COCO export (ids from 0) trips; here a match is a match. All boxes are `[x, y, width, height]` in pixels of the
//! image, x right and y down from its top-left corner.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest annotation file read (bytes): a labelled set of tens of thousands of frames fits.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Detections per image and category an evaluation keeps (the highest scores), as pycocotools'
/// `maxDets[-1]`.
pub const MAX_DETS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum CocoError {
    #[error("labelled set {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("labelled set {path}: {size} bytes, more than the {max} read")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("labelled set {path}: not COCO JSON: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("labelled set {path}: {problems}")]
    Invalid { path: PathBuf, problems: String },
}

/// A COCO detection file: what labelling tools export (CVAT "COCO 1.0", Label Studio "COCO") and
/// pycocotools reads. Fields other than these (segmentation, licenses, attributes) are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dataset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    pub images: Vec<Image>,
    pub annotations: Vec<Annotation>,
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    /// Relative to the annotation file's folder (or its `images/` folder).
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`, image pixels.
    pub bbox: [f64; 4],
    /// Box area in image pixels² (pycocotools reads it for its area ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<f64>,
    /// A crowd box: matches any number of detections and is never counted missed.
    #[serde(default)]
    pub iscrowd: u8,
    /// Detections only (a result file): the model's confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Polygons; boxes only here. CVAT's COCO importer wants the key even when empty (`[]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supercategory: Option<String>,
}

impl Dataset {
    /// Reads and checks a COCO file (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, CocoError> {
        let size = std::fs::metadata(path).map_err(|source| CocoError::Read { path: path.into(), source })?.len();
        if size > MAX_FILE_BYTES {
            return Err(CocoError::TooLarge { path: path.into(), size, max: MAX_FILE_BYTES });
        }
        let text = std::fs::read_to_string(path).map_err(|source| CocoError::Read { path: path.into(), source })?;
        let set: Dataset = serde_json::from_str(&text).map_err(|e| CocoError::Parse {
            path: path.into(),
            message: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
        let problems = set.check();
        if !problems.is_empty() {
            return Err(CocoError::Invalid { path: path.into(), problems: problems.join("; ") });
        }
        Ok(set)
    }

    /// Every problem that would make an evaluation wrong, each naming its image, annotation or
    /// category: duplicate ids, references to nothing, boxes that are not finite, negative,
    /// or outside their image by more than a pixel.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut images = BTreeMap::new();
        for im in &self.images {
            if images.insert(im.id, im).is_some() {
                problems.push(format!("image id {} appears twice", im.id));
            }
            if im.width == 0 || im.height == 0 {
                problems.push(format!("image {} ({:?}): size {}x{}", im.id, im.file_name, im.width, im.height));
            }
        }
        let mut categories = HashSet::new();
        for c in &self.categories {
            if !categories.insert(c.id) {
                problems.push(format!("category id {} appears twice", c.id));
            }
        }
        let mut ids = HashSet::new();
        for a in &self.annotations {
            let place = format!("annotation {}", a.id);
            if !ids.insert(a.id) {
                problems.push(format!("{place}: id appears twice"));
            }
            if !categories.contains(&a.category_id) {
                problems.push(format!("{place}: category_id {} is not in categories", a.category_id));
            }
            let [x, y, w, h] = a.bbox;
            if !a.bbox.iter().all(|v| v.is_finite()) || w < 0.0 || h < 0.0 {
                problems.push(format!("{place}: bbox {:?} is not [x, y, width ≥ 0, height ≥ 0]", a.bbox));
                continue;
            }
            match images.get(&a.image_id) {
                None => problems.push(format!("{place}: image_id {} is not in images", a.image_id)),
                Some(im) => {
                    let (iw, ih) = (f64::from(im.width), f64::from(im.height));
                    if x < -1.0 || y < -1.0 || x + w > iw + 1.0 || y + h > ih + 1.0 {
                        problems.push(format!(
                            "{place}: bbox {:?} lies outside image {} ({}x{})",
                            a.bbox, a.image_id, im.width, im.height
                        ));
                    }
                }
            }
        }
        problems
    }

    pub fn category_name(&self, id: u64) -> Option<&str> {
        self.categories.iter().find(|c| c.id == id).map(|c| c.name.as_str())
    }
}

/// One detection to evaluate: its image, category (ids of the labelled set), box and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`, image pixels.
    pub bbox: [f64; 4],
    pub score: f64,
}

/// pycocotools' recall points: `np.linspace(0, 1, 101)`, i.e. `i × 0.01` with the last exactly 1.
fn recall_points() -> [f64; 101] {
    let mut r = [0.0; 101];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i as f64 * 0.01;
    }
    r[100] = 1.0;
    r
}

/// pycocotools' IoU thresholds: `np.linspace(0.5, 0.95, 10)`, i.e. `0.5 + i × (0.45 / 9)`, the last
/// exactly 0.95.
pub fn iou_thresholds() -> [f64; 10] {
    let step = (0.95 - 0.5) / 9.0;
    let mut t = [0.0; 10];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f64 * step + 0.5;
    }
    t[9] = 0.95;
    t
}

/// IoU of a detection and a labelled box as pycocotools computes it (`maskUtils.iou` on boxes): a
/// crowd box divides by the detection's area alone.
fn iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// One image and category after matching: per IoU threshold, whether each kept detection (falling
/// score) matched a box and whether that box is ignored (crowd).
struct ImageEval {
    scores: Vec<f64>,
    /// `[threshold][detection]`.
    matched: Vec<Vec<bool>>,
    ignored: Vec<Vec<bool>>,
    /// Labelled boxes that count (not crowd).
    counted: usize,
}

/// pycocotools' `evaluateImg` for one image and category, area "all".
fn evaluate_image(gts: &[&Annotation], dts: &[&Scored], thresholds: &[f64]) -> ImageEval {
    // Labelled boxes that count first (a stable sort, as `np.argsort(kind="mergesort")`).
    let mut gts: Vec<&Annotation> = gts.to_vec();
    let ignore = |a: &Annotation| a.iscrowd != 0 || a.area.is_some_and(|x| !(0.0..=1e10).contains(&x));
    gts.sort_by_key(|a| ignore(a));
    let mut dts: Vec<&Scored> = dts.to_vec();
    dts.sort_by(|a, b| b.score.total_cmp(&a.score));
    dts.truncate(MAX_DETS);
    let gt_ignored: Vec<bool> = gts.iter().map(|a| ignore(a)).collect();
    let ious: Vec<Vec<f64>> =
        dts.iter().map(|d| gts.iter().map(|g| iou(&d.bbox, &g.bbox, g.iscrowd != 0)).collect()).collect();
    let mut matched = vec![vec![false; dts.len()]; thresholds.len()];
    let mut ignored = vec![vec![false; dts.len()]; thresholds.len()];
    for (t, &thr) in thresholds.iter().enumerate() {
        let mut taken = vec![false; gts.len()];
        for d in 0..dts.len() {
            let mut best = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for g in 0..gts.len() {
                if taken[g] && gts[g].iscrowd == 0 {
                    continue;
                }
                // Past the counted boxes, with one matched already: stop.
                if m.is_some_and(|m| !gt_ignored[m]) && gt_ignored[g] {
                    break;
                }
                if ious[d][g] < best {
                    continue;
                }
                best = ious[d][g];
                m = Some(g);
            }
            if let Some(m) = m {
                ignored[t][d] = gt_ignored[m];
                matched[t][d] = true;
                taken[m] = true;
            }
        }
    }
    ImageEval {
        scores: dts.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        counted: gt_ignored.iter().filter(|&&i| !i).count(),
    }
}

/// A category's accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub category_id: u64,
    pub name: String,
    /// Labelled boxes that count (not crowd).
    pub labelled: usize,
    /// Detections evaluated (after the per-image cap).
    pub detections: usize,
    /// Average precision at IoU 0.5 and averaged over 0.5:0.95 (`None`: nothing labelled).
    pub ap50: Option<f64>,
    pub ap: Option<f64>,
    /// At IoU 0.5 and the detections scoring at least the operating threshold: the share of them
    /// that matched a box, and the share of boxes they found (`None`: nothing to divide by).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Matches and misses at that point.
    pub true_positives: usize,
    pub false_positives: usize,
}

/// The accuracy of one set of detections on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    pub classes: Vec<ClassAccuracy>,
    /// Means over the categories with labelled boxes (pycocotools' `stats[1]` and `stats[0]`).
    pub ap50: Option<f64>,
    pub ap: Option<f64>,
    /// The score threshold precision and recall were read at.
    pub threshold: f64,
}

/// Evaluates `dets` against `gt` as pycocotools does (see the module's notes); precision and recall at
/// IoU 0.5 are read at `threshold`. Detections of images or categories not in `gt` are ignored.
pub fn evaluate(gt: &Dataset, dets: &[Scored], threshold: f64) -> Accuracy {
    let thresholds = iou_thresholds();
    let recalls = recall_points();
    let mut image_ids: Vec<u64> = gt.images.iter().map(|i| i.id).collect();
    image_ids.sort_unstable();
    let mut categories: Vec<&Category> = gt.categories.iter().collect();
    categories.sort_by_key(|c| c.id);
    // Boxes and detections by (image, category), each in file order: one pass, not one per pair.
    let mut boxes: HashMap<(u64, u64), Vec<&Annotation>> = HashMap::new();
    for a in &gt.annotations {
        boxes.entry((a.image_id, a.category_id)).or_default().push(a);
    }
    let mut found: HashMap<(u64, u64), Vec<&Scored>> = HashMap::new();
    for d in dets {
        found.entry((d.image_id, d.category_id)).or_default().push(d);
    }
    let mut classes = Vec::new();
    for cat in categories {
        let mut evals = Vec::new();
        for &img in &image_ids {
            let g = boxes.get(&(img, cat.id)).map_or(&[][..], Vec::as_slice);
            let d = found.get(&(img, cat.id)).map_or(&[][..], Vec::as_slice);
            if g.is_empty() && d.is_empty() {
                continue;
            }
            evals.push(evaluate_image(g, d, &thresholds));
        }
        // All images' detections by falling score (stable: image order breaks ties).
        let mut order: Vec<(usize, usize)> =
            evals.iter().enumerate().flat_map(|(e, ev)| (0..ev.scores.len()).map(move |d| (e, d))).collect();
        order.sort_by(|a, b| evals[b.0].scores[b.1].total_cmp(&evals[a.0].scores[a.1]));
        let counted: usize = evals.iter().map(|e| e.counted).sum();
        let mut class = ClassAccuracy {
            category_id: cat.id,
            name: cat.name.clone(),
            labelled: counted,
            detections: order.len(),
            ap50: None,
            ap: None,
            precision: None,
            recall: None,
            true_positives: 0,
            false_positives: 0,
        };
        if counted == 0 {
            // Nothing labelled: no AP, but the false alarms still count.
            class.false_positives =
                order.iter().filter(|&&(e, d)| !evals[e].ignored[0][d] && evals[e].scores[d] >= threshold).count();
            classes.push(class);
            continue;
        }
        let mut per_threshold = Vec::with_capacity(thresholds.len());
        for t in 0..thresholds.len() {
            let (mut tp, mut fp) = (0.0f64, 0.0f64);
            let mut rc = Vec::with_capacity(order.len());
            let mut pr = Vec::with_capacity(order.len());
            for &(e, d) in &order {
                if evals[e].ignored[t][d] {
                    // Neither a hit nor a false alarm, but still a step of the curve.
                } else if evals[e].matched[t][d] {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
                rc.push(tp / counted as f64);
                pr.push(tp / (fp + tp + f64::EPSILON));
                if t == 0 && evals[e].scores[d] >= threshold {
                    class.true_positives = tp as usize;
                    class.false_positives = fp as usize;
                }
            }
            for i in (1..pr.len()).rev() {
                if pr[i] > pr[i - 1] {
                    pr[i - 1] = pr[i];
                }
            }
            let mut sum = 0.0;
            for r in recalls {
                // `np.searchsorted(rc, r, side="left")`: the first point with recall ≥ r.
                let i = rc.partition_point(|&x| x < r);
                sum += pr.get(i).copied().unwrap_or(0.0);
            }
            per_threshold.push(sum / recalls.len() as f64);
        }
        class.ap50 = per_threshold.first().copied();
        class.ap = Some(per_threshold.iter().sum::<f64>() / per_threshold.len() as f64);
        let found = class.true_positives + class.false_positives;
        class.precision = (found > 0).then(|| class.true_positives as f64 / found as f64);
        class.recall = Some(class.true_positives as f64 / counted as f64);
        classes.push(class);
    }
    let mean = |f: fn(&ClassAccuracy) -> Option<f64>| {
        let v: Vec<f64> = classes.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Accuracy { ap50: mean(|c| c.ap50), ap: mean(|c| c.ap), classes, threshold }
}

/// Which labelled class each box was found as, at IoU ≥ 0.5 whatever the class (detections scoring
/// at least the threshold, by falling score, each to the unmatched box it overlaps most): rows are
/// the labelled categories and a last row of detections that matched nothing; columns the detected
/// categories and a last column of boxes nothing found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// Category names, in the order of rows and columns.
    pub names: Vec<String>,
    /// `[labelled or "none"][detected or "missed"]`.
    pub counts: Vec<Vec<usize>>,
}

/// One image's labelled boxes, crowd boxes and detections at the threshold.
type OneImage<'a> = (Vec<&'a Annotation>, Vec<&'a Annotation>, Vec<&'a Scored>);

pub fn confusion(gt: &Dataset, dets: &[Scored], threshold: f64) -> Confusion {
    let mut cats: Vec<&Category> = gt.categories.iter().collect();
    cats.sort_by_key(|c| c.id);
    let index = |id: u64| cats.iter().position(|c| c.id == id);
    let n = cats.len();
    let mut counts = vec![vec![0usize; n + 1]; n + 1];
    let mut by_image: HashMap<u64, OneImage<'_>> = HashMap::new();
    for a in &gt.annotations {
        let e = by_image.entry(a.image_id).or_default();
        if a.iscrowd == 0 { e.0.push(a) } else { e.1.push(a) }
    }
    for d in dets.iter().filter(|d| d.score >= threshold) {
        by_image.entry(d.image_id).or_default().2.push(d);
    }
    for img in &gt.images {
        let Some((boxes, crowds, found)) = by_image.get_mut(&img.id) else { continue };
        let (boxes, crowds) = (&*boxes, &*crowds);
        let mut found = std::mem::take(found);
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut taken = vec![false; boxes.len()];
        for d in found {
            let Some(col) = index(d.category_id) else { continue };
            let best = boxes
                .iter()
                .enumerate()
                .filter(|(g, _)| !taken[*g])
                .map(|(g, b)| (g, iou(&d.bbox, &b.bbox, false)))
                .filter(|(_, o)| *o >= 0.5)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((g, _)) => {
                    taken[g] = true;
                    if let Some(row) = index(boxes[g].category_id) {
                        counts[row][col] += 1;
                    }
                }
                // Inside a crowd box: neither a hit nor a false alarm, as in AP.
                None if crowds.iter().any(|c| iou(&d.bbox, &c.bbox, true) >= 0.5) => {}
                None => counts[n][col] += 1,
            }
        }
        for (g, b) in boxes.iter().enumerate() {
            if !taken[g]
                && let Some(row) = index(b.category_id)
            {
                counts[row][n] += 1;
            }
        }
    }
    Confusion { names: cats.iter().map(|c| c.name.clone()).collect(), counts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(boxes: &[(u64, u64, [f64; 4])]) -> Dataset {
        Dataset {
            info: None,
            images: (1..=2).map(|id| Image { id, file_name: format!("{id}.jpg"), width: 100, height: 100 }).collect(),
            annotations: boxes
                .iter()
                .enumerate()
                .map(|(k, &(image_id, category_id, bbox))| Annotation {
                    id: k as u64 + 1,
                    image_id,
                    category_id,
                    bbox,
                    area: Some(bbox[2] * bbox[3]),
                    iscrowd: 0,
                    score: None,
                    segmentation: None,
                })
                .collect(),
            categories: vec![
                Category { id: 3, name: "car".into(), supercategory: None },
                Category { id: 4, name: "motorcycle".into(), supercategory: None },
            ],
        }
    }

    fn det(image_id: u64, category_id: u64, bbox: [f64; 4], score: f64) -> Scored {
        Scored { image_id, category_id, bbox, score }
    }

    #[test]
    fn perfect_detections_score_one_and_a_false_alarm_above_the_hits_lowers_precision() {
        let gt = set(&[(1, 3, [10.0, 10.0, 20.0, 20.0]), (2, 3, [50.0, 50.0, 30.0, 10.0])]);
        let exact = [det(1, 3, [10.0, 10.0, 20.0, 20.0], 0.9), det(2, 3, [50.0, 50.0, 30.0, 10.0], 0.8)];
        let a = evaluate(&gt, &exact, 0.5);
        assert_eq!((a.classes[0].ap50, a.classes[0].ap), (Some(1.0), Some(1.0)));
        assert_eq!(a.classes[1].ap, None, "no motorcycle labelled");
        assert_eq!(a.ap, Some(1.0));
        // A false alarm scoring above both hits: precision 1/2 then 2/3 over all recall points.
        let mut noisy = exact.to_vec();
        noisy.push(det(1, 3, [70.0, 70.0, 10.0, 10.0], 0.95));
        let a = evaluate(&gt, &noisy, 0.5);
        let c = &a.classes[0];
        assert!((c.ap50.unwrap() - 2.0 / 3.0).abs() < 1e-9, "{c:?}");
        assert_eq!((c.true_positives, c.false_positives), (2, 1));
        assert_eq!((c.precision, c.recall), (Some(2.0 / 3.0), Some(1.0)));
        // One box shifted to IoU 2/3 matches at the thresholds 0.50–0.65 (4 of 10); above them it is a
        // false alarm after the hit: precision 1 up to recall 0.5 (51 of the 101 recall points), 0
        // beyond. AP@0.5:0.95 = (4 × 1 + 6 × 51/101) / 10.
        let shifted = [det(1, 3, [10.0, 10.0, 20.0, 20.0], 0.9), det(2, 3, [50.0, 52.0, 30.0, 10.0], 0.8)];
        assert!((iou(&shifted[1].bbox, &[50.0, 50.0, 30.0, 10.0], false) - 2.0 / 3.0).abs() < 1e-9);
        let a = evaluate(&gt, &shifted, 0.5);
        let expected = (4.0 + 6.0 * 51.0 / 101.0) / 10.0;
        assert!((a.classes[0].ap.unwrap() - expected).abs() < 1e-12, "{:?}", a.classes[0]);
        assert_eq!(a.classes[0].ap50, Some(1.0));
    }

    #[test]
    fn false_alarms_of_a_class_nobody_labelled_still_count_and_id_0_is_an_id() {
        let mut gt = set(&[(1, 3, [10.0, 10.0, 20.0, 20.0])]);
        // Label Studio numbers from 0.
        gt.annotations[0].id = 0;
        assert!(gt.check().is_empty(), "{:?}", gt.check());
        let dets = [det(1, 3, [10.0, 10.0, 20.0, 20.0], 0.9), det(1, 4, [50.0, 50.0, 9.0, 9.0], 0.7)];
        let a = evaluate(&gt, &dets, 0.5);
        // (1 / (1 + ε): precision as pycocotools divides it.)
        assert!((a.classes[0].ap.unwrap() - 1.0).abs() < 1e-12, "the box of id 0 is matched: {:?}", a.classes[0]);
        let moto = &a.classes[1];
        assert_eq!((moto.ap, moto.labelled, moto.false_positives), (None, 0, 1));
    }

    #[test]
    fn the_confusion_matrix_names_what_each_box_was_taken_for() {
        let gt = set(&[(1, 4, [10.0, 10.0, 20.0, 20.0]), (1, 3, [50.0, 50.0, 30.0, 20.0])]);
        // The motorcycle detected as a car, the car missed, a false motorcycle elsewhere.
        let dets = [det(1, 3, [11.0, 10.0, 20.0, 20.0], 0.9), det(2, 4, [0.0, 0.0, 5.0, 5.0], 0.7)];
        let c = confusion(&gt, &dets, 0.5);
        assert_eq!(c.names, ["car", "motorcycle"]);
        assert_eq!(c.counts, vec![vec![0, 0, 1], vec![1, 0, 0], vec![0, 1, 0]]);
    }

    #[test]
    fn broken_sets_are_refused_naming_the_place() {
        let mut gt = set(&[(1, 3, [10.0, 10.0, 20.0, 20.0])]);
        gt.annotations.push(Annotation {
            id: 1,
            image_id: 9,
            category_id: 7,
            bbox: [90.0, 0.0, 30.0, f64::NAN],
            area: None,
            iscrowd: 0,
            score: None,
            segmentation: None,
        });
        let p = gt.check().join("\n");
        assert!(p.contains("annotation 1: id appears twice"), "{p}");
        assert!(p.contains("category_id 7 is not in categories"), "{p}");
        assert!(p.contains("is not [x, y, width ≥ 0, height ≥ 0]"), "{p}");
        gt.annotations[1].bbox = [90.0, 0.0, 30.0, 10.0];
        assert!(gt.check().join("\n").contains("image_id 9 is not in images"));
    }
}
