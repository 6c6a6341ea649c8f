//! The `junction` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use junction::analytics::Anchor;
use junction::config::{Config, DEFAULT_TILE_OVERLAP, parse_bin};
use junction::detect::{OptLevel, Provider};
use junction::geometry::TileSpec;
use junction::publish::Protocol;
use junction::runtime::RunOptions;
use junction::source::OnInferenceBusy;

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
    /// Print an Argon2 hash of a password read from stdin, for `[http] password_hash` (the console's
    /// login). The password itself is never stored.
    HashPassword,
    /// Count a clip against its truth file (tests/data/*.truth.toml): errors per line, direction and
    /// class, and frames/s; --sweep compares settings.
    Eval(EvalArgs),
    /// Check a model and its card before a site uses them: the file's sha256, the graph's inputs and
    /// outputs against the card, and one frame through the model.
    CheckCard(CheckCardArgs),
    /// Save frames worth labelling (periodic samples, class flips, unsure scores, crowds) with the
    /// model's detections as pre-labels: COCO JSON and YOLO txt that CVAT and Label Studio import.
    /// From a video file, or a site's camera whose [[camera]] has `collect = true`.
    Collect(CollectArgs),
}

#[derive(Debug, clap::Args)]
struct CollectArgs {
    /// A video file (a camera only through --config and --camera).
    uri: Option<String>,
    /// Site file whose camera to collect from (its model, rules and `collect` switch).
    #[arg(long, requires = "camera")]
    config: Option<PathBuf>,
    /// The camera's id in the site file.
    #[arg(long, requires = "config")]
    camera: Option<String>,
    /// Folder to write (created; a collection already there is continued).
    #[arg(long)]
    out: PathBuf,
    /// Model card of the pre-labels (default: the site's, or models/yolox_nano.toml).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Detect on every Nth frame.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    every: u32,
    /// Seconds of stream time between periodic samples.
    #[arg(long, default_value_t = 600.0)]
    sample_s: f64,
    /// Fewest seconds of stream time between two saved frames.
    #[arg(long, default_value_t = 5.0)]
    min_gap_s: f64,
    /// Most frames in the folder.
    #[arg(long, default_value_t = 500)]
    max_frames: usize,
    /// Most megabytes (MiB) of images and labels in the folder.
    #[arg(long, default_value_t = 500)]
    max_mb: u64,
    /// Stop after this many decoded frames (0: until the stream ends or the folder is full).
    #[arg(long, default_value_t = 0)]
    frames: u64,
    /// ONNX Runtime intra-op threads (0: the site's, or one per physical core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// ONNX Runtime library.
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CheckCardArgs {
    /// The model card (TOML beside the ONNX file).
    card: PathBuf,
    /// A frame to run the model on, PNG or JPEG (default: the bundled street frame, which must give
    /// detections).
    #[arg(long)]
    image: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// ONNX Runtime library.
    #[arg(long)]
    onnxruntime: Option<PathBuf>,
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
    /// Truth file: the clip, its lines and what crosses them (not with --labels).
    #[arg(required_unless_present = "labels", conflicts_with = "labels")]
    truth: Option<PathBuf>,
    /// Model card (default: models/yolox_nano.toml); with --labels, repeat it to compare models side
    /// by side.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Detection accuracy on a labelled set instead of counts: a COCO JSON file, or a folder holding
    /// annotations.json (or a CVAT export's annotations/instances_default.json) and the images.
    /// Per class AP@0.5, AP@0.5:0.95 (as pycocotools), precision and recall at the card's score
    /// threshold, and which class each labelled box was found as.
    #[arg(long, conflicts_with_all = ["sweep", "detect_every", "tolerance"])]
    labels: Option<PathBuf>,
    /// With --labels: write each model's detections as a COCO result file <card name>.json into this
    /// folder (what pycocotools' loadRes reads).
    #[arg(long, requires = "labels")]
    detections_out: Option<PathBuf>,
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
    /// Run several settings: "key=v1|v2 key2=…" (every combination of model, roi, tiles, every, motion,
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
    #[arg(long, default_value = "centre")]
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
    #[arg(long)]
    mqtt_protocol: Option<Protocol>,
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
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Replay file cameras at their own rate, as live cameras (sets `realtime` on every file camera):
    /// a demo of the console, or a load test.
    #[arg(long)]
    realtime: bool,
    /// With the HTTP endpoint: keep serving (console, metrics) after the last camera's stream ended,
    /// until SIGINT/SIGTERM (Ctrl-C).
    #[arg(long)]
    stay: bool,
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
    /// Model runs side by side on a frame's tiles, each on one thread (0: one per thread; 1: off).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    parallel: u16,
    /// ONNX Runtime graph optimisation: disable, basic, extended, all.
    #[arg(long, default_value = "all")]
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
    #[arg(long)]
    on_inference_busy: Option<OnInferenceBusy>,
    #[command(flatten)]
    view: ViewArgs,
}

/// What `junction run` writes on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Counts as they happen, a table per closed bin.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("{e} (expected e.g. 2026-11-26T08:00:00Z)"))
}

