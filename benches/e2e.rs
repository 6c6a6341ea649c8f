//! End to end over the first 150 frames of the test clip (15 s of street), as `junction run` does it
//! on one analysis thread: GStreamer decode + letterbox (its streaming thread, overlapped), tensor
//! fill, ONNX Runtime (2 intra-op threads), decode + NMS, ByteTrack, the example street's rules
//! (line, zone, approaches, loops, ground speed) and aggregation through the same `CameraPipeline`
//! as `junction run`, and the store: written on the analysis thread (`inline`, how it was before the
//! outputs thread) or on the outputs thread behind its bounded channel (`thread`, how it is now).
//!
//! Besides criterion's time per clip, prints the share of wall time spent outside ONNX Runtime's
//! `run()`: the budget is under 10 %.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use junction::camera::{CameraPipeline, Produced};
use junction::config::{Config, load_calibration_file};
use junction::detect::{Detection, Detector, DetectorOptions, ModelCard};
use junction::sink::{Housekeeping, Output, Step};
use junction::source::{OnInferenceBusy, Poll, Source, SourceOptions};
use junction::store::Store;
use junction::telemetry::Metrics;

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
    /// Tracker, rules, aggregation, and the store (inline) or the hand-over to the outputs thread.
    after: Duration,
}

/// Where the store's writes happen: on the analysis thread (as before the outputs thread existed),
/// or on the outputs thread behind its bounded channel (as `junction run` does now).
#[derive(Clone, Copy, PartialEq)]
enum Outputs {
    Inline,
    Thread,
}

struct Quiet;

impl junction::sink::Observer for Quiet {
    fn event(&mut self, _: &str, _: &junction::analytics::TrafficEvent) {}
    fn report(&mut self, _: &junction::aggregate::FlowReport) {}
}

fn run_clip(det: &mut Detector, db: &Path, outputs: Outputs) -> Run {
    let mut cam =
        load_calibration_file(&Path::new(ROOT).join("calibration/example-street/street.toml")).expect("calibration");
    cam.id = "street".into();
    let mut cfg = Config::adhoc(Path::new(ROOT).join("models/yolox_nano.toml"), cam.clone());
    cfg.site = "bench".into();
    cfg.bins = vec![Duration::from_secs(60)];
    let card = det.card();
    let opts = SourceOptions {
        input: card.input_size(),
        stride: card.input_stride(),
        align: card.letterbox.align,
        channel_order: card.input.channel_order,
        on_inference_busy: Some(OnInferenceBusy::Block),
        start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_680_000)),
        ..SourceOptions::default()
    };
    let clip = Path::new(ROOT).join("tests/data/street_topdown_640x360.mp4");
    let metrics = Arc::new(Metrics::new(&[("street".into(), Duration::from_secs(10))]));
    let mut store = Store::open(db).expect("store");
    let (tx, rx) = std::sync::mpsc::sync_channel(junction::sink::CHANNEL);
    let housekeeping = Housekeeping { retention_days: 30, max_bytes: u64::MAX, drain: Duration::from_secs(10) };
    std::thread::scope(|scope| {
        let start = Instant::now();
        let sink = (outputs == Outputs::Thread).then(|| {
            let m = metrics.clone();
            let store = Store::open(db).expect("store");
            scope.spawn(move || junction::sink::run("bench", store, rx, &mut Quiet, None, &m, housekeeping))
        });
        let before = det.times;
        let (mut source, mut after) = (Duration::ZERO, Duration::ZERO);
        let mut src = Source::open(clip.to_str().expect("utf-8 path"), opts).expect("clip");
        let mut pipe = CameraPipeline::new(&cfg, &cam, metrics.clone());
        let mut dets = vec![Vec::<Detection>::new()];
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
            let mut out = Produced::default();
            pipe.frame(frame.pts, frame.wall, Some(&dets[0]), 0, Duration::ZERO, &mut out);
            match outputs {
                Outputs::Inline => store.save("bench", "street", &out.events, &out.reports).expect("store"),
                Outputs::Thread => {
                    if !out.is_empty() {
                        tx.send(Output::Step(Step::Produced { camera: "street".into(), produced: out }))
                            .expect("outputs thread");
                    }
                }
            }
            after += t.elapsed();
            frames += 1;
        }
        drop(tx);
        if let Some(h) = sink {
            h.join().expect("outputs thread");
        }
        let pre_post = (det.times.fill - before.fill) + (det.times.postprocess - before.postprocess);
        Run { wall: start.elapsed(), inference: det.times.infer - before.infer, frames, source, pre_post, after }
    })
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
    let mut g = c.benchmark_group("e2e");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(FRAMES));
    let mut all = Vec::new();
    for (name, outputs) in [("inline", Outputs::Inline), ("thread", Outputs::Thread)] {
        let db = dir.path().join(format!("e2e-{name}.db"));
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = runs.clone();
        g.bench_function(format!("street_clip_150_frames_outputs_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let r = run_clip(&mut det, &db, outputs);
                    total += r.wall;
                    if let Ok(mut v) = sink.lock() {
                        v.push(r);
                    }
                }
                total
            })
        });
        all.push((name, runs));
    }
    g.finish();
    for (name, runs) in all {
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
                "e2e outputs {name} ({} runs, {frames} frames, ONNX Runtime spinning {spinning}): {:.2} ms/frame \
                 ({:.1} frames/s); inside run() {:.2}; waiting for frames {:.2}; fill + decode/NMS {:.2}; \
                 track + rules + aggregate + outputs on the analysis thread {:.3}; outside inference {:.1} %",
                runs.len(),
                ms(wall),
                1e3 / ms(wall),
                ms(inf),
                ms(sum(2)),
                ms(sum(3)),
                ms(sum(4)),
                100.0 * (1.0 - inf.as_secs_f64() / wall.as_secs_f64())
            );
        }
    }
}

criterion_group!(benches, e2e);
criterion_main!(benches);
