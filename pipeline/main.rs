//! The `junction` command line.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use junction::detect::{Detection, Detector, DetectorOptions, ModelCard, OptLevel, Provider, VehicleClass};
use junction::source::{OnInferenceBusy, Source, SourceOptions};

/// Road-junction cameras to traffic measurements.
#[derive(Debug, Parser)]
#[command(name = "junction", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect vehicles in a video: one JSON line per analysed frame on stdout, then a summary line.
    Detect(DetectArgs),
}

#[derive(Debug, clap::Args)]
struct DetectArgs {
    /// Video source: a file path, file://, rtsp://, http(s)://, v4l2:///dev/videoN, or test://[pattern].
    uri: String,
    /// Model card (TOML beside the ONNX file).
    #[arg(long, default_value = "models/yolox_nano.toml")]
    model: PathBuf,
    /// Analyse every Nth frame (1: all).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Stop after this many decoded frames (0: until the stream ends).
    #[arg(long, default_value_t = 0)]
    frames: u64,
    /// Score threshold, 0–1 (default: the model card's).
    #[arg(long)]
    score: Option<f32>,
    /// Execution provider: cpu, cuda or tensorrt (no silent fallback).
    #[arg(long, default_value = "cpu")]
    provider: Provider,
    /// ONNX Runtime intra-op threads (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// ONNX Runtime graph optimisation: disable, basic, extended, all.
    #[arg(long, default_value = "all", value_parser = parse_opt_level)]
    optimization: OptLevel,
    /// ONNX Runtime library (default: ORT_DYLIB_PATH, then .onnxruntime/ from scripts/setup.sh).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Seconds to wait for the first frame before giving up (connection, negotiation).
    #[arg(long, default_value_t = 10.0)]
    open_timeout: f64,
    /// Wall-clock time of a file's first frame, RFC 3339 UTC (default: the file's creation time).
    #[arg(long, value_parser = parse_time)]
    start: Option<SystemTime>,
    /// When inference is slower than the source: keep_latest (drop older frames) or block.
    /// Default: keep_latest for live sources, block for files.
    #[arg(long, value_parser = parse_busy)]
    on_inference_busy: Option<OnInferenceBusy>,
}

fn parse_opt_level(s: &str) -> Result<OptLevel, String> {
    match s {
        "disable" => Ok(OptLevel::Disable),
        "basic" => Ok(OptLevel::Basic),
        "extended" => Ok(OptLevel::Extended),
        "all" => Ok(OptLevel::All),
        _ => Err("expected disable, basic, extended or all".into()),
    }
}

fn parse_busy(s: &str) -> Result<OnInferenceBusy, String> {
    match s {
        "keep_latest" => Ok(OnInferenceBusy::KeepLatest),
        "block" => Ok(OnInferenceBusy::Block),
        _ => Err("expected keep_latest or block".into()),
    }
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("{e} (expected e.g. 2026-11-26T08:00:00Z)"))
}

fn main() -> ExitCode {
    junction::telemetry::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect(args) => detect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined with ": ".
            eprintln!("junction: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Serialize)]
struct FrameLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Index of the frame in the stream, from 0.
    frame: u64,
    /// Buffer PTS, seconds.
    pts: f64,
    /// Wall-clock time, RFC 3339 UTC.
    wall: String,
    width: u32,
    height: u32,
    detections: Vec<DetectionLine<'a>>,
}

#[derive(Serialize)]
struct DetectionLine<'a> {
    /// x1, y1, x2, y2 in source-frame pixels.
    #[serde(rename = "box")]
    bbox: [f32; 4],
    class: &'a str,
    score: f32,
}

#[derive(Serialize)]
struct SummaryLine {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Frames taken from the source.
    frames_decoded: u64,
    frames_analysed: u64,
    /// Frames the source dropped because inference was busy (`keep_latest`), counted at the appsink.
    frames_dropped: u64,
    detections: u64,
    wall_s: f64,
    /// Analysed frames per second of wall time.
    fps: f64,
    /// Mean milliseconds per analysed frame, per stage.
    stage_ms: StageMs,
    /// Share of wall time spent outside ONNX Runtime's run().
    outside_inference: f64,
    by_class: std::collections::BTreeMap<VehicleClass, u64>,
}

