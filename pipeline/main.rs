//! The `junction` command line.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use junction::aggregate::FlowReport;
use junction::analytics::{Anchor, Direction, EventKind, LineSpec, Side, TrafficEvent};
use junction::config::{CameraConfig, Config, DEFAULT_TILE_OVERLAP, Roi, parse_bin, parse_line_arg};
use junction::detect::{Detection, Detector, DetectorOptions, ModelCard, OptLevel, Provider, VehicleClass};
use junction::geometry::{FramePoint, RegionSpec, TileGrid, TileSpec};
use junction::runtime::{Observer, RunOptions, RunSummary, direction_total};
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
    /// Count vehicles: track them, count them on lines and in zones, bin by wall clock, store it all.
    /// With no arguments, runs the bundled example site on the bundled clip.
    Run(Box<RunArgs>),
    /// Check a site configuration and its calibration files, reporting every problem at once.
    CheckConfig(CheckArgs),
    /// Detect vehicles in a video: one JSON line per analysed frame on stdout, then a summary line.
    Detect(DetectArgs),
    /// Solve a camera's ground plane: error per point (metres), RMS, and an overlay with a 5 m grid
    /// and the rules drawn on a frame.
    Calibrate(CalibrateArgs),
    /// Turning-movement counts (CSV), peak hour and charts (PNG) from the store.
    Report(ReportArgs),
    /// GET an HTTP address of this box (e.g. http://127.0.0.1:9464/healthz); exit 0 when it answers
    /// 200: a container health check that needs no curl.
    Probe(ProbeArgs),
    /// Count a clip against its truth file (tests/data/*.truth.toml): errors per line, direction and
    /// class, and frames/s; --sweep compares settings.
    Eval(EvalArgs),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// http://HOST:PORT/PATH (an IP address, no name lookup).
    url: String,
    /// Seconds to wait for the connection and the answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Truth file: the clip, its lines and what crosses them.
    truth: PathBuf,
    /// Model card (default: models/yolox_nano.toml).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Detect on every Nth frame (default: junction's, 2).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    detect_every: Option<u32>,
    /// ONNX Runtime intra-op threads (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// ONNX Runtime library.
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// A counted crossing matches a truth crossing of the same line and direction within this many
    /// seconds.
    #[arg(long, default_value_t = 1.0)]
    tolerance: f64,
    /// Run several settings: "key=v1|v2 key2=…" (every combination of model, roi, tiles, every,
    /// score, moto_score, two_wheelers), or nothing for the default set (one change at a time).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    sweep: Option<String>,
    /// One JSON object per run on stdout instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    view: ViewArgs,
}

