//! End to end over the first 150 frames of the test clip (15 s of street), as `junction run` does it
//! on one analysis thread: GStreamer decode + letterbox (its streaming thread, overlapped), tensor
//! fill, ONNX Runtime (2 intra-op threads), decode + NMS, ByteTrack, the example street's rules
//! (line, zone, approaches, loops, ground speed), aggregation and the store.
//!
//! Besides criterion's time per clip, prints the share of wall time spent outside ONNX Runtime's
//! `run()`: the budget is under 10 %.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use junction::aggregate::Aggregator;
use junction::analytics::Rules;
use junction::config::load_calibration_file;
use junction::detect::{Detection, Detector, DetectorOptions, ModelCard};
use junction::source::{OnInferenceBusy, Poll, Source, SourceOptions};
use junction::store::Store;
use junction::track::{Tracker, TrackerConfig, TrackerOutput};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FRAMES: u64 = 150;

struct Run {
    wall: Duration,
    inference: Duration,
    frames: u64,
    /// Waiting for the next decoded frame.
    source: Duration,
    /// Tensor fill, decode + NMS.
    pre_post: Duration,
    /// Tracker, rules, aggregation, store.
    after: Duration,
}

fn run_clip(det: &mut Detector, store: &mut Store) -> Run {
    let cam =
        load_calibration_file(&Path::new(ROOT).join("calibration/example-street/street.toml")).expect("calibration");
    let card = det.card();
    let opts = SourceOptions {
        input: card.input_size(),
        align: card.letterbox.align,
        channel_order: card.input.channel_order,
        on_inference_busy: Some(OnInferenceBusy::Block),
        start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_680_000)),
        ..SourceOptions::default()
    };
    let clip = Path::new(ROOT).join("tests/data/street_topdown_640x360.mp4");
    let start = Instant::now();
    let before = det.times;
    let (mut source, mut after) = (Duration::ZERO, Duration::ZERO);
    let mut src = Source::open(clip.to_str().expect("utf-8 path"), opts).expect("clip");
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut rules = Rules::new(cam.lines.clone(), cam.zones.clone(), Default::default())
        .with_approaches(cam.approaches.clone())
        .with_loops(cam.loops.clone());
    if let Some(h) = &cam.ground {
        rules = rules.with_ground(h.clone());
    }
    let counters = cam.lines.iter().map(|l| l.id.clone()).collect();
    let zones = cam.zones.iter().map(|z| (z.id.clone(), z.kind)).collect();
    let mut agg = Aggregator::new("bench", "street", counters, zones, &[Duration::from_secs(60)]);
    let (mut dets, mut tracked, mut events, mut reports) =
        (vec![Vec::<Detection>::new()], TrackerOutput::default(), Vec::new(), Vec::new());
    let mut frames = 0;
    while frames < FRAMES {
        let t = Instant::now();
        let polled = src.poll(Duration::from_secs(10)).expect("poll");
        source += t.elapsed();
        let frame = match polled {
            Poll::Frame(f) => f,
            Poll::Idle => continue,
            _ => break,
        };
        det.detect(&[frame.job()], &mut dets).expect("detect");
        let t = Instant::now();
        tracker.update(frame.pts, &dets[0], &mut tracked);
        events.clear();
        rules.update(frame.pts, frame.wall, &tracked.tracks, &tracked.ended, &mut events);
        reports.clear();
        agg.frame(frame.wall, 0, rules.zone_now(), rules.quality, &mut reports);
        for e in &events {
            agg.event(e);
        }
        store.save("bench", "street", &events, &reports).expect("store");
        after += t.elapsed();
        frames += 1;
    }
    let pre_post = (det.times.fill - before.fill) + (det.times.postprocess - before.postprocess);
    Run { wall: start.elapsed(), inference: det.times.infer - before.infer, frames, source, pre_post, after }
}

fn e2e(c: &mut Criterion) {
    let card = ModelCard::load(&Path::new(ROOT).join("models/yolox_nano.toml")).expect("card");
    // E2E_SPIN=1: ONNX Runtime's idle threads spin between runs (junction's default: they sleep).
    let spinning = std::env::var("E2E_SPIN").is_ok_and(|v| v == "1");
    let opts = DetectorOptions { intra_threads: 2, spinning, ..DetectorOptions::default() };
    let Ok(mut det) = Detector::new(card, &opts) else {
        eprintln!("e2e bench skipped: no ONNX Runtime library (run scripts/setup.sh)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("e2e.db")).expect("store");
    let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut g = c.benchmark_group("e2e");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(FRAMES));
    let sink = runs.clone();
    g.bench_function("street_clip_150_frames", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let r = run_clip(&mut det, &mut store);
                total += r.wall;
                if let Ok(mut v) = sink.lock() {
                    v.push(r);
                }
            }
            total
        })
    });
    g.finish();
    let runs: Vec<[Duration; 6]> = match runs.lock() {
        Ok(v) => v
            .iter()
            .map(|r| [r.wall, r.inference, r.source, r.pre_post, r.after, Duration::from_nanos(r.frames)])
            .collect(),
        Err(_) => Vec::new(),
    };
    let sum = |i: usize| runs.iter().map(|r| r[i]).sum::<Duration>();
    let frames = sum(5).as_nanos() as f64;
    if frames > 0.0 {
        let ms = |d: Duration| 1e3 * d.as_secs_f64() / frames;
        let (wall, inf) = (sum(0), sum(1));
        eprintln!(
            "e2e ({} runs, {frames} frames, ONNX Runtime spinning {spinning}): {:.2} ms/frame; inside run() {:.2}; \
             waiting for frames {:.2}; fill + decode/NMS {:.2}; track + rules + aggregate + store {:.2}; \
             outside inference {:.1} %",
            runs.len(),
            ms(wall),
            ms(inf),
            ms(sum(2)),
            ms(sum(3)),
            ms(sum(4)),
            100.0 * (1.0 - inf.as_secs_f64() / wall.as_secs_f64())
        );
    }
}

criterion_group!(benches, e2e);
criterion_main!(benches);
