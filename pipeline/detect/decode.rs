//! Output decoding and NMS: raw model output → candidates in model-input pixels.
//!
//! Plain functions over slices; the caller owns and reuses the output `Vec`.

use crate::geometry::ModelBox;

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
    cands.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..cands.len() {
        let c = cands[i];
        if cands[..kept].iter().any(|k| k.class == c.class && k.bbox.iou(&c.bbox) > iou_thr) {
            continue;
        }
        cands[kept] = c;
        kept += 1;
    }
    cands.truncate(kept);
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
