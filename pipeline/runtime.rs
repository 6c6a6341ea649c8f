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

use std::collections::VecDeque;
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
use crate::motion::{Gate, Signals};
use crate::publish::Publisher;
use crate::scale::SizeMeter;
use crate::schedule::{Budget, Candidate, Priority};
use crate::sink::{Housekeeping, Live, Output, OutputSender};
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
    /// Failures since the last frame, for the restart backoff.
    failures: u32,
    /// When a failed live source is opened again.
    restart_at: Option<Instant>,
    /// The source's dropped-frame count already accounted.
    dropped_seen: u64,
    /// A file that ended (or failed): nothing more comes.
    finished: bool,
    checkpointed: Instant,
    /// How an `auto`-tiled camera's scale is being chosen.
    scale: ScaleState,
    /// Whether its frames are worth detecting on ([`crate::motion`]).
    gate: Gate,
    /// Stream time between its frames, from `gaps` (`None`: fewer than two frames yet); with the
    /// last frame's stream time. The detection budget keeps a round within the shortest.
    period: Option<Duration>,
    last_pts: Option<Duration>,
    /// The newest gaps between its frames (stream time, per frame) its period is taken from.
    gaps: VecDeque<Duration>,
    /// The priority of its due frame deferred last round: the next frame keeps it if higher.
    owed: Option<Priority>,
}

/// Gaps between a camera's frames its period is taken from.
const PERIOD_GAPS: usize = 9;

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
            failures: 0,
            restart_at: None,
            dropped_seen: 0,
            finished: false,
            checkpointed: Instant::now(),
            scale,
            gate: Gate::default(),
            period: None,
            last_pts: None,
            gaps: VecDeque::with_capacity(PERIOD_GAPS),
            owed: None,
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
        let mut analysis = Analysis {
            cfg,
            detector: &mut detector,
            metrics,
            tx,
            snapshots: snapshots.as_ref(),
            frame_news: console.is_some(),
            reload: &opts.reload,
            clock_steps_seen: 0,
            warm,
        };
        for update in scales {
            analysis.live(update);
        }
        for (camera, produced) in openings {
            analysis.send(&camera, produced);
        }
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

/// The analysis thread's side of a run.
struct Analysis<'a> {
    cfg: &'a Config,
    detector: &'a mut Detector,
    metrics: &'a Arc<Metrics>,
    tx: OutputSender,
    snapshots: Option<&'a Snapshots>,
    /// A console is served: it is told of every analysed frame (rates, drops).
    frame_news: bool,
    reload: &'a AtomicBool,
    /// Steps of the wall clock already noted in the live cameras' bins ([`crate::clock`]).
    clock_steps_seen: u64,
    /// The detector's warm-up: input pixels and time (`None`: it failed; the first frames tell).
    warm: Option<(u64, Duration)>,
}