#[derive(Debug, clap::Args)]
struct CalibrateArgs {
    /// Calibration file (calibration/<site>/<camera>.toml).
    calibration: PathBuf,
    /// A frame of the camera (PNG or JPEG) at the calibration's frame_size.
    #[arg(long)]
    frame: PathBuf,
    /// Overlay PNG to write.
    #[arg(long, default_value = "overlay.png")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// From (UTC), e.g. 2026-11-26T07:00:00Z.
    #[arg(long, value_parser = parse_time)]
    from: SystemTime,
    /// To (UTC, exclusive).
    #[arg(long, value_parser = parse_time)]
    to: SystemTime,
    /// Only this site's reports.
    #[arg(long)]
    site: Option<String>,
    /// Site configuration whose store is read (default: the bundled example's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The store to read (overrides the configuration's).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Interval of the table and charts: a configured bin length (15m for the TMC and peak hour).
    #[arg(long, default_value = "15m")]
    interval: String,
    /// Folder for tmc.csv, volumes.png and speeds.png.
    #[arg(long, default_value = "report")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Video source for a quick survey without a site file (file, rtsp://, v4l2://, test://); with
    /// --config it replaces the URI of the configured camera.
    uri: Option<String>,
    /// Site configuration (default: deploy/junction.example.toml when no URI is given).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ad-hoc count line x1,y1,x2,y2 in frame pixels; "in" is the left side walking from the first
    /// point to the second. Repeatable; named line-1, line-2, … in order.
    #[arg(long = "line", value_name = "X1,Y1,X2,Y2")]
    lines: Vec<String>,
    /// Anchor point of ad-hoc lines: centre (the box centre: a line drawn over the vehicles as they
    /// appear on screen, any view) or bottom_centre (where the wheels touch the road: lines drawn on
    /// the road surface of oblique views; the default in site files).
    #[arg(long, default_value = "centre", value_parser = parse_anchor)]
    anchor: Anchor,
    /// Write totals per line, direction and class as JSON to this file at the end.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Wall-clock time of a file's first frame, RFC 3339 UTC (default: the file's creation time).
    #[arg(long, value_parser = parse_time)]
    start: Option<SystemTime>,
    /// SQLite store (overrides the config; ad-hoc default: junction.db).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Seconds between checkpoints of open bins, 1 to 3600: what a crash can lose at most (overrides
    /// [store] checkpoint_s).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3600))]
    checkpoint_s: Option<u32>,
    /// Bin lengths, comma-separated (overrides the config), e.g. 1m,15m.
    #[arg(long, value_delimiter = ',')]
    bins: Vec<String>,
    /// Model card (overrides the config).
    #[arg(long)]
    model: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (overrides the config; 0: one per physical core).
    #[arg(long)]
    threads: Option<usize>,
    /// ONNX Runtime library (overrides the config).
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
    /// Detect on every Nth frame, the tracker predicting the others (overrides [detector] every).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    detect_every: Option<u32>,
    /// MQTT broker, mqtt://host[:port] (overrides the config's [mqtt] url).
    #[arg(long)]
    mqtt: Option<String>,
    /// MQTT protocol version, 3.1.1 or 5 (overrides [mqtt] protocol).
    #[arg(long, value_parser = ["3.1.1", "5"])]
    mqtt_protocol: Option<String>,
    /// Also publish per-vehicle events to junction/v1/<site>/<camera>/events (sets [mqtt] events).
    #[arg(long)]
    mqtt_events: bool,
    /// Serve /metrics, /healthz and /readyz here, e.g. 127.0.0.1:9464 (overrides [http] listen).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Serve /snapshot/<camera>.jpg on the HTTP endpoint (needs --http or [http]).
    #[arg(long)]
    snapshots: bool,
    /// Stdout: text (counts as they happen, a table per closed bin) or json (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    #[command(flatten)]
    view: ViewArgs,
}

/// What the detector sees of each frame; each overrides the configuration of every camera.
#[derive(Debug, Clone, clap::Args)]
struct ViewArgs {
    /// Region of interest: auto (the box around the rules, plus a margin), full, or x1,y1,x2,y2 (frame
    /// pixels). The frame is cropped to it before scaling to the model input.
    #[arg(long, value_parser = junction::config::parse_roi)]
    roi: Option<junction::config::Roi>,
    /// Model inputs the region is split into: 1 (none), COLSxROWS (e.g. 2x1, overlapping by
    /// [detector] tile_overlap), or auto (tiles only where one input would shrink the region more
    /// than twice).
    #[arg(long)]
    tiles: Option<String>,
    /// Video decoder: auto (GStreamer's rank), software, nvv4l2decoder, nvh264dec or vaapi.
    #[arg(long)]
    decoder: Option<junction::source::Decoder>,
}

