//! The analysis loop and its supervisor: one thread owns the detector and pulls frames round-robin
//! from every camera (batching their tiles), then runs each camera's [`CameraPipeline`]; what they
//! produce goes over a bounded channel to the outputs thread ([`crate::sink`]), which stores, prints
//! and wakes the publisher. Files block their decoder while inference is busy; live sources keep the
//! newest two frames ([`crate::source::KEEP_LATEST_FRAMES`]).
//!
//! Isolation: an error or a panic in one camera's work (its stream, its frame size, its inference, its
//! rules) closes that camera's open bins as partial and restarts it alone with backoff (files end);
//! the other cameras keep counting. Live cameras' bins close on the wall clock while they deliver
//! nothing, so a dead camera still gets a report per bin, with coverage 0.
//!
//! Shutdown (the `stop` flag, set by SIGINT/SIGTERM), the end of every stream, or a fatal error: sources
//! stop, tracks end, open bins close as partial, the outputs thread writes what it holds, the
//! publisher drains within `mqtt.drain_timeout_s`.
//!
//! The pieces, each the one owner of its state: this module starts a run (the store, the publisher,
//! the HTTP endpoint, the cameras, the outputs thread) and holds [`Outputs`], the analysis thread's
//! one way to the outputs thread; [`analysis`] is the loop (the detector, the budget, the clock
//! steps); [`supervisor`] a camera's faults, restarts and backoff (and the run's file error);
//! [`checkpoint`] when a camera's open bins are checkpointed; [`reload`] the rules reloaded while
//! running. A camera's schedule state (motion gate, frame period, a deferral owed) is
//! [`crate::schedule::CameraSchedule`]. The console is fed through the outputs thread.

mod analysis;
mod checkpoint;
mod reload;
mod supervisor;

use checkpoint::Checkpoints;
use supervisor::{Restarts, Supervisor, schedule_restart, supervise};

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::aggregate::GapReason;
use crate::analytics::Direction;
pub use crate::camera::{CameraPipeline, CameraSummary, LineCounts, Produced, direction_total};
use crate::clock::timeline;
use crate::config::{CameraConfig, Config, line_outside_frame};
use crate::console::{Console, Tee};
use crate::detect::{DetectError, Detection, Detector, Job, ModelCard, twowheel};
use crate::geometry::{Plan, Rect, RegionSpec, TileSpec};
use crate::http::{HttpError, HttpServer};
use crate::motion::Signals;
use crate::publish::Publisher;
use crate::scale::SizeMeter;
use crate::schedule::{Budget, CameraSchedule, Candidate, Priority};
use crate::sink::{Housekeeping, Live, Output, OutputSender, Step};
use crate::snapshot::Snapshots;
use crate::source::{Frame, Poll, Source, SourceError, SourceOptions, SourceUri};
use crate::store::{Store, StoreError};
use crate::telemetry::{Labels, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(
        "{file}: frame_size: {expected} but camera {camera:?} delivers {actual} frames; recalibrate or fix frame_size"
    )]
    FrameSize { file: String, camera: String, expected: crate::geometry::Size, actual: crate::geometry::Size },
    #[error("camera {camera:?}: line {line:?} lies outside the {size} frame")]
    LineOutside { camera: String, line: String, size: crate::geometry::Size },
    #[error("camera {camera:?}: its analysis panicked: {message}")]
    Panic { camera: String, message: String },
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

pub use crate::sink::Observer;

/// Options of one run that are not site configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Wall clock of file sources' first frame.
    pub start: Option<SystemTime>,
    /// Set (by SIGHUP, or the console after saving) to reload the cameras' rules from the site
    /// configuration and its calibration files without stopping.
    pub reload: Arc<AtomicBool>,
    /// Keep the HTTP endpoint (console, metrics) up after every stream ended, until `stop`.
    pub stay: bool,
}

/// Totals of a run, per camera and line.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub cameras: Vec<CameraSummary>,
}

