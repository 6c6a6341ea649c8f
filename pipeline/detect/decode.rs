//! Output decoding and NMS: raw model output → candidates in model-input pixels.
//!
//! Plain functions over slices; the caller owns and reuses the output `Vec`.

use crate::geometry::{FrameBox, ModelBox};

/// A detection before mapping to frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub bbox: ModelBox,
    pub score: f32,
    /// Index into the model's class list.
    pub class: u16,
}

/// One grid cell of a raw YOLOX head: cell column, cell row, stride (model-input pixels per cell).
pub type GridCell = [f32; 3];

/// The anchor grid of a raw YOLOX head, in output order: every cell of stride 8, then 16, then 32 …
pub fn yolox_grid(width: u32, height: u32, strides: &[u32]) -> Vec<GridCell> {
    let mut grid = Vec::new();
    for &s in strides {
        for gy in 0..height / s {
            for gx in 0..width / s {
                grid.push([gx as f32, gy as f32, s as f32]);
            }
        }
    }
    grid
}

/// Decodes a YOLOX output `[1, N, 5 + C]` row-major: per anchor `cx, cy, w, h, objectness, C scores`,
/// objectness and scores already sigmoided. With `grid` (raw head), `cx = (raw + gx) · s`,
/// `w = exp(raw) · s`; without it, boxes are already in model-input pixels.
///
/// Keeps a candidate when objectness × best class score > `score_thr` and `keep_class(class)`.
pub fn decode_yolox(
    out: &[f32],
    num_classes: usize,
    grid: Option<&[GridCell]>,
    score_thr: f32,
    keep_class: impl Fn(usize) -> bool,
    cands: &mut Vec<Candidate>,
) {
    let row_len = 5 + num_classes;
    for (i, row) in out.chunks_exact(row_len).enumerate() {
        let obj = row[4];
        // score = obj × class score ≤ obj: most anchors stop here.
        if obj <= score_thr {
            continue;
        }
        let (class, best) = argmax(&row[5..]);
        let score = obj * best;
        if score <= score_thr || !keep_class(class) {
            continue;
        }
        let (cx, cy, w, h) = match grid.and_then(|g| g.get(i)) {
            Some(&[gx, gy, s]) => ((row[0] + gx) * s, (row[1] + gy) * s, row[2].exp() * s, row[3].exp() * s),
            None => (row[0], row[1], row[2], row[3]),
        };
        cands.push(Candidate { bbox: ModelBox::from_cxcywh(cx, cy, w, h), score, class: class as u16 });
    }
}

/// Decodes a YOLOv8 output `[1, 4 + C, N]` row-major (one row per attribute, one column per anchor):
/// `cx, cy, w, h` in model-input pixels, then C class scores; no objectness.
pub fn decode_yolov8(
    out: &[f32],
    num_classes: usize,
    num_anchors: usize,
    score_thr: f32,
    keep_class: impl Fn(usize) -> bool,
    cands: &mut Vec<Candidate>,
) {
    let n = num_anchors;
    if out.len() < (4 + num_classes) * n {
        return;
    }
    for i in 0..n {
        let mut class = 0;
        let mut best = f32::NEG_INFINITY;
        for k in 0..num_classes {
            let v = out[(4 + k) * n + i];
            if v > best {
                best = v;
                class = k;
            }
        }
        if best <= score_thr || !keep_class(class) {
            continue;
        }
        let bbox = ModelBox::from_cxcywh(out[i], out[n + i], out[2 * n + i], out[3 * n + i]);
        cands.push(Candidate { bbox, score: best, class: class as u16 });
    }
}

/// Decodes one image of a DETR-style output: `labels` `[Q]`, `boxes` `[Q, 4]` (`x1, y1, x2, y2`, in
/// model-input pixels when the model was given the input size), `scores` `[Q]`. Keeps a query when its
/// score > `score_thr` and `keep_class(label)`; no NMS (the decoder chose its queries).
pub fn decode_detr(
    labels: &[i64],
    boxes: &[f32],
    scores: &[f32],
    score_thr: f32,
    keep_class: impl Fn(usize) -> bool,
    cands: &mut Vec<Candidate>,
) {
    for ((&label, b), &score) in labels.iter().zip(boxes.chunks_exact(4)).zip(scores) {
        let Ok(class) = usize::try_from(label) else { continue };
        if score <= score_thr || !keep_class(class) || class > usize::from(u16::MAX) {
            continue;
        }
        let bbox = ModelBox { x1: b[0].min(b[2]), y1: b[1].min(b[3]), x2: b[0].max(b[2]), y2: b[1].max(b[3]) };
        cands.push(Candidate { bbox, score, class: class as u16 });
    }
}

