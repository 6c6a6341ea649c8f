//! `junction detect`: detections per frame as JSON lines, with a timing summary.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use junction::config::Roi;
use junction::detect::{Detection, Detector, DetectorOptions, ModelCard, VehicleClass};
use junction::geometry::{RegionSpec, TileGrid, TileSpec};
use junction::source::{Source, SourceOptions};

use crate::DetectArgs;

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

pub fn detect(args: DetectArgs) -> Result<()> {
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
        parallel: usize::from(args.parallel),
        optimization: args.optimization,
        onnxruntime: args.onnxruntime.clone(),
        score: args.score,
        ..DetectorOptions::default()
    };
    let region = match args.view.roi {
        None | Some(Roi::Full) => RegionSpec::Full,
        Some(Roi::Rect(r)) => RegionSpec::Rect(r),
        Some(Roi::Auto { .. }) => anyhow::bail!("--roi auto: detect has no rules to surround; give x1,y1,x2,y2"),
    };
    let tiles = args.view.tiles()?.unwrap_or(TileSpec::Grid(TileGrid::ONE));
    let source_opts = SourceOptions {
        on_inference_busy: args.on_inference_busy,
        open_timeout: Duration::from_secs_f64(args.open_timeout),
        start: args.start,
        region,
        tiles,
        decoder: args.view.decoder.clone().unwrap_or_default(),
        ..SourceOptions::for_card(&card)
    };
    let mut detector = Detector::new(card, &opts)?;
    tracing::info!(model = %detector.card().name, provider = ?args.provider, "detector ready");
    let mut source = Source::open(&args.uri, source_opts)?;

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut dets: Vec<Vec<Detection>> = vec![Vec::new()];
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
        detector.detect(&[frame.job()], &mut dets)?;
        let dets = &dets[0][..];
        analysed += 1;
        total_dets += dets.len() as u64;
        for d in dets {
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