/// A camera under the supervisor: its pipeline and its source.
struct Camera {
    pipe: CameraPipeline,
    source: Option<Source>,
    source_opts: SourceOptions,
    /// Live sources are restarted when they fail; files end.
    live: bool,
    /// A live camera's failures since its last frame and its next opening (the supervisor's).
    restarts: Restarts,
    /// The source's dropped-frame count already accounted.
    dropped_seen: u64,
    /// A file that ended (or failed): nothing more comes.
    finished: bool,
    /// When its open bins are next checkpointed.
    checkpoints: Checkpoints,
    /// How an `auto`-tiled camera's scale is being chosen.
    scale: ScaleState,
    /// Its side of the detection schedule: motion gate, frame period, what a deferral owes.
    schedule: CameraSchedule,
}

/// The scale of a camera whose tiles are `auto` ([`crate::scale`]).
pub enum ScaleState {
    /// Tiles set in the configuration, or chosen once from the ground plane: nothing to measure.
    Fixed,
    /// Measuring the boxes near the rules, since this stream time.
    Warmup { meter: SizeMeter, since: Option<Duration> },
    /// Chosen from a warm-up; the next one starts at this stream time.
    Chosen { recheck_at: Duration },
}

impl Camera {
    fn id(&self) -> &str {
        self.pipe.id()
    }

    fn cfg(&self) -> &CameraConfig {
        self.pipe.config()
    }
}