impl Analysis<'_> {
    fn run(&mut self, cameras: &mut [Camera], stop: &AtomicBool) -> Result<(), RunError> {
        let mut notifier = crate::telemetry::Notifier::from_env();
        notifier.ready();
        // One detection list per camera; frames gathered this round, by camera index.
        let mut dets: Vec<Vec<Detection>> = vec![Vec::new(); cameras.len()];
        let mut ready: Vec<(usize, Frame)> = Vec::new();
        let mut fuse_scratch = Vec::new();
        let mut budget = Budget::default();
        if let Some((pixels, time)) = self.warm {
            budget.observe_inference(pixels, time);
        }
        let mut cands: Vec<Candidate> = Vec::new();
        let single = cameras.len() == 1;
        let batch_wait = self.cfg.detector.batch_wait;
        // The first error of a file camera: with a lone camera, the run's error.
        let mut file_error: Option<RunError> = None;
        for cam in cameras.iter().filter(|c| c.source.is_none()) {
            self.status(cam.id(), "down", None);
        }
        while !stop.load(Ordering::Relaxed) && cameras.iter().any(|c| !c.finished) {
            notifier.alive();
            if self.reload.swap(false, Ordering::Relaxed) {
                self.reload_rules(cameras);
            }
            if cameras.iter().all(|c| c.source.is_none()) {
                // Every camera is waiting for its restart.
                std::thread::sleep(Duration::from_millis(50));
            }
            // Gather: the frame each camera has waiting now; if none has one, wait a little on each (50
            // ms for a lone camera, 2 ms each with several); with `batch_wait`, cameras without a frame
            // yet get that long for theirs, so that their frames share one model run.
            ready.clear();
            let gathered_at = Instant::now();
            for pass in 0..3 {
                let wait = match pass {
                    0 => Duration::ZERO,
                    1 if ready.is_empty() => Duration::from_millis(if single { 50 } else { 2 }),
                    2 if !ready.is_empty() && !batch_wait.is_zero() => batch_wait.saturating_sub(gathered_at.elapsed()),
                    _ => continue,
                };
                for (i, cam) in cameras.iter_mut().enumerate() {
                    if cam.finished || ready.iter().any(|(k, _)| *k == i) {
                        continue;
                    }
                    let step = self.supervise(cam, |a, cam| {
                        a.restart_if_due(cam);
                        a.take_frame(cam, wait)
                    });
                    match step {
                        Ok(Some(frame)) => ready.push((i, frame)),
                        Ok(None) => {}
                        Err(e) => self.fault(cam, e, &mut file_error),
                    }
                }
            }
            let now = timeline().now();
            let steps = timeline().steps_since(&mut self.clock_steps_seen);
            for cam in cameras.iter_mut().filter(|c| c.live && !c.finished) {
                let r = self.supervise(cam, |a, cam| {
                    let mut out = Produced::default();
                    for step in &steps {
                        cam.pipe.clock_step(step);
                    }
                    cam.pipe.tick(now, &mut out);
                    a.send(cam.id(), out);
                    if cam.checkpointed.elapsed() >= a.cfg.store.checkpoint {
                        a.checkpoint(cam);
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    self.fault(cam, e, &mut file_error);
                }
            }
            if ready.is_empty() {
                continue;
            }
            // A frame of another size than calibrated (a camera rebooted into another mode) is that
            // camera's fault alone.
            let mut k = 0;
            while k < ready.len() {
                let (i, size) = (ready[k].0, ready[k].1.frame_size());
                match check_frame_size(cameras[i].cfg(), size) {
                    Ok(()) => k += 1,
                    Err(e) => {
                        ready.remove(k);
                        self.fault(&mut cameras[i], e, &mut file_error);
                    }
                }
            }
            let t_round = Instant::now();
            // The due frames, and those of them that fit before the next frames arrive
            // ([`crate::schedule`]): the rest are deferred to their camera's next frame.
            let mut due: Vec<usize> = Vec::with_capacity(ready.len());
            cands.clear();
            let mut period: Option<Duration> = None;
            for (k, (i, frame)) in ready.iter().enumerate() {
                let cam = &mut cameras[*i];
                let deferrable = cam.source.as_ref().is_some_and(Source::drops_when_busy);
                // Every live camera of the round bounds it, due or not: its next frame comes anyway.
                if deferrable {
                    let p = cam
                        .period
                        .or_else(|| cam.source.as_ref().and_then(Source::caps_period))
                        .unwrap_or(crate::schedule::DEFAULT_PERIOD);
                    period = Some(period.map_or(p, |q| q.min(p)));
                }
                let owed = cam.owed.take();
                let Some(priority) = self.wants_detection(cam, frame) else { continue };
                let priority = owed.map_or(priority, |o| o.min(priority));
                due.push(k);
                cands.push(Candidate {
                    priority,
                    waited: cam.gate.since_detection(frame.pts),
                    pixels: frame.plan.input_pixels(),
                    deferrable,
                });
            }
            let mut chosen = budget.choose(&cands, period);
            if chosen.len() < due.len() {
                for (j, &k) in due.iter().enumerate() {
                    if !chosen.contains(&j) {
                        let cam = &mut cameras[ready[k].0];
                        cam.gate.deferred();
                        cam.owed = Some(cands[j].priority);
                        cam.pipe.detection_deferred();
                    }
                }
                chosen.sort_unstable();
                due = chosen.iter().map(|&j| due[j]).collect();
            }
            let t_detect = Instant::now();
            let failed = self.detect(&ready, &due, &mut dets, &mut fuse_scratch);
            let detect_time = t_detect.elapsed();
            // A failed batch (rerun frame by frame, or failed at once) says nothing of the cost.
            if !due.is_empty() && failed.is_empty() {
                let pixels = due.iter().map(|&k| ready[k].1.plan.input_pixels()).sum();
                budget.observe_inference(pixels, detect_time);
            }
            // Each frame's share of the detection time, for the stage histogram.
            let detect_share = detect_time / due.len().max(1) as u32;
            for (k, (i, frame)) in ready.drain(..).enumerate() {
                let cam = &mut cameras[i];
                if let Some((_, e)) = failed.iter().find(|(f, _)| *f == k) {
                    let e = RunError::Detect(DetectError::Inference(format!("camera {:?}: {e}", cam.id())));
                    self.fault(cam, e, &mut file_error);
                    continue;
                }
                let detected = due.contains(&k);
                if detected {
                    cam.gate.detected(frame.pts);
                }
                let d = detected.then_some(&dets[i][..]);
                let share = if detected { detect_share } else { Duration::ZERO };
                let r = self.supervise(cam, |a, cam| {
                    a.analyse(cam, frame, d, share);
                    Ok(())
                });
                if let Err(e) = r {
                    self.fault(cam, e, &mut file_error);
                }
            }
            budget.observe_overhead(t_round.elapsed().saturating_sub(detect_time));
        }
        // Stopped by a signal, or every stream ended: close what is open.
        notifier.stopping();
        let rest = if stop.load(Ordering::Relaxed) { GapReason::BoxNotRunning } else { GapReason::NoFrames };
        for cam in cameras.iter_mut().filter(|c| !c.finished) {
            cam.restart_at = None;
            self.close(cam, rest);
        }
        match file_error {
            Some(e) if single => Err(e),
            _ => Ok(()),
        }
    }

    fn status(&self, camera: &str, state: &'static str, error: Option<String>) {
        self.live(Live::State { camera: camera.to_owned(), state, error, at: SystemTime::now() });
    }

    /// News for the console, through the outputs thread.
    fn live(&self, update: Live) {
        crate::sink::send(&self.tx, Output::Live(update), self.metrics);
    }

    /// Reads the site configuration and its calibration files again and applies each camera's rules
    /// (SIGHUP, or the console's editor after saving). A configuration with problems is refused as a
    /// whole and the running rules stay. Only rules and ground planes are applied: other settings,
    /// and cameras added or removed, wait for a restart (logged).
    fn reload_rules(&mut self, cameras: &mut [Camera]) {
        let refused = |a: &Self, message: String| {
            tracing::error!(error = %message, "reload refused; the running rules stay");
            a.live(Live::Reloaded { ok: false, message, changes: Vec::new(), at: SystemTime::now() });
        };
        let Some(path) = self.cfg.path.clone() else {
            return refused(self, "this run has no site configuration file to reload (run with --config)".into());
        };
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => return refused(self, e.to_string()),
        };
        let mut all = Vec::new();
        let mut notes = Vec::new();
        for cam in cameras.iter_mut() {
            let Some(nc) = new.cameras.iter().find(|c| c.id == cam.id()) else {
                notes.push(format!("camera {:?} is no longer configured: it stops at the next restart", cam.id()));
                continue;
            };
            if nc.region() != cam.cfg().region() {
                notes.push(format!(
                    "camera {:?}: the region of interest the new rules need is applied at the next restart",
                    cam.id()
                ));
            }
            let mut out = Produced::default();
            let changes = cam.pipe.reload(self.cfg, nc, timeline().now(), &mut out);
            self.send(cam.id(), out);
            if changes.is_empty() {
                continue;
            }
            cam.gate.meter.rules_changed();
            let list: Vec<String> = changes
                .iter()
                .map(|c| format!("{} {} {}", c.kind, c.id, format!("{:?}", c.change).to_lowercase()))
                .collect();
            tracing::info!(camera = %cam.id(), changes = %list.join(", "), "rules reloaded; changed rules' open bins closed as partial");
            if let Some(shared) = self.snapshots
                && let Ok(mut snaps) = shared.lock()
            {
                let snap = snaps.entry(cam.id().to_owned()).or_default();
                snap.lines = cam.cfg().lines.clone();
                snap.zones = cam.cfg().zones.clone();
            }
            all.extend(changes.into_iter().map(|c| (cam.id().to_owned(), c)));
        }
        for c in new.cameras.iter().filter(|c| !cameras.iter().any(|k| k.id() == c.id)) {
            notes.push(format!("camera {:?} is new: it starts at the next restart", c.id));
        }
        for n in &notes {
            tracing::warn!("reload: {n}");
        }
        let message = match (all.len(), notes.is_empty()) {
            (0, true) => "reloaded: no rule changed".to_owned(),
            (n, _) => {
                format!("reloaded: {n} rule change(s){}{}", if notes.is_empty() { "" } else { "; " }, notes.join("; "))
            }
        };
        self.live(Live::Reloaded { ok: true, message, changes: all, at: SystemTime::now() });
    }

    /// Runs one camera's step, turning its panic into that camera's error.
    fn supervise<T>(
        &mut self,
        cam: &mut Camera,
        step: impl FnOnce(&mut Self, &mut Camera) -> Result<T, RunError>,
    ) -> Result<T, RunError> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| step(self, cam))) {
            Ok(r) => r,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(RunError::Panic { camera: cam.id().to_owned(), message })
            }
        }
    }

    /// One camera's error or panic: its open bins close as partial, its source goes; a live camera is
    /// restarted alone with backoff, a file camera ends. The other cameras are not touched.
    fn fault(&mut self, cam: &mut Camera, e: RunError, file_error: &mut Option<RunError>) {
        let kind = if matches!(e, RunError::Panic { .. }) { "panic" } else { "error" };
        self.metrics
            .camera_faults
            .get_or_create(&vec![("camera".into(), cam.id().to_owned()), ("kind".into(), kind.into())])
            .inc();
        self.metrics.stream_up.get_or_create(&camera_labels(cam.id())).set(0);
        cam.pipe.summary_mut().faults += 1;
        self.status(cam.id(), if cam.live { "down" } else { "ended" }, Some(e.to_string()));
        if cam.live {
            tracing::error!(camera = %cam.id(), error = %e, "camera fault; its open bins close as partial, it restarts alone");
        } else {
            tracing::error!(camera = %cam.id(), error = %e, "camera stopped");
        }
        self.close(cam, GapReason::CameraDown);
        if cam.live {
            schedule_restart(cam, &e);
        } else {
            cam.finished = true;
            self.metrics.camera_ended(cam.id());
            cam.pipe.summary_mut().error = Some(e.to_string());
            file_error.get_or_insert(e);
        }
    }

    /// Drops the camera's source and closes its open bins (the rest of each a gap of `rest`).
    fn close(&mut self, cam: &mut Camera, rest: GapReason) {
        drop_source(cam);
        let mut out = Produced::default();
        let closed = std::panic::catch_unwind(AssertUnwindSafe(|| cam.pipe.finish(rest, &mut out)));
        if closed.is_err() {
            // Its state is not to be trusted: start it afresh (its open bins are lost; the last
            // checkpoint restores them after a restart of the box).
            tracing::error!(camera = %cam.id(), "camera's bins could not be closed (panic); it starts afresh");
            let cfg = cam.cfg().clone();
            let summary = cam.pipe.summary().clone();
            cam.pipe = CameraPipeline::new(self.cfg, &cfg, self.metrics.clone());
            *cam.pipe.summary_mut() = summary;
            return;
        }
        let id = cam.id().to_owned();
        self.send(&id, out);
    }

    fn send(&self, camera: &str, produced: Produced) {
        if !produced.is_empty() {
            crate::sink::send(&self.tx, Output::Produced { camera: camera.to_owned(), produced }, self.metrics);
        }
    }

    fn checkpoint(&self, cam: &mut Camera) {
        cam.checkpointed = Instant::now();
        let states = cam.pipe.checkpoint();
        if !states.is_empty() {
            crate::sink::send(&self.tx, Output::Checkpoint { camera: cam.id().to_owned(), states }, self.metrics);
        }
    }

    /// A camera due for its restart gets a new source.
    fn restart_if_due(&mut self, cam: &mut Camera) {
        if cam.source.is_some() || cam.restart_at.is_none_or(|at| Instant::now() < at) {
            return;
        }
        cam.restart_at = None;
        self.metrics.stream_restarts.get_or_create(&camera_labels(cam.id())).inc();
        let mut out = Produced::default();
        cam.pipe.reopening(timeline().now(), &mut out);
        self.send(cam.id(), out);
        self.status(cam.id(), "restarting", None);
        match Source::open(&cam.cfg().uri, cam.source_opts.clone()) {
            Ok(s) => {
                tracing::info!(camera = %cam.id(), attempt = cam.failures, "camera restarted");
                cam.source = Some(s);
                cam.dropped_seen = 0;
                // A new stream's timestamps start again: waits and frame periods from the old one
                // would read as none waited (it would lose every tie for detection) or as a jump.
                cam.gate = Gate::default();
                cam.gaps.clear();
                cam.last_pts = None;
                cam.owed = None;
            }
            Err(e) => {
                let mut out = Produced::default();
                cam.pipe.reopening_failed(timeline().now(), &mut out);
                self.send(cam.id(), out);
                self.status(cam.id(), "down", Some(e.to_string()));
                schedule_restart(cam, &e);
            }
        }
    }

    /// Polls the camera's source for up to `wait`. The end of its stream: a live camera restarts
    /// alone, with backoff (its tracks end, its bins stay open); a file camera is finished (an error
    /// is that camera's fault).
    fn take_frame(&mut self, cam: &mut Camera, wait: Duration) -> Result<Option<Frame>, RunError> {
        let Some(source) = cam.source.as_mut() else { return Ok(None) };
        let err = match source.poll(wait) {
            Ok(Poll::Frame(f)) => return Ok(Some(f)),
            Ok(Poll::Idle) => return Ok(None),
            Ok(_) => None,
            Err(e) => Some(e),
        };
        self.metrics.stream_up.get_or_create(&camera_labels(cam.id())).set(0);
        if err.is_some() {
            self.metrics
                .errors
                .get_or_create(&vec![("stage".into(), "source".into()), ("kind".into(), "stream".into())])
                .inc();
        }
        drop_source(cam);
        self.status(
            cam.id(),
            if cam.live { "down" } else { "ended" },
            err.as_ref().map(ToString::to_string).or_else(|| cam.live.then(|| "end of stream".into())),
        );
        if cam.live {
            match &err {
                Some(e) => schedule_restart(cam, e),
                None => schedule_restart(cam, &"end of stream"),
            }
            let mut out = Produced::default();
            cam.pipe.stream_down(&mut out);
            self.send(cam.id(), out);
            return Ok(None);
        }
        match err {
            None => {
                tracing::info!(camera = %cam.id(), frames = cam.pipe.summary().frames, "stream ended");
                self.close(cam, GapReason::NoFrames);
                cam.finished = true;
                self.metrics.camera_ended(cam.id());
                Ok(None)
            }
            Some(e) => Err(e.into()),
        }
    }

    /// Whether a camera's frame is detected on, and how pressing it is: its cadence and the motion
    /// policy ([`crate::motion`], [`crate::schedule::priority`]).
    fn wants_detection(&self, cam: &mut Camera, frame: &Frame) -> Option<Priority> {
        let p = &self.cfg.motion;
        let changed = if p.enabled {
            let rules = cam.pipe.config();
            cam.gate.meter.measure(&frame.image(), &frame.plan, || rules.rules_bbox());
            cam.gate.meter.changed(p.threshold)
        } else {
            0
        };
        let signals = Signals {
            cadence: cam.pipe.on_cadence(self.cfg.detector.every),
            tentative: cam.pipe.has_tentative(),
            track_moving: cam.pipe.tracks().iter().any(crate::motion::moving),
            changed,
            since_detection: cam.gate.since_detection(frame.pts),
        };
        let d = cam.gate.decide(p, signals);
        d.detect().then(|| crate::schedule::priority(d, &signals, p))
    }

    /// Detection for the frames `due` (indexes into `ready`), every tile of all of them in as few
    /// model runs as the batch allows. A failed batch is run again frame by frame, so that an error
    /// is pinned on its camera: returns (index into `ready`, message) of the frames that failed.
    fn detect(
        &mut self,
        ready: &[(usize, Frame)],
        due: &[usize],
        dets: &mut [Vec<Detection>],
        fuse_scratch: &mut Vec<Option<usize>>,
    ) -> Vec<(usize, String)> {
        if due.is_empty() {
            return Vec::new();
        }
        let jobs: Vec<Job<'_>> = due.iter().map(|&k| ready[k].1.job()).collect();
        let mut outs: Vec<Vec<Detection>> = due.iter().map(|&k| std::mem::take(&mut dets[ready[k].0])).collect();
        let result = self.detector.detect(&jobs, &mut outs);
        let mut failed = Vec::new();
        match result {
            Ok(()) => {}
            Err(e) if due.len() == 1 => failed.push((due[0], e.to_string())),
            Err(_) => {
                for (j, &k) in due.iter().enumerate() {
                    if let Err(e) = self.detector.detect(&jobs[j..=j], &mut outs[j..=j]) {
                        failed.push((k, e.to_string()));
                    }
                }
            }
        }
        for (&k, mut out) in due.iter().zip(outs) {
            twowheel::fuse(&mut out, &self.cfg.two_wheelers, fuse_scratch);
            dets[ready[k].0] = out;
        }
        failed
    }

    /// A warm-up's measurements, and the scale chosen when it ends (see [`crate::scale`]): at
    /// `warmup_s` of stream time, or from `min_warmup_s` on once `min_samples` boxes were measured.
    /// A chosen scale is measured again every `recheck_s`.
    fn measure_scale(&mut self, cam: &mut Camera, frame: &Frame) {
        let p = &self.cfg.scale;
        let TileSpec::Auto { overlap, max_tiles, .. } = cam.cfg().tiles else { return };
        let spec = cam.cfg().region();
        match &mut cam.scale {
            ScaleState::Fixed => {}
            ScaleState::Chosen { recheck_at } => {
                if frame.pts >= *recheck_at {
                    cam.scale = ScaleState::Warmup { meter: SizeMeter::default(), since: Some(frame.pts) };
                    tracing::info!(camera = %cam.id(), "scale: measuring the vehicles again");
                }
            }
            ScaleState::Warmup { meter, since } => {
                let start = *since.get_or_insert(frame.pts);
                let near = 0.05 * frame.plan.frame.height as f32;
                meter.observe(cam.pipe.tracks(), &cam.pipe.config().lines, near);
                let elapsed = frame.pts.saturating_sub(start).as_secs_f64();
                let measured = elapsed >= p.min_warmup_s && meter.samples() >= p.min_samples;
                if elapsed < p.warmup_s && !measured {
                    return;
                }
                let estimate = meter.estimate(p.min_class_samples);
                let o = &cam.source_opts;
                let shape = crate::scale::InputShape { input: o.input, stride: o.stride, align: o.align };
                let frame_size = frame.plan.frame;
                let (region, tiles, text) = match estimate {
                    Some(size) => {
                        let (region, choice) = crate::scale::choose_region(
                            frame_size,
                            &spec,
                            shape,
                            overlap,
                            max_tiles,
                            &size,
                            p.target_px,
                        );
                        (region, TileSpec::Grid(choice.grid), choice.to_string())
                    }
                    None => {
                        let region = spec;
                        let t = TileSpec::Auto { overlap, max_downscale: 2.0, max_tiles };
                        let whole = region.resolve(frame_size, shape.input).unwrap_or(Rect::whole(frame_size));
                        let g = t.resolve(whole.size(), shape.input);
                        let text = format!(
                            "{}x{} tiles: too few vehicles near the rules in {elapsed:.0} s to measure ({} boxes); \
                             at most half the frame's pixels lost",
                            g.cols,
                            g.rows,
                            meter.samples()
                        );
                        (region, t, text)
                    }
                };
                tracing::info!(camera = %cam.id(), choice = %text, "scale chosen from the vehicles");
                self.live(Live::Scale { camera: cam.id().to_owned(), text });
                // The same plan again (the common case) leaves the stream as it is.
                let next = Plan::for_frame(frame_size, &region, &tiles, shape.input, shape.align, shape.stride);
                let same = next == *frame.plan;
                cam.source_opts.region = region;
                cam.source_opts.tiles = tiles;
                if !same && let Some(s) = &cam.source {
                    s.set_plan(region, tiles);
                }
                cam.scale = ScaleState::Chosen { recheck_at: frame.pts + Duration::from_secs_f64(p.recheck_s) };
            }
        }
    }

    /// One frame of one camera after detection (`dets`: this frame's detections, `None` on a frame
    /// the detector skipped): the camera's pipeline, the snapshot, the outputs.
    fn analyse(&mut self, cam: &mut Camera, frame: Frame, dets: Option<&[Detection]>, detect_time: Duration) {
        let labels = camera_labels(cam.id());
        if cam.failures > 0 || self.metrics.stream_up.get_or_create(&labels).get() == 0 {
            cam.failures = 0;
            self.metrics.stream_up.get_or_create(&labels).set(1);
        }
        // The appsink count can lag by the frame waiting there: never let the total go back.
        let dropped = cam.source.as_ref().map_or(0, Source::dropped).max(cam.dropped_seen);
        // The camera's frame period: stream time since its last frame, over the frames in between;
        // the second shortest of the newest few: a variable-rate camera's short gaps bound the
        // round (a longer guess overruns them), one stray early frame does not.
        if let Some(last) = cam.last_pts
            && let Some(dt) = frame.pts.checked_sub(last)
        {
            let dt = (dt / (1 + (dropped - cam.dropped_seen)).min(1000) as u32)
                .clamp(Duration::from_millis(1), Duration::from_secs(10));
            if cam.gaps.len() == PERIOD_GAPS {
                cam.gaps.pop_front();
            }
            cam.gaps.push_back(dt);
            let mut sorted: Vec<Duration> = cam.gaps.iter().copied().collect();
            sorted.sort_unstable();
            cam.period = sorted.get(usize::from(sorted.len() >= 3)).copied();
        }
        cam.last_pts = Some(frame.pts);
        let mut out = Produced::default();
        cam.pipe.frame(frame.pts, frame.wall, dets, dropped - cam.dropped_seen, detect_time, &mut out);
        if dets.is_some() {
            self.measure_scale(cam, &frame);
        }
        if self.frame_news {
            let (dropped, at) = (dropped - cam.dropped_seen, SystemTime::now());
            self.live(Live::Frame { camera: cam.id().to_owned(), dropped, detect: detect_time, at });
        }
        cam.dropped_seen = dropped;
        if let Some(shared) = self.snapshots
            && let Ok(mut all) = shared.lock()
        {
            let snap = all.entry(cam.id().to_owned()).or_default();
            snap.set_image(&frame.image(), frame.plan.clone(), cam.source_opts.channel_order);
            snap.tracks.clear();
            snap.tracks.extend_from_slice(cam.pipe.tracks());
            if snap.lines.is_empty() && snap.zones.is_empty() {
                snap.lines = cam.cfg().lines.clone();
                snap.zones = cam.cfg().zones.clone();
            }
            snap.counts = cam
                .pipe
                .summary()
                .lines
                .iter()
                .map(|(id, c)| (id.clone(), direction_total(c, Direction::In), direction_total(c, Direction::Out)))
                .collect();
        }
        drop(frame);
        self.send(cam.id(), out);
        if cam.checkpointed.elapsed() >= self.cfg.store.checkpoint {
            self.checkpoint(cam);
        }
    }
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

/// Drops the camera's source, adding the frames it dropped that are not yet in the totals.
fn drop_source(cam: &mut Camera) {
    if let Some(source) = cam.source.take() {
        cam.pipe.summary_mut().dropped += source.dropped().saturating_sub(cam.dropped_seen);
        cam.dropped_seen = 0;
    }
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

/// A live camera failed: try again after 1 s, doubling up to 60 s.
fn schedule_restart(cam: &mut Camera, err: &dyn std::fmt::Display) {
    let wait = crate::retry::backoff(cam.failures, Duration::from_secs(1), Duration::from_secs(60));
    tracing::warn!(camera = %cam.id(), error = %err, retry_in_s = format!("{:.1}", wait.as_secs_f64()), "camera down; restarting alone");
    cam.failures += 1;
    cam.restart_at = Some(Instant::now() + wait);
}