/// One object under two labels (a DETR query answering both car and truck): of boxes overlapping by
/// IoU > `iou_thr`, whatever their class, the highest-scoring is kept. Leaves them sorted by score.
pub fn merge_labels(cands: &mut Vec<Candidate>, iou_thr: f32) {
    suppress(cands, |k, c| k.bbox.iou(&c.bbox) > iou_thr);
}

/// Greedy suppression in place: highest score first, a candidate is dropped when `covered(kept, it)`
/// holds for a candidate already kept. Leaves the kept ones sorted by score, descending.
fn suppress(cands: &mut Vec<Candidate>, covered: impl Fn(&Candidate, &Candidate) -> bool) {
    cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..cands.len() {
        let c = cands[i];
        if cands[..kept].iter().any(|k| covered(k, &c)) {
            continue;
        }
        cands[kept] = c;
        kept += 1;
    }
    cands.truncate(kept);
}

/// A candidate of one tile, mapped to frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileCandidate {
    pub bbox: FrameBox,
    pub score: f32,
    pub class: u16,
    /// Index of the tile it came from.
    pub tile: u16,
    /// The box touches one of its tile's inner edges (a border with a neighbouring tile): the object
    /// may go on in the next tile.
    pub cut: bool,
}

/// Merges the candidates of neighbouring tiles into one box per object, in place, highest score first.
/// A candidate of the same class as a kept one from another tile, overlapping it by half of the smaller
/// box (intersection over the smaller area) or by IoU > `iou_thr`, is the same object: where either
/// box was cut at a tile border the kept box grows to the union of both (the object seen in pieces),
/// otherwise the weaker is dropped (the object seen whole twice, in the overlap).
pub fn merge_tiles(cands: &mut Vec<TileCandidate>, iou_thr: f32) {
    cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..cands.len() {
        let c = cands[i];
        let same = cands[..kept].iter().position(|k| {
            k.tile != c.tile && k.class == c.class && {
                let (a, b) = (frame_model(&k.bbox), frame_model(&c.bbox));
                let inter = intersection(&a, &b);
                let smaller = a.area().min(b.area());
                (smaller > 0.0 && inter / smaller >= 0.5) || a.iou(&b) > iou_thr
            }
        });
        match same {
            Some(k) => {
                let k = &mut cands[k];
                if k.cut || c.cut {
                    k.bbox = FrameBox {
                        x1: k.bbox.x1.min(c.bbox.x1),
                        y1: k.bbox.y1.min(c.bbox.y1),
                        x2: k.bbox.x2.max(c.bbox.x2),
                        y2: k.bbox.y2.max(c.bbox.y2),
                    };
                    k.cut &= c.cut;
                }
            }
            None => {
                cands[kept] = c;
                kept += 1;
            }
        }
    }
    cands.truncate(kept);
}

/// The same rectangle, for [`ModelBox`]'s area and IoU (the maths does not depend on the space).
fn frame_model(b: &FrameBox) -> ModelBox {
    ModelBox { x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 }
}

fn intersection(a: &ModelBox, b: &ModelBox) -> f32 {
    (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0) * (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0)
}

#[inline]
fn argmax(scores: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (k, &v) in scores.iter().enumerate() {
        if v > best.1 {
            best = (k, v);
        }
    }
    best
}