/// Runs until every source has ended or `stop` is set.
pub fn run(
    cfg: &Config,
    opts: &RunOptions,
    observer: &mut (dyn Observer + Send),
    stop: &AtomicBool,
) -> Result<RunSummary, RunError> {
    // One run per store, refused before anything else starts.
    let _store_lock = Store::lock(&cfg.store.path)?;
    let metrics =
        Arc::new(Metrics::new(&cfg.cameras.iter().map(|c| (c.id.clone(), c.stall_timeout)).collect::<Vec<_>>()));
    // Bound before anything slow starts: a taken port is refused at once.
    let console = Console::new(cfg, opts.reload.clone())?;
    let snapshots: Option<Snapshots> =
        cfg.http.as_ref().filter(|h| h.snapshots || console.is_some()).map(|_| Snapshots::default());
    let _http = match &cfg.http {
        Some(h) => {
            let tls = crate::config::http_tls(h)
                .map_err(|(field, message)| HttpError { addr: h.listen, message: format!("{field}: {message}") })?;
            Some(HttpServer::start(
                h.listen,
                metrics.clone(),
                snapshots.clone(),
                console.clone(),
                h.allowed_hosts.clone(),
                tls,
            )?)
        }
        None => None,
    };
    let card = ModelCard::load(&cfg.model_card)?;
    // Which model counts from here on: after a model change, the journal says when it took effect.
    tracing::info!(model = %card.name, sha256 = %card.sha256, card = %cfg.model_card.display(), "model");
    let mut detector = Detector::new(card, &cfg.detector)?;
    // ONNX Runtime's first run allocates its buffers and starts its threads: done now, before the
    // cameras stream, so that their first frames are not dropped behind it. Its time seeds the
    // detection budget ([`crate::schedule`]).
    let warm = detector.warm_up();
    let mut store = Store::open(&cfg.store.path)?.with_atspm_csv(&cfg.store.atspm_dir);
    metrics.store_writable.store(true, Ordering::Relaxed);
    let housekeeping = Housekeeping {
        retention_days: cfg.store.retention_days,
        max_bytes: cfg.store.max_size_mb.saturating_mul(1024 * 1024),
        drain: cfg.mqtt.as_ref().map_or(Duration::from_secs(10), |m| Duration::from_secs_f64(m.drain_timeout_s)),
    };
    crate::sink::housekeep(&mut store, housekeeping, &metrics);
    let publisher = match &cfg.mqtt {
        Some(m) => Some(Publisher::start(m, &cfg.site, &cfg.store.path, metrics.clone())?),
        None => None,
    };
    let mut cameras = Vec::new();
    // What the cameras' openings closed (bins of a checkpoint that ended while the box was down),
    // sent once the outputs thread runs.
    let mut openings = Vec::new();
    // What the console shows of each camera's scale from the start, sent with the openings.
    let mut scales = Vec::new();
    // Live cameras' bins go on from what the store covers, even with the wall clock behind it (a box
    // booted without a real-time clock): the time line starts there, once, before any camera opens
    // (crate::clock).
    // Each camera's stored bins, read once: they floor the time line, then each camera resumes them.
    let mut stored = Vec::with_capacity(cfg.cameras.len());
    for c in &cfg.cameras {
        stored.push((SourceUri::parse(&c.uri)?.is_live(), store.bin_states(&cfg.site, &c.id)?));
    }
    let covered = stored.iter().filter(|(live, _)| *live).flat_map(|(_, states)| states).map(|st| st.cursor_s);
    if let Some(covered) = covered.reduce(f64::max) {
        timeline().floor(crate::aggregate::from_unix_s(covered));
    }
    for (c, (live, states)) in cfg.cameras.iter().zip(stored) {
        let card = detector.card();
        let source_opts = SourceOptions {
            on_inference_busy: c.on_inference_busy,
            // `--start` is the wall clock of files; live cameras keep the capture time.
            start: if live { None } else { opts.start },
            stall_timeout: live.then_some(c.stall_timeout),
            realtime: c.realtime,
            region: c.region(),
            tiles: c.tiles,
            decoder: c.decoder.clone(),
            ..SourceOptions::for_card(card)
        };
        let (region, tiles, scale, text) = initial_scale(cfg, c, crate::scale::InputShape::of(card));
        tracing::info!(camera = %c.id, scale = %text, "scale");
        scales.push(Live::Scale { camera: c.id.clone(), text });
        let source_opts = SourceOptions { region, tiles, ..source_opts };
        let mut pipe = CameraPipeline::new(cfg, c, metrics.clone());
        pipe.resume(states);
        let mut cam = Camera {
            pipe,
            source: None,
            source_opts,
            live,
            restarts: Restarts::default(),
            dropped_seen: 0,
            finished: false,
            checkpoints: Checkpoints::new(cfg.store.checkpoint, Instant::now()),
            scale,
            schedule: CameraSchedule::default(),
        };
        // Live cameras' bins run on the wall clock from now: their reports say when they were down.
        let mut first = Produced::default();
        if live {
            cam.pipe.started(timeline().now(), &mut first);
        }
        match Source::open(&c.uri, cam.source_opts.clone()) {
            Ok(source) => {
                tracing::info!(camera = %c.id, uri = %source.uri(), "camera opened");
                cam.source = Some(source);
            }
            // A live camera missing at start (unplugged, not booted yet) is retried alone.
            Err(e) if live => {
                cam.pipe.reopening_failed(timeline().now(), &mut first);
                schedule_restart(&mut cam, &e);
            }
            Err(e) => return Err(e.into()),
        }
        openings.push((cam.pipe.id().to_owned(), first));
        cameras.push(cam);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(crate::sink::CHANNEL);
    let result = std::thread::scope(|s| {
        let mut tee = Tee { inner: observer, console: console.clone() };
        let (publisher, metrics) = (publisher.as_ref(), &metrics);
        let sink = std::thread::Builder::new().name("junction-outputs".into()).spawn_scoped(s, move || {
            crate::sink::run(&cfg.site, store, rx, &mut tee, publisher, metrics, housekeeping)
        });
        let sink = match sink {
            Ok(h) => h,
            Err(e) => {
                return Err(RunError::Store(StoreError::Sqlite {
                    path: cfg.store.path.clone(),
                    message: format!("cannot start the outputs thread: {e}"),
                }));
            }
        };
        let out = Outputs { tx, metrics };
        for update in scales {
            out.live(update);
        }
        for (camera, produced) in openings {
            out.send(&camera, produced);
        }
        let mut analysis = Analysis {
            cfg,
            detector: &mut detector,
            sup: Supervisor::new(cfg, out.clone()),
            out,
            snapshots: snapshots.as_ref(),
            frame_news: console.is_some(),
            reload: &opts.reload,
            clock_steps_seen: 0,
            warm,
        };
        let result = analysis.run(&mut cameras, stop);
        drop(analysis);
        if opts.stay && result.is_ok() && !stop.load(Ordering::Relaxed) {
            tracing::info!("every stream ended; the HTTP endpoint stays up until SIGINT/SIGTERM (--stay)");
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // A collection the console started ends with the box (its folder stays valid frame by frame).
        if let Some(c) = &console {
            c.stop_collect();
        }
        if sink.join().is_err() {
            tracing::error!("the outputs thread panicked");
        }
        result
    });
    if let Some(p) = publisher {
        p.drain();
    }
    result?;
    Ok(RunSummary { cameras: cameras.into_iter().map(|c| c.pipe.into_summary()).collect() })
}

/// The analysis thread's one way to the outputs thread ([`crate::sink`]): what cameras produce, their
/// checkpoints, the console's news. The loop, the supervisor and reload each hold one; the outputs
/// thread ends when every one is dropped.
#[derive(Clone)]
struct Outputs<'a> {
    tx: OutputSender,
    metrics: &'a Arc<Metrics>,
}

impl Outputs<'_> {
    fn send(&self, camera: &str, produced: Produced) {
        if !produced.is_empty() {
            crate::sink::send(
                &self.tx,
                Output::Step(Step::Produced { camera: camera.to_owned(), produced }),
                self.metrics,
            );
        }
    }

    /// A camera's open bins, for the store.
    fn checkpoint(&self, camera: &str, states: Vec<crate::aggregate::BinState>) {
        if !states.is_empty() {
            crate::sink::send(
                &self.tx,
                Output::Step(Step::Checkpoint { camera: camera.to_owned(), states }),
                self.metrics,
            );
        }
    }

    /// News for the console.
    fn live(&self, update: Live) {
        crate::sink::send(&self.tx, Output::Live(update), self.metrics);
    }

    fn status(&self, camera: &str, state: &'static str, error: Option<String>) {
        self.live(Live::State { camera: camera.to_owned(), state, error, at: SystemTime::now() });
    }
}