impl ViewArgs {
    /// `--tiles`, parsed (tiles overlapping by the default share).
    fn tiles(&self) -> Result<Option<TileSpec>> {
        self.tiles
            .as_deref()
            .map(|t| junction::config::parse_tiles(t, DEFAULT_TILE_OVERLAP).map_err(|e| anyhow::anyhow!("--tiles {e}")))
            .transpose()
    }
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Site configuration.
    #[arg(long, default_value = "deploy/junction.example.toml")]
    config: PathBuf,
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
    #[command(flatten)]
    view: ViewArgs,
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

fn parse_anchor(s: &str) -> Result<Anchor, String> {
    match s {
        "bottom_centre" => Ok(Anchor::BottomCentre),
        "centre" => Ok(Anchor::Centre),
        _ => Err("expected bottom_centre or centre".into()),
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
        Command::Run(args) => run(*args),
        Command::CheckConfig(args) => check_config(&args.config),
        Command::Detect(args) => detect(args),
        Command::Calibrate(args) => calibrate(&args),
        Command::Report(args) => report(&args),
        Command::Eval(args) => eval(&args),
        Command::Probe(args) => probe(&args),
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
    let region = match args.view.roi {
        None | Some(Roi::Full) => RegionSpec::Full,
        Some(Roi::Rect(r)) => RegionSpec::Rect(r),
        Some(Roi::Auto { .. }) => anyhow::bail!("--roi auto: detect has no rules to surround; give x1,y1,x2,y2"),
    };
    let tiles = args.view.tiles()?.unwrap_or(TileSpec::Grid(TileGrid::ONE));
    let source_opts = SourceOptions {
        input: card.input_size(),
        align: card.letterbox.align,
        channel_order: card.input.channel_order,
        on_inference_busy: args.on_inference_busy,
        open_timeout: Duration::from_secs_f64(args.open_timeout),
        start: args.start,
        region,
        tiles,
        decoder: args.view.decoder.clone().unwrap_or_default(),
        ..SourceOptions::default()
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

/// A path given relative to the working directory, or else to the checkout this binary was built from
/// (so that `cargo run -- run` works from anywhere in the repository).
fn bundled(path: &str) -> PathBuf {
    let here = PathBuf::from(path);
    if here.exists() { here } else { std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path) }
}

fn calibrate(args: &CalibrateArgs) -> Result<()> {
    let c = junction::calibrate::solve(&args.calibration)?;
    print!("{}", junction::calibrate::table(&c));
    junction::calibrate::overlay(&c, &args.frame, &args.out)?;
    println!("overlay: {}", args.out.display());
    Ok(())
}

fn report(args: &ReportArgs) -> Result<()> {
    let interval = parse_bin(&args.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let store = match (&args.store, &args.config) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => Config::load(c)?.store.path,
        (None, None) => Config::load(&bundled("deploy/junction.example.toml"))?.store.path,
    };
    if args.to <= args.from {
        anyhow::bail!("--to must be after --from");
    }
    let out = junction::report::make(&junction::report::ReportOptions {
        store,
        site: args.site.clone(),
        from: args.from,
        to: args.to,
        interval_s: interval.as_secs(),
        out_dir: args.out.clone(),
    })?;
    print!("{}", out.summary);
    for f in &out.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn probe(args: &ProbeArgs) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("--timeout {}: must be a positive number of seconds", args.timeout);
    }
    let body = junction::http::probe(&args.url, Duration::from_secs_f64(args.timeout))?;
    println!("{body}");
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    use junction::eval::{Settings, Truth, evaluate, sweep, sweep_table, table};
    let truth = Truth::load(&args.truth)?;
    let mut base = Settings::defaults(args.model.clone().unwrap_or_else(|| bundled("models/yolox_nano.toml")));
    if let Some(n) = args.detect_every {
        base.every = n;
    }
    base.threads = args.threads;
    base.onnxruntime.clone_from(&args.onnxruntime);
    if let Some(r) = args.view.roi {
        base.roi = r;
    }
    if let Some(t) = args.view.tiles()? {
        base.tiles = t;
    }
    let models = bundled("models");
    let runs = match args.sweep.as_deref() {
        None => vec![base.clone()],
        Some("") => sweep(&base, None, &models)?,
        Some(spec) => sweep(&base, Some(spec), &models)?,
    };
    let mut done = Vec::new();
    for (i, settings) in runs.into_iter().enumerate() {
        tracing::info!(run = i + 1, settings = %settings.describe(&base), "eval");
        let outcome = evaluate(&truth, &settings, args.tolerance)?;
        if args.json {
            println!("{}", serde_json::to_string(&outcome).context("eval JSON")?);
        } else if args.sweep.is_none() {
            print!("{}", table(&truth, &settings.describe(&base), &outcome));
        }
        done.push((settings, outcome));
    }
    if args.sweep.is_some() && !args.json {
        print!("{}", sweep_table(&truth, &base, &done));
    }
    Ok(())
}

fn check_config(path: &std::path::Path) -> Result<()> {
    let cfg = Config::load(path)?;
    println!("{}: ok: site {}, {} camera(s)", path.display(), cfg.site, cfg.cameras.len());
    for c in &cfg.cameras {
        let lines: Vec<&str> = c.lines.iter().map(|l| &*l.id).collect();
        let zones: Vec<&str> = c.zones.iter().map(|z| &*z.id).collect();
        println!(
            "  camera {}: {} lines [{}], {} zones [{}]",
            c.id,
            lines.len(),
            lines.join(", "),
            zones.len(),
            zones.join(", ")
        );
    }
    Ok(())
}

/// Builds the configuration of a run: the site file, or an ad-hoc one from the command line.
fn run_config(args: &RunArgs) -> Result<Config> {
    let adhoc_lines = args
        .lines
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let [x1, y1, x2, y2] = parse_line_arg(s).map_err(anyhow::Error::msg)?;
            Ok(LineSpec {
                id: format!("line-{}", i + 1).into(),
                a: FramePoint { x: x1, y: y1 },
                b: FramePoint { x: x2, y: y2 },
                in_side: Side::Left,
                anchor: args.anchor,
                lane: None,
                classes: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut cfg = match (&args.config, &args.uri) {
        (Some(path), _) => Config::load(path)?,
        (None, None) => Config::load(&bundled("deploy/junction.example.toml"))?,
        (None, Some(uri)) => {
            if adhoc_lines.is_empty() {
                anyhow::bail!("run {uri}: no --line and no --config: nothing to count");
            }
            Config::adhoc(bundled("models/yolox_nano.toml"), CameraConfig::new("camera", uri.clone()))
        }
    };
    if args.config.is_some()
        && let Some(uri) = &args.uri
    {
        match cfg.cameras.as_mut_slice() {
            [only] => only.uri = uri.clone(),
            _ => anyhow::bail!("run {uri}: the configuration has several cameras: which one is meant?"),
        }
    }
    if !adhoc_lines.is_empty() {
        match cfg.cameras.as_mut_slice() {
            [only] => only.lines.extend(adhoc_lines),
            _ => anyhow::bail!("--line: the configuration has several cameras: put the line in a calibration file"),
        }
    }
    if let Some(p) = &args.store {
        cfg.store.path = p.clone();
        // The day's ATSPM files go with the store they come from.
        cfg.store.atspm_dir = p.parent().unwrap_or(std::path::Path::new(".")).join("atspm");
    }
    if let Some(s) = args.checkpoint_s {
        cfg.store.checkpoint = Duration::from_secs(u64::from(s));
    }
    if !args.bins.is_empty() {
        cfg.bins = args
            .bins
            .iter()
            .map(|b| parse_bin(b).map_err(|e| anyhow::anyhow!("--bins: {e}")))
            .collect::<Result<_>>()?;
    }
    if let Some(m) = &args.model {
        cfg.model_card = m.clone();
    }
    if let Some(t) = args.threads {
        cfg.detector.intra_threads = t;
    }
    if let Some(n) = args.detect_every {
        cfg.detector.every = n;
    }
    if let Some(o) = &args.onnxruntime {
        cfg.detector.onnxruntime = Some(o.clone());
    }
    apply_view(&mut cfg, &args.view)?;
    if let Some(listen) = args.http {
        let snapshots = cfg.http.as_ref().is_some_and(|h| h.snapshots);
        cfg.http = Some(junction::http::HttpConfig { listen, snapshots });
    }
    if args.snapshots {
        match &mut cfg.http {
            Some(h) => h.snapshots = true,
            None => anyhow::bail!("--snapshots: no HTTP endpoint: add --http ADDR or [http] listen"),
        }
    }
    if let Some(url) = &args.mqtt {
        junction::publish::parse_broker_url(url).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
        match &mut cfg.mqtt {
            Some(m) => m.url = url.clone(),
            None => {
                cfg.mqtt = Some(junction::publish::MqttConfig {
                    url: url.clone(),
                    ca_file: None,
                    client_cert: None,
                    client_key: None,
                    username: None,
                    password_file: None,
                    password_env: None,
                    client_id: None,
                    keep_alive_s: 30,
                    drain_timeout_s: 10.0,
                    protocol: junction::publish::Protocol::default(),
                    events: false,
                })
            }
        }
    }
    if args.mqtt_protocol.is_some() || args.mqtt_events {
        let Some(m) = &mut cfg.mqtt else {
            anyhow::bail!("--mqtt-protocol/--mqtt-events: no broker: add --mqtt URL or [mqtt] url");
        };
        match args.mqtt_protocol.as_deref() {
            Some("5") => m.protocol = junction::publish::Protocol::V5,
            Some(_) => m.protocol = junction::publish::Protocol::V311,
            None => {}
        }
        m.events |= args.mqtt_events;
    }
    Ok(cfg)
}

/// The command line's region of interest, tiles and decoder, for every camera.
fn apply_view(cfg: &mut Config, view: &ViewArgs) -> Result<()> {
    let tiles = view.tiles()?;
    for cam in &mut cfg.cameras {
        if let Some(r) = view.roi {
            cam.roi = r;
        }
        if let Some(t) = tiles {
            cam.tiles = t;
        }
        if let Some(d) = &view.decoder {
            cam.decoder = d.clone();
        }
    }
    Ok(())
}

/// Prints events and closed bins as they happen.
struct Printer {
    json: bool,
    out: std::io::Stdout,
}

impl Observer for Printer {
    fn event(&mut self, camera: &str, e: &TrafficEvent) {
        let mut out = self.out.lock();
        let (direction, dwell, to, channel) = match &e.kind {
            EventKind::Crossing { direction } => (Some(direction.as_str()), None, None, None),
            EventKind::ZoneEnter => (None, None, None, None),
            EventKind::ZoneExit { dwell } => (None, Some(dwell.as_secs_f64()), None, None),
            EventKind::Movement { to, turn } => (Some(turn.as_str()), None, Some(&**to), None),
            EventKind::LoopOn { channel } | EventKind::LoopOff { channel } => (None, None, None, Some(*channel)),
        };
        let kind = e.kind.name();
        let speed = e.speed.map(|s| (f64::from(s.kmh) * 10.0).round() / 10.0);
        let wall = humantime::format_rfc3339_millis(e.wall).to_string();
        let _ = if self.json {
            let mut v = serde_json::json!({
                "type": "event", "camera": camera, "rule": &*e.rule, "kind": kind, "direction": direction,
                "class": e.class, "track": e.track, "pts": e.pts.as_secs_f64(), "wall": wall, "dwell_s": dwell,
            });
            if let Some(to) = to {
                v["to"] = to.into();
            }
            if let Some(c) = channel {
                v["channel"] = c.into();
            }
            if let Some(s) = speed {
                v["speed_kmh"] = s.into();
                v["speed_plausible"] = e.speed.is_some_and(|s| s.plausible).into();
            }
            writeln!(out, "{v}")
        } else {
            let what = match (&e.kind, direction, dwell) {
                (EventKind::Movement { .. }, Some(d), _) => format!("{d} to {}", to.unwrap_or("")),
                (EventKind::LoopOn { channel }, ..) => format!("on  (channel {channel})"),
                (EventKind::LoopOff { channel }, ..) => format!("off (channel {channel})"),
                (_, Some(d), _) => format!("{d:<4}"),
                (_, None, Some(s)) => format!("exit after {s:.1} s"),
                (_, None, None) => "enter".into(),
            };
            let speed = speed.map(|s| format!("  {s:.0} km/h")).unwrap_or_default();
            writeln!(
                out,
                "{wall}  {camera:<10} {:<10} {what} {:<10} track {}{speed}",
                &*e.rule,
                e.class.as_str(),
                e.track
            )
        };
        let _ = out.flush();
    }

    fn report(&mut self, r: &FlowReport) {
        let mut out = self.out.lock();
        if self.json {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["type"] = "report".into();
            let _ = writeln!(out, "{v}");
        } else {
            let _ = write!(out, "{}", report_table(r));
        }
        let _ = out.flush();
    }
}

/// A FlowReport as a table: one row per counter and direction, one column per class.
fn report_table(r: &FlowReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "── {} {} · {} + {} s{}{} · {} frames analysed, {} dropped",
        r.site,
        r.camera,
        r.bin_start,
        r.bin_seconds,
        if r.partial { format!(" (partial: {:.0} s covered)", r.covered_seconds) } else { String::new() },
        if r.revision > 1 { format!(" · revision {}", r.revision) } else { String::new() },
        r.frames_analysed,
        r.frames_dropped
    );
    for g in &r.gaps {
        let _ = writeln!(s, "   gap {} → {} ({:.1} s): {}", g.from, g.to, g.seconds, g.reason.as_str());
    }
    let _ = write!(s, "   {:<12} {:<4}", "counter", "dir");
    for c in VehicleClass::ALL {
        let _ = write!(s, " {:>10}", c.as_str());
    }
    let _ = writeln!(s, " {:>6} {:>8}", "total", "veh/h");
    for f in &r.flows {
        let _ = write!(s, "   {:<12} {:<4}", f.counter, f.direction.as_str());
        for c in VehicleClass::ALL {
            let n = r
                .volumes
                .iter()
                .find(|v| v.counter == f.counter && v.direction == f.direction && v.class == c)
                .map_or(0, |v| v.vehicles);
            let _ = write!(s, " {n:>10}");
        }
        let _ = writeln!(s, " {:>6} {:>8.0}", f.vehicles, f.veh_per_hour);
    }
    if r.flows.is_empty() {
        let _ = writeln!(s, "   (no vehicles counted)");
    }
    for z in &r.zones {
        let _ = writeln!(
            s,
            "   zone {:<12} entries {:>4}  mean {:>5.2} veh  max {:>3}  occupied {:>5.1} %  mean dwell {}",
            z.zone,
            z.entries,
            z.mean_vehicles,
            z.max_vehicles,
            100.0 * z.occupied_share,
            z.mean_dwell_s.map_or("-".into(), |d| format!("{d:.1} s"))
        );
        if z.kind == junction::analytics::ZoneKind::Queue {
            let _ = writeln!(
                s,
                "        queue: mean {:.2} veh, max {} veh{}",
                z.mean_queue_vehicles,
                z.max_queue_vehicles,
                z.max_queue_m.map_or(String::new(), |m| format!(", max {m:.1} m"))
            );
        }
    }
    for v in &r.speeds {
        let _ = writeln!(
            s,
            "   speed {:<12} {:<10} {:>3} veh  mean {:>5.1} km/h  85th percentile {:>5.1} km/h",
            v.counter,
            v.class.as_str(),
            v.vehicles,
            v.mean_kmh,
            v.p85_kmh
        );
    }
    for h in &r.headways {
        let _ = writeln!(
            s,
            "   headway {:<10} {:<4} {:>3} gaps  mean {:>6.1} s  min {:>5.1} s",
            h.counter,
            h.direction.as_str(),
            h.gaps,
            h.mean_s,
            h.min_s
        );
    }
    for m in &r.movements {
        let _ = writeln!(
            s,
            "   movement {} → {} {:<8} {:<10} {:>3} veh {:>6.1} PCU",
            m.from,
            m.to,
            m.movement.as_str(),
            m.class.as_str(),
            m.vehicles,
            m.pcu
        );
    }
    s
}

fn run(args: RunArgs) -> Result<()> {
    let cfg = run_config(&args)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while shutting down exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone()).context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    tracing::info!(
        site = %cfg.site,
        cameras = cfg.cameras.len(),
        store = %cfg.store.path.display(),
        "run starting"
    );
    let mut printer = Printer { json: args.format == "json", out: std::io::stdout() };
    let summary = junction::runtime::run(&cfg, &RunOptions { start: args.start }, &mut printer, &stop)?;
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("stopped by signal: open bins closed as partial, store flushed");
    }
    if !printer.json {
        print!("{}", totals_table(&summary));
    }
    if let Some(path) = &args.summary {
        let json = summary_json(&summary);
        std::fs::write(path, serde_json::to_vec_pretty(&json).context("summary")?)
            .with_context(|| format!("writing --summary {}", path.display()))?;
    }
    Ok(())
}

fn totals_table(s: &RunSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("══ totals\n");
    for c in &s.cameras {
        let _ = writeln!(out, "   camera {}: {} frames analysed, {} dropped", c.camera, c.frames, c.dropped);
        for (line, counts) in &c.lines {
            let _ = writeln!(
                out,
                "   {line:<12} in {:>4}  out {:>4}  total {:>4}",
                direction_total(counts, Direction::In),
                direction_total(counts, Direction::Out),
                counts.values().sum::<u64>()
            );
        }
    }
    out
}

/// `{"frames": N, "lines": [{"id", "camera", "in", "out", "by_class": {class: {"in", "out"}}}], …}`
fn summary_json(s: &RunSummary) -> serde_json::Value {
    let mut lines = Vec::new();
    for c in &s.cameras {
        for (id, counts) in &c.lines {
            let n = |d: Direction| direction_total(counts, d);
            let mut by_class = serde_json::Map::new();
            for ((d, class), count) in counts {
                let e = by_class.entry(class.as_str()).or_insert_with(|| serde_json::json!({"in": 0, "out": 0}));
                e[d.as_str()] = (*count).into();
            }
            lines.push(serde_json::json!({
                "id": id, "camera": c.camera, "in": n(Direction::In), "out": n(Direction::Out), "by_class": by_class,
            }));
        }
    }
    serde_json::json!({
        "frames": s.cameras.iter().map(|c| c.frames).sum::<u64>(),
        "frames_dropped": s.cameras.iter().map(|c| c.dropped).sum::<u64>(),
        "frames_detected": s.cameras.iter().map(|c| c.detected).sum::<u64>(),
        "cameras": s.cameras.iter().map(|c| serde_json::json!({
            "id": c.camera, "frames": c.frames, "dropped": c.dropped, "detected": c.detected,
            "faults": c.faults, "error": c.error,
        })).collect::<Vec<_>>(),
        "recrossings_suppressed": s.cameras.iter().map(|c| c.recrossings_suppressed).sum::<u64>(),
        "lines": lines,
    })
}