/// Class-aware greedy NMS in place: highest score first, a candidate is dropped when it overlaps a kept
/// one of the same class by IoU > `iou_thr`. Leaves the kept candidates sorted by score, descending.
pub fn nms(cands: &mut Vec<Candidate>, iou_thr: f32) {
    suppress(cands, |k, c| k.class == c.class && k.bbox.iou(&c.bbox) > iou_thr);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cx: f32, cy: f32, w: f32, h: f32, obj: f32, scores: &[f32]) -> Vec<f32> {
        let mut r = vec![cx, cy, w, h, obj];
        r.extend_from_slice(scores);
        r
    }

    #[test]
    fn grid_has_yolox_nano_anchor_count() {
        let g = yolox_grid(416, 416, &[8, 16, 32]);
        assert_eq!(g.len(), 3549);
        assert_eq!(g[1], [1.0, 0.0, 8.0]);
        assert_eq!(g[52], [0.0, 1.0, 8.0]);
        assert_eq!(g[2704], [0.0, 0.0, 16.0]);
    }

    #[test]
    fn yolox_raw_decode_uses_grid_and_stride() {
        let grid = [[0.0, 0.0, 8.0], [3.0, 2.0, 16.0]];
        let mut out = row(0.0, 0.0, 0.0, 0.0, 0.1, &[0.9, 0.1]); // below threshold
        out.extend(row(0.5, 0.25, 1.0f32.ln(), 2.0f32.ln(), 0.9, &[0.2, 0.8]));
        let mut c = Vec::new();
        decode_yolox(&out, 2, Some(&grid), 0.3, |_| true, &mut c);
        assert_eq!(c.len(), 1);
        let b = c[0].bbox;
        // cx = (0.5 + 3) * 16 = 56, cy = (0.25 + 2) * 16 = 36, w = 16, h = 32.
        assert!((b.x1 - 48.0).abs() < 1e-4 && (b.x2 - 64.0).abs() < 1e-4, "{b:?}");
        assert!((b.y1 - 20.0).abs() < 1e-4 && (b.y2 - 52.0).abs() < 1e-4, "{b:?}");
        assert_eq!(c[0].class, 1);
        assert!((c[0].score - 0.72).abs() < 1e-6);
    }

    #[test]
    fn yolox_drops_unmapped_classes() {
        let out = row(10.0, 10.0, 4.0, 4.0, 0.9, &[0.9, 0.1]);
        let mut c = Vec::new();
        decode_yolox(&out, 2, None, 0.3, |k| k != 0, &mut c);
        assert!(c.is_empty());
    }

    #[test]
    fn yolov8_decode_is_column_major_per_anchor() {
        // 2 anchors, 2 classes: rows cx, cy, w, h, s0, s1.
        let out = [10.0, 50.0, 10.0, 50.0, 4.0, 8.0, 4.0, 8.0, 0.1, 0.2, 0.7, 0.25];
        let mut c = Vec::new();
        decode_yolov8(&out, 2, 2, 0.3, |_| true, &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].class, 1);
        assert_eq!(c[0].bbox, ModelBox { x1: 8.0, y1: 8.0, x2: 12.0, y2: 12.0 });
    }

    #[test]
    fn detr_decode_keeps_mapped_labels_above_threshold() {
        let labels = [2i64, 9, 2, -1];
        let boxes = [10.0, 10.0, 50.0, 30.0, 10.0, 10.0, 50.0, 30.0, 60.0, 40.0, 20.0, 20.0, 0.0, 0.0, 1.0, 1.0];
        let scores = [0.8, 0.9, 0.5, 0.9];
        let mut c = Vec::new();
        decode_detr(&labels, &boxes, &scores, 0.3, |k| k == 2, &mut c);
        assert_eq!(c.len(), 2);
        // Corners given in either order come out ordered.
        assert_eq!(c[1].bbox, ModelBox { x1: 20.0, y1: 20.0, x2: 60.0, y2: 40.0 });
    }

    #[test]
    fn merge_labels_keeps_one_box_per_object_across_classes() {
        let b = ModelBox { x1: 0.0, y1: 0.0, x2: 10.0, y2: 10.0 };
        let mut c = vec![
            Candidate { bbox: b, score: 0.4, class: 7 },
            Candidate { bbox: b, score: 0.6, class: 2 },
            Candidate { bbox: ModelBox { x1: 20.0, x2: 30.0, ..b }, score: 0.3, class: 2 },
        ];
        merge_labels(&mut c, 0.7);
        // The car/truck pair is one object; the box beside it is another.
        assert_eq!(c.iter().map(|c| (c.class, c.score)).collect::<Vec<_>>(), vec![(2, 0.6), (2, 0.3)]);
    }

    fn tile_cand(x1: f32, x2: f32, score: f32, tile: u16, cut: bool) -> TileCandidate {
        TileCandidate { bbox: FrameBox { x1, y1: 100.0, x2, y2: 140.0 }, score, class: 2, tile, cut }
    }

    #[test]
    fn a_vehicle_across_a_tile_border_is_one_box() {
        // Tiles meet at x = 800 (tile 0 ends there, tile 1 starts at 700): a car from 760 to 860.
        // Tile 0 sees 760..800 (cut at its right edge); tile 1 sees all of it, 760..860.
        let mut c = vec![tile_cand(760.0, 800.0, 0.7, 0, true), tile_cand(760.0, 860.0, 0.6, 1, false)];
        merge_tiles(&mut c, 0.45);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].bbox.x1, c[0].bbox.x2), (760.0, 860.0));
        // Longer than the tiles' overlap (700..800), cut in both: a bus from 650 to 900 is 650..800 in
        // tile 0 and 700..900 in tile 1.
        let mut c = vec![tile_cand(650.0, 800.0, 0.5, 0, true), tile_cand(700.0, 900.0, 0.6, 1, true)];
        merge_tiles(&mut c, 0.45);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].bbox.x1, c[0].bbox.x2), (650.0, 900.0));
    }

    #[test]
    fn tile_merge_keeps_neighbours_and_other_classes() {
        // Two cars side by side in different tiles, overlapping a little: both stay.
        let mut c = vec![tile_cand(700.0, 780.0, 0.7, 0, false), tile_cand(770.0, 850.0, 0.6, 1, false)];
        merge_tiles(&mut c, 0.45);
        assert_eq!(c.len(), 2);
        // The same box in two tiles but of different classes (a rider over a bike): both stay.
        let mut c = vec![
            tile_cand(700.0, 780.0, 0.7, 0, true),
            TileCandidate { class: 0, ..tile_cand(700.0, 780.0, 0.6, 1, true) },
        ];
        merge_tiles(&mut c, 0.45);
        assert_eq!(c.len(), 2);
        // Seen whole in both tiles' overlap: one box, not grown.
        let mut c = vec![tile_cand(700.0, 780.0, 0.7, 0, false), tile_cand(702.0, 781.0, 0.6, 1, false)];
        merge_tiles(&mut c, 0.45);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].bbox.x1, c[0].bbox.x2), (700.0, 780.0));
    }

    #[test]
    fn two_motorcycles_side_by_side_and_one_behind_stay_three_through_nms() {
        // 30 × 50 px motorcycles: one 12 px beside the first (IoU 0.43), one 15 px behind it (IoU 0.54).
        let moto = |x: f32, y: f32, score: f32| Candidate {
            bbox: ModelBox { x1: x, y1: y, x2: x + 30.0, y2: y + 50.0 },
            score,
            class: 3,
        };
        let cands = vec![moto(100.0, 100.0, 0.6), moto(112.0, 100.0, 0.55), moto(100.0, 115.0, 0.5)];
        let mut c = cands.clone();
        nms(&mut c, crate::detect::DEFAULT_NMS_IOU);
        assert_eq!(c.len(), 3, "{c:?}");
        // The card's 0.45 keeps the one beside and merges the one behind into the first.
        let mut c = cands;
        nms(&mut c, 0.45);
        assert_eq!(c.iter().map(|c| c.score).collect::<Vec<_>>(), vec![0.6, 0.55]);
    }

    #[test]
    fn nms_is_class_aware() {
        let b = ModelBox { x1: 0.0, y1: 0.0, x2: 10.0, y2: 10.0 };
        let shifted = ModelBox { x1: 1.0, ..b };
        let far = ModelBox { x1: 50.0, y1: 50.0, x2: 60.0, y2: 60.0 };
        let mut c = vec![
            Candidate { bbox: shifted, score: 0.5, class: 0 },
            Candidate { bbox: b, score: 0.9, class: 0 },
            Candidate { bbox: b, score: 0.6, class: 1 },
            Candidate { bbox: far, score: 0.4, class: 0 },
        ];
        nms(&mut c, 0.45);
        let kept: Vec<_> = c.iter().map(|c| (c.score, c.class)).collect();
        assert_eq!(kept, vec![(0.9, 0), (0.6, 1), (0.4, 0)]);
    }
}
