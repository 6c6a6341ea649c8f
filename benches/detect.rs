//! Detection stages outside ONNX Runtime, per frame of the YOLOX-Nano 416 × 416 model.
//!
//! Guards: the tensor fill (letterboxed 416 × 234 BGR frame → [1, 3, 416, 416] f32 with 114 padding, or
//! the rectangular [1, 3, 256, 416]), the motion measure on that frame, and
//! the output decoding + class-aware NMS over the 3549 candidates of a raw YOLOX head. Both must stay a
//! small fraction of inference (about 15 ms a frame on 2 cores): the issue budget for everything outside
//! inference is 15 % of the total.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use junction::detect::decode::{self, Candidate};
use junction::detect::fill::{ImageView, Normalise, fill_nchw};
use junction::geometry::{Letterbox, LetterboxAlign, Plan, Size, TileGrid};
use junction::motion::MotionMeter;

/// Deterministic pseudo-random numbers in [0, 1) (64-bit LCG, top 24 bits).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn tensor_fill(c: &mut Criterion) {
    let lb = Letterbox::new(Size::new(640, 360), Size::new(416, 416), LetterboxAlign::TopLeft);
    let (w, h) = (lb.scaled.width as usize, lb.scaled.height as usize);
    let stride = (w * 3).div_ceil(4) * 4;
    let mut rng = Lcg(1);
    let data: Vec<u8> = (0..stride * h).map(|_| (rng.next() * 255.0) as u8).collect();
    let img = ImageView { data: &data, width: w as u32, height: h as u32, stride };
    let norm = Normalise::new(1.0, [0.0; 3], [1.0; 3], 114);
    let mut out = vec![0.0f32; 3 * 416 * 416];
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tensor_fill_416x234_into_416x416", |b| {
        b.iter(|| fill_nchw(black_box(&img), &lb, &norm, black_box(&mut out)).expect("fill"))
    });
    // The same frame in a rectangular model's input cut to the stride (416 × 256): 39 % fewer
    // values, for the fill and for inference.
    let rect = Plan::new(Size::new(640, 360), None, Size::new(416, 416), LetterboxAlign::TopLeft, TileGrid::ONE)
        .fit_to_stride(32, LetterboxAlign::TopLeft);
    let rect_lb = rect.tiles[0];
    assert_eq!(rect_lb.input, Size::new(416, 256));
    let mut rect_out = vec![0.0f32; 3 * 416 * 256];
    g.bench_function("tensor_fill_416x234_into_416x256", |b| {
        b.iter(|| fill_nchw(black_box(&img), &rect_lb, &norm, black_box(&mut rect_out)).expect("fill"))
    });
    // The motion measure on the same image: block means of 4 × 4 scaled px, and the comparison with
    // the last detected frame's.
    let mut meter = MotionMeter::default();
    let rules = Some([320.0, 60.0, 320.0, 220.0]);
    meter.measure(&img, &rect, || rules);
    meter.detected();
    g.bench_function("motion_measure_416x234", |b| {
        b.iter(|| {
            meter.measure(black_box(&img), &rect, || rules);
            black_box(meter.changed(12))
        })
    });
    g.finish();
}

/// A raw YOLOX output [1, 3549, 85] like a busy street frame: low objectness almost everywhere, and 12
/// objects each seen by about 8 neighbouring anchors (the duplicates NMS removes).
fn synthetic_yolox_output(grid: &[[f32; 3]]) -> Vec<f32> {
    let mut rng = Lcg(7);
    let mut out = vec![0.0f32; grid.len() * 85];
    for row in out.chunks_exact_mut(85) {
        row[0] = rng.next();
        row[1] = rng.next();
        row[2] = rng.next() * 2.0 - 0.5;
        row[3] = rng.next() * 2.0 - 0.5;
        row[4] = rng.next() * 0.05;
        for s in &mut row[5..] {
            *s = rng.next() * 0.1;
        }
    }
    for obj in 0..12 {
        let centre = 200 + obj * 37;
        for k in 0..8 {
            let row = &mut out[(centre + k) * 85..(centre + k + 1) * 85];
            row[0] = 0.5 + 0.1 * k as f32;
            row[4] = 0.6 + 0.04 * k as f32;
            row[5 + [2, 3, 7][obj % 3]] = 0.9;
        }
    }
    out
}

fn decode_and_nms(c: &mut Criterion) {
    let grid = decode::yolox_grid(416, 416, &[8, 16, 32]);
    let out = synthetic_yolox_output(&grid);
    let mut cands: Vec<Candidate> = Vec::with_capacity(256);
    let keep = |k: usize| matches!(k, 0 | 1 | 2 | 3 | 5 | 7);
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(grid.len() as u64));
    g.bench_function("yolox_decode_nms_3549", |b| {
        b.iter(|| {
            cands.clear();
            decode::decode_yolox(black_box(&out), 80, Some(&grid), 0.3, keep, &mut cands);
            decode::nms(&mut cands, 0.45);
            assert!(!cands.is_empty());
        })
    });
    g.finish();
}

criterion_group!(benches, tensor_fill, decode_and_nms);
criterion_main!(benches);