/// The analysis thread's side of a run: the loop's own state.
struct Analysis<'a> {
    cfg: &'a Config,
    detector: &'a mut Detector,
    out: Outputs<'a>,
    sup: Supervisor<'a>,
    snapshots: Option<&'a Snapshots>,
    /// A console is served: it is told of every analysed frame (rates, drops).
    frame_news: bool,
    reload: &'a AtomicBool,
    /// Steps of the wall clock already noted in the live cameras' bins ([`crate::clock`]).
    clock_steps_seen: u64,
    /// The detector's warm-up: input pixels and time (`None`: it failed; the first frames tell).
    warm: Option<(u64, Duration)>,
}

/// Where an `auto`-tiled camera starts: on a calibrated camera with lines, the region and tiles the
/// ground plane calls for (chosen once, logged; [`crate::scale::choose_region`]); otherwise a warm-up
/// with the frame-size rule's tiles ([`TileSpec::Auto`]: at most half the frame's pixels lost). Other
/// cameras keep their region and tiles.
pub fn initial_scale(
    cfg: &Config,
    c: &CameraConfig,
    shape: crate::scale::InputShape,
) -> (RegionSpec, TileSpec, ScaleState, String) {
    let TileSpec::Auto { overlap, max_tiles, .. } = c.tiles else {
        let text = match c.tiles {
            TileSpec::Grid(g) => format!("{}x{} tiles, as configured", g.cols, g.rows),
            TileSpec::Auto { .. } => String::new(),
        };
        return (c.region(), c.tiles, ScaleState::Fixed, text);
    };
    if let (Some(h), Some(frame)) = (&c.ground, c.frame_size)
        && let Some(size) = crate::scale::motorcycle_px_from_ground(h, &c.lines)
    {
        let (region, choice) =
            crate::scale::choose_region(frame, &c.region(), shape, overlap, max_tiles, &size, cfg.scale.target_px);
        return (region, TileSpec::Grid(choice.grid), ScaleState::Fixed, choice.to_string());
    }
    (
        c.region(),
        c.tiles,
        ScaleState::Warmup { meter: SizeMeter::default(), since: None },
        format!("measuring the vehicles near the rules (warm-up of up to {} s)", cfg.scale.warmup_s),
    )
}

fn check_frame_size(cam: &CameraConfig, actual: crate::geometry::Size) -> Result<(), RunError> {
    if let (Some(expected), Some(file)) = (cam.frame_size, &cam.calibration)
        && expected != actual
    {
        return Err(RunError::FrameSize { file: file.display().to_string(), camera: cam.id.clone(), expected, actual });
    }
    if let Some(l) = cam.lines.iter().find(|l| line_outside_frame(l, actual)) {
        return Err(RunError::LineOutside { camera: cam.id.clone(), line: l.id.to_string(), size: actual });
    }
    Ok(())
}

fn camera_labels(camera: &str) -> Labels {
    crate::telemetry::camera(camera)
}
