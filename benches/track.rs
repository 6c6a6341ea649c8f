//! Tracking and counting per frame.
//!
//! Guards: ByteTrack update (predict, three Hungarian rounds, births and deaths) at 10, 50 and 200
//! vehicles in view, and the line and zone rules over 200 tracks. Both run once per analysed frame on
//! the analysis thread, beside ~10 ms of inference: they must stay well under a millisecond at the
//! traffic a junction sees.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use junction::analytics::{Anchor, LineSpec, RuleParams, Rules, Side, ZoneKind, ZoneSpec};
use junction::detect::{Detection, VehicleClass};
use junction::geometry::{FrameBox, FramePoint};
use junction::track::{TrackedObject, Tracker, TrackerConfig, TrackerOutput};

/// `n` vehicles in lanes across a 1920 × 1080 frame, each moving 12 px per 0.1 s, wrapping around.
fn scene(n: usize, step: u64) -> Vec<Detection> {
    (0..n)
        .map(|i| {
            let lane = (i % 20) as f32;
            let x = ((i / 20) as f32 * 180.0 + 12.0 * step as f32 + lane * 37.0) % 1900.0;
            let y = 40.0 + lane * 52.0;
            // Deterministic jitter of a pixel or two, like a detector's.
            let j = ((i as u64 * 31 + step * 17) % 5) as f32 - 2.0;
            Detection {
                bbox: FrameBox { x1: x + j, y1: y, x2: x + 60.0 + j, y2: y + 30.0 - j },
                class: if i % 3 == 0 { VehicleClass::Motorcycle } else { VehicleClass::Car },
                score: 0.5 + (i % 5) as f32 * 0.1,
                riders: 0,
            }
        })
        .collect()
}

fn tracker_update(c: &mut Criterion) {
    let mut g = c.benchmark_group("track");
    for n in [10usize, 50, 200] {
        let frames: Vec<Vec<Detection>> = (0..50).map(|s| scene(n, s)).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("bytetrack_update", n), &frames, |b, frames| {
            let mut tracker = Tracker::new(TrackerConfig::default());
            let mut out = TrackerOutput::default();
            let mut step = 0u64;
            b.iter(|| {
                let pts = Duration::from_millis(100 * step);
                tracker.update(pts, black_box(&frames[(step % 50) as usize]), &mut out);
                step += 1;
            })
        });
    }
    g.finish();
}

fn rules_update(c: &mut Criterion) {
    let n = 200;
    let lines: Vec<LineSpec> = (0..4)
        .map(|k| LineSpec {
            id: format!("l{k}").into(),
            a: FramePoint { x: 300.0 + 400.0 * k as f32, y: 0.0 },
            b: FramePoint { x: 300.0 + 400.0 * k as f32, y: 1080.0 },
            in_side: Side::Left,
            anchor: Anchor::BottomCentre,
            lane: None,
            classes: None,
        })
        .collect();
    let zones = vec![ZoneSpec {
        id: "queue".into(),
        polygon: vec![
            FramePoint { x: 0.0, y: 0.0 },
            FramePoint { x: 900.0, y: 0.0 },
            FramePoint { x: 900.0, y: 600.0 },
            FramePoint { x: 0.0, y: 600.0 },
        ],
        kind: ZoneKind::Queue,
        anchor: Anchor::BottomCentre,
    }];
    let frames: Vec<Vec<TrackedObject>> = (0..50)
        .map(|s| {
            scene(n, s)
                .into_iter()
                .enumerate()
                .map(|(i, d)| TrackedObject {
                    id: i as u64,
                    bbox: d.bbox,
                    detection: d.bbox,
                    class: d.class,
                    class_share: 1.0,
                    person_share: 0.0,
                    score: d.score,
                    velocity: (120.0, 0.0),
                })
                .collect()
        })
        .collect();
    let mut g = c.benchmark_group("track");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("rules_4_lines_1_zone_200_tracks", |b| {
        let mut rules = Rules::new(lines.clone(), zones.clone(), RuleParams::default());
        let mut events = Vec::new();
        let mut step = 0u64;
        b.iter(|| {
            let pts = Duration::from_millis(100 * step);
            events.clear();
            rules.update(pts, SystemTime::UNIX_EPOCH + pts, black_box(&frames[(step % 50) as usize]), &[], &mut events);
            step += 1;
        })
    });
    g.finish();
}

criterion_group!(benches, tracker_update, rules_update);
criterion_main!(benches);
