//! The stages around detection and tracking, per frame or per closed bin, each a criterion bench:
//! pulling a decoded, letterboxed frame from GStreamer, ONNX Runtime inference of YOLOX-Nano on a real
//! frame, aggregation of a frame into the open bins, serialising a FlowReport, and the store insert of
//! a frame's events and a closed bin.
//!
//! Guards: everything but inference must stay a small share of the ~10 ms a frame inference takes on
//! 2 cores (the end-to-end budget outside inference is 10 %, see `benches/e2e.rs`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use junction::aggregate::{Aggregator, FlowReport};
use junction::analytics::{Direction, EventKind, RuleQuality, TrafficEvent, ZoneKind, ZoneNow};
use junction::detect::{Detection, Detector, DetectorOptions, ModelCard, VehicleClass};
use junction::source::{OnInferenceBusy, Poll, Source, SourceOptions};
use junction::store::Store;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/street_topdown_640x360.mp4");
const CARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");

fn open_clip() -> Source {
    let opts = SourceOptions { on_inference_busy: Some(OnInferenceBusy::Block), ..SourceOptions::default() };
    Source::open(CLIP, opts).expect("the test clip opens")
}

/// Decoding, scaling and colour conversion in GStreamer, as the analysis thread sees them: the time to
/// pull the next frame when nothing else competes for the cores.
fn source_pull(c: &mut Criterion) {
    let mut g = c.benchmark_group("source");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("pull_frame_640x360_letterboxed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let mut src = open_clip();
                // The first frame includes opening the file and negotiating: not a steady-state pull.
                let _ = src.poll(Duration::from_secs(10));
                let t = Instant::now();
                let mut n = 0;
                while n < left {
                    match src.poll(Duration::from_secs(10)).expect("poll") {
                        Poll::Frame(f) => {
                            black_box(f.image());
                            n += 1;
                        }
                        Poll::Idle => {}
                        _ => break,
                    }
                }
                total += t.elapsed();
                if n == 0 {
                    break;
                }
                left -= n;
            }
            total
        })
    });
    g.finish();
}

fn inference(c: &mut Criterion) {
    let card = ModelCard::load(Path::new(CARD)).expect("model card");
    let opts = DetectorOptions { intra_threads: 2, ..DetectorOptions::default() };
    let Ok(mut det) = Detector::new(card, &opts) else {
        eprintln!("inference bench skipped: no ONNX Runtime library (run scripts/setup.sh)");
        return;
    };
    let mut src = open_clip();
    let frame = loop {
        if let Poll::Frame(f) = src.poll(Duration::from_secs(10)).expect("poll") {
            break f;
        }
    };
    let mut out: Vec<Vec<Detection>> = vec![Vec::new()];
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.bench_function("yolox_nano_416_fill_ort_run_and_decode_2_threads", |b| {
        b.iter(|| {
            det.detect(&[frame.job()], &mut out).expect("detect");
            black_box(&out);
        })
    });
    g.finish();
}

fn at(s: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_680_000) + Duration::from_secs_f64(s)
}

fn crossing(i: u64, t: f64) -> TrafficEvent {
    TrafficEvent {
        rule: Arc::from(["x1", "x2", "x3", "x4"][(i % 4) as usize]),
        kind: EventKind::Crossing { direction: if i.is_multiple_of(2) { Direction::In } else { Direction::Out } },
        track: i,
        class: if i.is_multiple_of(3) { VehicleClass::Motorcycle } else { VehicleClass::Car },
        class_share: 1.0,
        pts: Duration::from_secs_f64(t),
        wall: at(t),
        speed: None,
    }
}

fn aggregator() -> Aggregator {
    let counters = ["x1", "x2", "x3", "x4"].map(Arc::from).to_vec();
    Aggregator::new(
        "s",
        "c",
        counters,
        vec![(Arc::from("q"), ZoneKind::Queue)],
        &[Duration::from_secs(60), Duration::from_secs(900)],
    )
}

/// One frame into the open 1-minute and 15-minute bins with two crossings, at 10 frames/s (closing
/// a bin every 600 frames, as the box does).
fn aggregation(c: &mut Criterion) {
    let mut agg = aggregator();
    let mut out: Vec<FlowReport> = Vec::new();
    let zones = [ZoneNow { vehicles: 3, queued: 2, queue_m: Some(14.0) }];
    let mut i = 0u64;
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_with_2_crossings_1m_15m_bins", |b| {
        b.iter(|| {
            let t = i as f64 * 0.1;
            out.clear();
            agg.frame(at(t), 0, &zones, RuleQuality::default(), &mut out);
            agg.event(&crossing(2 * i, t));
            agg.event(&crossing(2 * i + 1, t));
            i += 1;
            black_box(&out);
        })
    });
    g.finish();
}

/// A busy 15-minute bin: 4 counters × 2 directions × 3 classes, speeds, headways.
fn busy_report() -> FlowReport {
    let mut agg = aggregator();
    let mut out = Vec::new();
    for k in 0..9000u64 {
        let t = k as f64 * 0.1;
        agg.frame(at(t), 0, &[ZoneNow::default()], RuleQuality::default(), &mut out);
        if k % 5 == 0 {
            agg.event(&crossing(k, t));
        }
    }
    agg.finish(junction::aggregate::GapReason::NoFrames, &mut out);
    out.pop().expect("the 15-minute bin")
}

fn serialisation(c: &mut Criterion) {
    let report = busy_report();
    let mut g = c.benchmark_group("serialise");
    g.throughput(Throughput::Elements(1));
    g.bench_function("flow_report_15m_to_json", |b| b.iter(|| serde_json::to_vec(black_box(&report)).expect("json")));
    g.finish();
}

/// The store's transaction per analysed frame with events (2 crossings), and per closed bin.
fn store_insert(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("bench.db")).expect("store");
    let report = busy_report();
    let mut i = 0u64;
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("insert_2_events", |b| {
        b.iter(|| {
            let t = i as f64 * 0.1;
            store.save("s", "c", &[crossing(2 * i, t), crossing(2 * i + 1, t)], &[]).expect("save");
            i += 1;
        })
    });
    let mut k = 0u64;
    g.bench_function("insert_flow_report_15m", |b| {
        b.iter(|| {
            let mut r = report.clone();
            r.id = format!("s/c/{k}/900");
            store.save("s", "c", &[], &[r]).expect("save");
            k += 1;
        })
    });
    // The cost of the power-cut guarantee: the same closed bin committed without the WAL sync.
    let mut normal = Store::open(&dir.path().join("bench-normal.db"))
        .expect("store")
        .with_report_sync(junction::store::Sync::Normal);
    g.bench_function("insert_flow_report_15m_sync_normal", |b| {
        b.iter(|| {
            let mut r = report.clone();
            r.id = format!("s/c/{k}/900");
            normal.save("s", "c", &[], &[r]).expect("save");
            k += 1;
        })
    });
    g.finish();
}

criterion_group!(benches, source_pull, inference, aggregation, serialisation, store_insert);
criterion_main!(benches);