#[derive(Serialize)]
struct StageMs {
    /// Waiting for the next frame (decode, scale and convert not already overlapped with inference).
    source: f64,
    fill: f64,
    inference: f64,
    /// Output decoding, NMS and mapping to frame pixels.
    postprocess: f64,
    output: f64,
}

fn detect(args: DetectArgs) -> Result<()> {
    let card = ModelCard::load(&args.model)?;
    if let Some(s) = args.score
        && !(0.0..=1.0).contains(&s)
    {
        anyhow::bail!("--score {s}: must be within 0..=1");
    }
    if !(args.open_timeout.is_finite() && args.open_timeout > 0.0) {
        anyhow::bail!("--open-timeout {}: must be a positive number of seconds", args.open_timeout);
    }
    let opts = DetectorOptions {
        provider: args.provider.clone(),
        intra_threads: args.threads,
        optimization: args.optimization,
        onnxruntime: args.onnxruntime.clone(),
        score: args.score,
        ..DetectorOptions::default()
    };
    let source_opts = SourceOptions {
        input: card.input_size(),
        align: card.letterbox.align,
        channel_order: card.input.channel_order,
        on_inference_busy: args.on_inference_busy,
        open_timeout: Duration::from_secs_f64(args.open_timeout),
        start: args.start,
        ..SourceOptions::default()
    };
    let mut detector = Detector::new(card, &opts)?;
    tracing::info!(model = %detector.card().name, provider = ?args.provider, "detector ready");
    let mut source = Source::open(&args.uri, source_opts)?;

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut dets: Vec<Detection> = Vec::new();
    let mut by_class = std::collections::BTreeMap::new();
    let (mut decoded, mut analysed, mut total_dets) = (0u64, 0u64, 0u64);
    let (mut t_source, mut t_output) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    loop {
        if args.frames > 0 && decoded >= args.frames {
            break;
        }
        let t = Instant::now();
        let frame = source.next_frame()?;
        t_source += t.elapsed();
        let Some(frame) = frame else { break };
        let index = decoded;
        decoded += 1;
        if index % args.every != 0 {
            continue;
        }
        dets.clear();
        detector.fill(&frame.image(), &frame.letterbox)?;
        detector.infer(&frame.letterbox, &mut dets)?;
        analysed += 1;
        total_dets += dets.len() as u64;
        for d in &dets {
            *by_class.entry(d.class).or_insert(0u64) += 1;
        }

        let t = Instant::now();
        let line = FrameLine {
            kind: "frame",
            frame: index,
            pts: frame.pts.as_secs_f64(),
            wall: humantime::format_rfc3339_millis(frame.wall).to_string(),
            width: frame.frame_size().width,
            height: frame.frame_size().height,
            detections: dets
                .iter()
                .map(|d| DetectionLine {
                    bbox: [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2],
                    class: d.class.as_str(),
                    score: d.score,
                })
                .collect(),
        };
        serde_json::to_writer(&mut out, &line).context("writing to stdout")?;
        out.write_all(b"\n").context("writing to stdout")?;
        t_output += t.elapsed();
    }
    let wall = started.elapsed();
    let n = analysed.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
    let times = detector.times;
    let summary = SummaryLine {
        kind: "summary",
        frames_decoded: decoded,
        frames_analysed: analysed,
        frames_dropped: source.dropped(),
        detections: total_dets,
        wall_s: wall.as_secs_f64(),
        fps: analysed as f64 / wall.as_secs_f64().max(1e-9),
        stage_ms: StageMs {
            source: ms(t_source),
            fill: ms(times.fill),
            inference: ms(times.infer),
            postprocess: ms(times.postprocess),
            output: ms(t_output),
        },
        outside_inference: 1.0 - times.infer.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        by_class,
    };
    serde_json::to_writer(&mut out, &summary).context("writing to stdout")?;
    out.write_all(b"\n").context("writing to stdout")?;
    out.flush().context("writing to stdout")?;
    tracing::info!(frames = decoded, analysed, fps = format!("{:.1}", summary.fps), "detect finished");
    Ok(())
}