#[path = "cli/check_card.rs"]
mod check_card;
#[path = "cli/collect.rs"]
mod collect_cmd;
#[path = "cli/detect.rs"]
mod detect_cmd;
#[path = "cli/merge.rs"]
mod merge;
#[path = "cli/output.rs"]
mod output;

use detect_cmd::detect;
use merge::run_config;
use output::{Printer, summary_json, totals_table};

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
        Command::CheckCard(args) => check_card::check_card(&args),
        Command::Collect(args) => collect_cmd::collect(&args),
        Command::Probe(args) => probe(&args),
        Command::HashPassword => hash_password(),
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

/// A path given relative to the working directory, or else to the checkout this binary was built from
/// (so that `cargo run -- run` works from anywhere in the repository).
pub fn bundled(path: &str) -> PathBuf {
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

fn hash_password() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    println!("{}", junction::console::hash_password(password)?);
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
    if let Some(labels) = &args.labels {
        return eval_labels(args, labels);
    }
    let Some(truth) = &args.truth else { anyhow::bail!("eval: a truth file or --labels is needed") };
    let truth = Truth::load(truth)?;
    let model = match args.model.as_slice() {
        [] => bundled("models/yolox_nano.toml"),
        [one] => one.clone(),
        _ => anyhow::bail!("--model: one card when counting; compare several with --sweep \"model=a.toml|b.toml\""),
    };
    let mut base = Settings::defaults(model);
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

/// `junction eval --labels`: each model's detection accuracy on a labelled set.
fn eval_labels(args: &EvalArgs, labels: &std::path::Path) -> Result<()> {
    use junction::detect::DetectorOptions;
    use junction::labels::{LabelledSet, evaluate_model, table, write_results};
    if args.view.roi.is_some() || args.view.tiles.is_some() {
        anyhow::bail!("--labels: each image is detected on whole in one model input; --roi and --tiles do not apply");
    }
    let set = LabelledSet::load(labels)?;
    let cards = if args.model.is_empty() { vec![bundled("models/yolox_nano.toml")] } else { args.model.clone() };
    let opts = DetectorOptions {
        intra_threads: args.threads,
        onnxruntime: args.onnxruntime.clone(),
        parallel: 1,
        ..DetectorOptions::default()
    };
    if let Some(dir) = &args.detections_out {
        std::fs::create_dir_all(dir).with_context(|| format!("--detections-out {}", dir.display()))?;
    }
    // Each model's table row and result file go by its card's name: two cards of one name would
    // overwrite each other (a fine-tune's card copied from its base keeps the base's name).
    let mut names = std::collections::BTreeMap::new();
    let mut models = Vec::with_capacity(cards.len());
    for card in &cards {
        let model = junction::detect::ModelCard::load(card)?;
        let name = model.name.clone();
        models.push(model);
        if let Some(other) = names.insert(name.clone(), card.clone()) {
            anyhow::bail!(
                "--model: {} and {} are both named {name:?}: give one of them another `name` in its card",
                other.display(),
                card.display()
            );
        }
    }
    let mut runs = Vec::new();
    for (card, model) in cards.iter().zip(models) {
        tracing::info!(card = %card.display(), images = set.set.images.len(), "eval --labels");
        let wheels = junction::detect::twowheel::TwoWheelerParams::default();
        let run = evaluate_model(&set, model, card, &opts, &wheels)?;
        if let Some(dir) = &args.detections_out {
            write_results(&dir.join(format!("{}.json", run.model)), &run.detections)?;
        }
        if args.json {
            let line = serde_json::json!({
                "model": run.model, "card": run.card, "input": run.input, "images": set.set.images.len(),
                "accuracy": run.accuracy, "confusion": run.confusion, "not_classes": run.not_classes,
            });
            println!("{}", serde_json::to_string(&line).context("eval JSON")?);
        }
        runs.push(run);
    }
    if !args.json {
        print!("{}", table(&set, &runs));
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
        // The model's input size comes from its card; a card that does not load was refused above.
        if let Ok(card) = junction::detect::ModelCard::load(&cfg.model_card) {
            let shape = junction::scale::InputShape::of(&card);
            let (_, _, _, scale) = junction::runtime::initial_scale(&cfg, c, shape);
            println!("    scale: {scale}");
        }
    }
    Ok(())
}

/// Builds the configuration of a run: the site file, or an ad-hoc one from the command line.
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
    let mut printer = Printer { json: args.format == Format::Json, site: cfg.site.clone(), out: std::io::stdout() };
    // SIGHUP: reload the cameras' rules from the site configuration and its calibration files.
    let reload = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()).context("installing signal handlers")?;
    if args.stay && cfg.http.is_none() {
        anyhow::bail!("--stay keeps the HTTP endpoint up after the streams end: give --http ADDR (or [http] listen)");
    }
    let opts = RunOptions { start: args.start, reload, stay: args.stay };
    let summary = junction::runtime::run(&cfg, &opts, &mut printer, &stop)?;
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
