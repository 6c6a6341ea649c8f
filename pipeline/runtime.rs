//! The analysis loop: one thread owns the detector and pulls frames round-robin from every camera,
//! running detect → track → rules → aggregate for each camera's own state, then stores events and
//! closed bins. Files block their decoder while inference is busy; live sources keep the newest frame.
//!
//! Shutdown (the `stop` flag, set by SIGINT/SIGTERM): sources stop, tracks end, open bins close as
//! partial, the store is flushed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::aggregate::{Aggregator, FlowReport};
use crate::analytics::{Direction, EventKind, Rules, TrafficEvent};
use crate::config::{CameraConfig, Config, line_outside_frame};
use crate::detect::{DetectError, Detection, Detector, Job, ModelCard, VehicleClass, twowheel};
use crate::http::{HttpError, HttpServer};
use crate::publish::Publisher;
use crate::snapshot::Snapshots;
use crate::source::{Frame, Poll, Source, SourceError, SourceOptions, SourceUri};
use crate::store::{Store, StoreError};
use crate::telemetry::{Labels, Metrics};
use crate::track::{ClassEvidence, Tracker, TrackerOutput};

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
}

/// What the loop tells the outside world as it goes.
pub trait Observer {
    fn event(&mut self, camera: &str, event: &TrafficEvent);
    fn report(&mut self, report: &FlowReport);
}

/// Options of one run that are not site configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Wall clock of file sources' first frame.
    pub start: Option<SystemTime>,
}

/// Vehicles counted on one line by direction and class.
pub type LineCounts = BTreeMap<(Direction, VehicleClass), u64>;

/// Vehicles counted in one direction, every class.
pub fn direction_total(counts: &LineCounts, d: Direction) -> u64 {
    counts.iter().filter(|((x, _), _)| *x == d).map(|(_, n)| *n).sum()
}

/// Totals of a run, per camera and line.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub cameras: Vec<CameraSummary>,
}

#[derive(Debug, Clone, Default)]
pub struct CameraSummary {
    pub camera: String,
    pub frames: u64,
    pub dropped: u64,
    /// Per line, in configuration order: its id and its counts.
    pub lines: Vec<(String, LineCounts)>,
    pub recrossings_suppressed: u64,
    pub unmatched_movements: u64,
    pub track_fragments: u64,
    /// Frames the detector ran on (fewer than `frames` with `detector.every` > 1).
    pub detected: u64,
    pub error: Option<String>,
}

struct Camera {
    cfg: CameraConfig,
    source: Option<Source>,
    source_opts: SourceOptions,
    /// Live sources are restarted when they fail; files end.
    live: bool,
    /// Failures since the last frame, for the restart backoff.
    failures: u32,
    /// When a failed live source is opened again.
    restart_at: Option<Instant>,
    tracker: Tracker,
    rules: Rules,
    aggregator: Aggregator,
    /// Track fragments of the trackers this camera had before its last restart.
    fragments_before: u64,
    checked_size: bool,
    dropped_seen: u64,
    last_pts: Duration,
    last_wall: SystemTime,
    summary: CameraSummary,
}

/// How often retention and the store's size bound are applied while running.
const HOUSEKEEPING: Duration = Duration::from_secs(3600);

/// Applies retention (days) and the size bound to the store, loudly when reports are lost.
fn housekeep(store: &mut Store, cfg: &Config, metrics: &Metrics) -> Result<(), RunError> {
    let pruned = store.prune(cfg.store.retention_days, SystemTime::now())?;
    if pruned > 0 {
        tracing::info!(rows = pruned, days = cfg.store.retention_days, "store: pruned rows past retention");
    }
    let bound = store.bound_size(cfg.store.max_size_mb * 1024 * 1024)?;
    if bound.events + bound.delivered > 0 {
        tracing::warn!(
            events = bound.events,
            delivered_reports = bound.delivered,
            max_size_mb = cfg.store.max_size_mb,
            "store: full; deleted the oldest events and delivered reports"
        );
    }
    if bound.undelivered > 0 {
        metrics.reports_dropped.inc_by(bound.undelivered as u64);
        tracing::error!(
            reports = bound.undelivered,
            max_size_mb = cfg.store.max_size_mb,
            "store: full; deleted the oldest reports the broker never acknowledged (raise store.max_size_mb or fix the broker link)"
        );
    }
    Ok(())
}

/// Runs until every source has ended or `stop` is set.
pub fn run(
    cfg: &Config,
    opts: &RunOptions,
    observer: &mut dyn Observer,
    stop: &AtomicBool,
) -> Result<RunSummary, RunError> {
    let metrics =
        Arc::new(Metrics::new(&cfg.cameras.iter().map(|c| (c.id.clone(), c.stall_timeout)).collect::<Vec<_>>()));
    // Bound before anything slow starts: a taken port is refused at once.
    let snapshots: Option<Snapshots> = cfg.http.as_ref().filter(|h| h.snapshots).map(|_| Snapshots::default());
    let _http = match &cfg.http {
        Some(h) => Some(HttpServer::start(h.listen, metrics.clone(), snapshots.clone())?),
        None => None,
    };
    let card = ModelCard::load(&cfg.model_card)?;
    let mut detector = Detector::new(card, &cfg.detector)?;
    let mut store = Store::open(&cfg.store.path)?.with_atspm_csv(&cfg.store.atspm_dir);
    metrics.store_writable.store(true, Ordering::Relaxed);
    housekeep(&mut store, cfg, &metrics)?;
    let mut housekept = Instant::now();
    let publisher = match &cfg.mqtt {
        Some(m) => Some(Publisher::start(m, &cfg.site, &cfg.store.path, metrics.clone())?),
        None => None,
    };
    let mut cameras = Vec::new();
    for c in &cfg.cameras {
        let card = detector.card();
        let live = SourceUri::parse(&c.uri)?.is_live();
        let source_opts = SourceOptions {
            input: card.input_size(),
            align: card.letterbox.align,
            channel_order: card.input.channel_order,
            on_inference_busy: c.on_inference_busy,
            start: opts.start,
            stall_timeout: live.then_some(c.stall_timeout),
            realtime: c.realtime,
            region: c.region(),
            tiles: c.tiles,
            decoder: c.decoder.clone(),
            ..SourceOptions::default()
        };
        let source = Source::open(&c.uri, source_opts.clone())?;
        tracing::info!(camera = %c.id, uri = %source.uri(), "camera opened");
        let counters = c.lines.iter().map(|l| l.id.clone()).collect();
        let zones = c.zones.iter().map(|z| (z.id.clone(), z.kind)).collect();
        cameras.push(Camera {
            cfg: c.clone(),
            source: Some(source),
            source_opts,
            live,
            failures: 0,
            restart_at: None,
            tracker: new_tracker(cfg, c),
            rules: {
                let rules = Rules::new(c.lines.clone(), c.zones.clone(), cfg.rules.clone())
                    .with_approaches(c.approaches.clone())
                    .with_loops(c.loops.clone());
                match &c.ground {
                    Some(h) => rules.with_ground(h.clone()),
                    None => rules,
                }
            },
            aggregator: Aggregator::new(&cfg.site, &c.id, counters, zones, &cfg.bins).with_pcu(cfg.pcu),
            checked_size: false,
            fragments_before: 0,
            dropped_seen: 0,
            last_pts: Duration::ZERO,
            last_wall: SystemTime::now(),
            summary: CameraSummary {
                camera: c.id.clone(),
                lines: c.lines.iter().map(|l| (l.id.to_string(), BTreeMap::new())).collect(),
                ..CameraSummary::default()
            },
        });
    }

    let mut notifier = crate::telemetry::Notifier::from_env();
    notifier.ready();
    let mut tracked = TrackerOutput::default();
    let mut events: Vec<TrafficEvent> = Vec::new();
    let mut reports: Vec<FlowReport> = Vec::new();
    // One detection list per camera; frames gathered this round, by camera index.
    let mut dets: Vec<Vec<Detection>> = vec![Vec::new(); cameras.len()];
    let mut ready: Vec<(usize, Frame)> = Vec::new();
    let mut fuse_scratch = Vec::new();
    let single = cameras.len() == 1;
    let batch_wait = cfg.detector.batch_wait;
    while !stop.load(Ordering::Relaxed) && cameras.iter().any(|c| c.source.is_some() || c.restart_at.is_some()) {
        notifier.alive();
        if cameras.iter().all(|c| c.source.is_none()) {
            // Every camera is waiting for its restart.
            std::thread::sleep(Duration::from_millis(50));
        }
        // Gather: the frame each camera has waiting now; if none has one, wait a little on each (50 ms
        // for a lone camera, 2 ms each with several); with `batch_wait`, cameras without a frame yet get
        // that long for theirs, so that their frames share one model run.
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
                if ready.iter().any(|(k, _)| *k == i) {
                    continue;
                }
                restart_if_due(cam, &metrics);
                let taken = take_frame(cam, wait, &metrics);
                if let Some(frame) = taken.frame {
                    ready.push((i, frame));
                } else if let Some(ended) = taken.ended {
                    stream_ended(
                        &cfg.site,
                        cam,
                        ended,
                        single,
                        &mut store,
                        observer,
                        &mut tracked,
                        &mut events,
                        &mut reports,
                        &metrics,
                    )?;
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        // Detect: every frame due for detection, all tiles of all of them, in as few model runs as the
        // model's batch allows. `detector.every`: the frames between detections are tracked by
        // prediction alone, except while a new track waits for confirmation (a vehicle just appeared).
        let t_detect = Instant::now();
        let mut due: Vec<usize> = Vec::new();
        for (k, (i, frame)) in ready.iter().enumerate() {
            let cam = &mut cameras[*i];
            if !cam.checked_size {
                check_frame_size(&cam.cfg, frame.frame_size())?;
                cam.checked_size = true;
            }
            if cam.summary.frames.is_multiple_of(u64::from(cfg.detector.every.max(1))) || cam.tracker.has_tentative() {
                due.push(k);
            }
        }
        if !due.is_empty() {
            let jobs: Vec<Job<'_>> = due.iter().map(|&k| ready[k].1.job()).collect();
            let mut outs: Vec<Vec<Detection>> = due.iter().map(|&k| std::mem::take(&mut dets[ready[k].0])).collect();
            let result = detector.detect(&jobs, &mut outs);
            for (&k, mut out) in due.iter().zip(outs) {
                twowheel::fuse(&mut out, &cfg.two_wheelers, &mut fuse_scratch);
                dets[ready[k].0] = out;
            }
            result?;
        }
        // Each frame's share of the detection time, for the stage histogram.
        let detect_share = t_detect.elapsed() / due.len().max(1) as u32;
        for (k, (i, frame)) in ready.drain(..).enumerate() {
            let cam = &mut cameras[i];
            let detected = due.contains(&k);
            analyse(
                &cfg.site,
                cam,
                frame,
                detected.then_some(&dets[i][..]),
                if detected { detect_share } else { Duration::ZERO },
                &mut store,
                observer,
                &mut tracked,
                &mut events,
                &mut reports,
                &metrics,
                snapshots.as_ref(),
            )?;
            if !reports.is_empty()
                && let Some(p) = &publisher
            {
                p.wake();
            }
        }
        if housekept.elapsed() > HOUSEKEEPING {
            housekeep(&mut store, cfg, &metrics)?;
            housekept = Instant::now();
        }
    }
    // Stopped by a signal, or every stream ended: close what is open.
    notifier.stopping();
    for cam in cameras.iter_mut() {
        cam.restart_at = None;
        if let Some(source) = cam.source.take() {
            cam.summary.dropped += source.dropped();
            drop(source);
            finish_camera(&cfg.site, cam, &mut store, observer, &mut tracked, &mut events, &mut reports, &metrics)?;
        }
    }
    if let Some(p) = publisher {
        p.drain();
    }
    Ok(RunSummary { cameras: cameras.into_iter().map(|c| c.summary).collect() })
}

/// A camera's tracker, with the two-wheeler rules and the camera's ground plane for its class votes.
fn new_tracker(cfg: &Config, cam: &CameraConfig) -> Tracker {
    Tracker::new(cfg.tracker.clone())
        .with_evidence(ClassEvidence { two_wheelers: cfg.two_wheelers.clone(), ground: cam.ground.clone() })
}

/// A camera due for its restart gets a new source.
fn restart_if_due(cam: &mut Camera, metrics: &Metrics) {
    if cam.source.is_none()
        && let Some(at) = cam.restart_at
        && Instant::now() >= at
    {
        cam.restart_at = None;
        metrics.stream_restarts.get_or_create(&camera_labels(&cam.cfg.id)).inc();
        match Source::open(&cam.cfg.uri, cam.source_opts.clone()) {
            Ok(s) => {
                tracing::info!(camera = %cam.cfg.id, attempt = cam.failures, "camera restarted");
                cam.source = Some(s);
                cam.dropped_seen = 0;
            }
            Err(e) => schedule_restart(cam, &e),
        }
    }
}

/// What polling a camera gave: a frame, the end of its stream (clean: `Some(None)`, failed:
/// `Some(Some(error))`), or nothing yet.
struct Taken {
    frame: Option<Frame>,
    ended: Option<Option<SourceError>>,
}

/// Polls the camera's source for up to `wait`.
fn take_frame(cam: &mut Camera, wait: Duration, metrics: &Metrics) -> Taken {
    let Some(source) = cam.source.as_mut() else { return Taken { frame: None, ended: None } };
    match source.poll(wait) {
        Ok(Poll::Frame(f)) => Taken { frame: Some(f), ended: None },
        Ok(Poll::Idle) => Taken { frame: None, ended: None },
        ended => {
            let err = ended.err();
            metrics.stream_up.get_or_create(&camera_labels(&cam.cfg.id)).set(0);
            if err.is_some() {
                metrics
                    .errors
                    .get_or_create(&vec![("stage".into(), "source".into()), ("kind".into(), "stream".into())])
                    .inc();
            }
            cam.summary.dropped += source.dropped();
            cam.source = None;
            Taken { frame: None, ended: Some(err) }
        }
    }
}

/// A camera's stream ended or failed: a live camera restarts alone, with backoff (its tracks end, its
/// bins stay open); a file camera is finished. A lone file camera's failure ends the run with it.
#[allow(clippy::too_many_arguments)]
fn stream_ended(
    site: &str,
    cam: &mut Camera,
    err: Option<SourceError>,
    single: bool,
    store: &mut Store,
    observer: &mut dyn Observer,
    tracked: &mut TrackerOutput,
    events: &mut Vec<TrafficEvent>,
    reports: &mut Vec<FlowReport>,
    metrics: &Metrics,
) -> Result<(), RunError> {
    if cam.live {
        match &err {
            Some(e) => schedule_restart(cam, e),
            None => schedule_restart(cam, &"end of stream"),
        }
        end_tracks(site, cam, store, observer, tracked, events, metrics)?;
        cam.fragments_before += cam.tracker.fragments;
        cam.tracker = cam.tracker.fresh();
        return Ok(());
    }
    match err {
        None => tracing::info!(camera = %cam.cfg.id, frames = cam.summary.frames, "stream ended"),
        Some(e) => {
            tracing::error!(camera = %cam.cfg.id, error = %e, "camera stopped");
            cam.summary.error = Some(e.to_string());
            if single {
                return Err(e.into());
            }
        }
    }
    finish_camera(site, cam, store, observer, tracked, events, reports, metrics)
}

/// One frame of one camera after detection (`dets`: this frame's detections, `None` on a frame the
/// detector skipped): track, rules, bins, the snapshot, the store.
#[allow(clippy::too_many_arguments)]
fn analyse(
    site: &str,
    cam: &mut Camera,
    frame: Frame,
    dets: Option<&[Detection]>,
    detect_time: Duration,
    store: &mut Store,
    observer: &mut dyn Observer,
    tracked: &mut TrackerOutput,
    events: &mut Vec<TrafficEvent>,
    reports: &mut Vec<FlowReport>,
    metrics: &Metrics,
    snapshots: Option<&Snapshots>,
) -> Result<(), RunError> {
    if cam.failures > 0 || metrics.stream_up.get_or_create(&camera_labels(&cam.cfg.id)).get() == 0 {
        cam.failures = 0;
        metrics.stream_up.get_or_create(&camera_labels(&cam.cfg.id)).set(1);
    }
    let labels = camera_labels(&cam.cfg.id);
    metrics.frames_decoded.get_or_create(&labels).inc();
    metrics.frame_seen(&cam.cfg.id);
    let t_track = Instant::now();
    match dets {
        Some(d) => {
            cam.summary.detected += 1;
            cam.tracker.update(frame.pts, d, tracked);
        }
        None => cam.tracker.predict(frame.pts, tracked),
    }
    let t_rules = Instant::now();
    events.clear();
    cam.rules.update(frame.pts, frame.wall, &tracked.tracks, &tracked.ended, events);
    let t_end = Instant::now();
    metrics.frames_analysed.get_or_create(&labels).inc();
    for (stage, d) in [("detect", detect_time), ("track", t_rules - t_track), ("rules", t_end - t_rules)] {
        metrics.stage_duration.get_or_create(&vec![("stage".into(), stage.into())]).observe(d.as_secs_f64());
    }
    // The appsink count can lag by the frame waiting there: never let the total go back.
    let dropped = cam.source.as_ref().map_or(0, Source::dropped).max(cam.dropped_seen);
    reports.clear();
    cam.aggregator.frame(frame.wall, dropped - cam.dropped_seen, cam.rules.zone_now(), quality(cam), reports);
    metrics.frames_dropped.get_or_create(&labels).inc_by(dropped - cam.dropped_seen);
    cam.dropped_seen = dropped;
    cam.summary.frames += 1;
    cam.last_pts = frame.pts;
    cam.last_wall = frame.wall;
    feed(cam, observer, events, metrics);
    if let Some(shared) = snapshots
        && let Ok(mut all) = shared.lock()
    {
        let snap = all.entry(cam.cfg.id.clone()).or_default();
        snap.set_image(&frame.image(), frame.plan.clone(), cam.source_opts.channel_order);
        snap.tracks.clone_from(&tracked.tracks);
        if snap.lines.is_empty() && snap.zones.is_empty() {
            snap.lines = cam.cfg.lines.clone();
            snap.zones = cam.cfg.zones.clone();
        }
        snap.counts = cam
            .summary
            .lines
            .iter()
            .map(|(id, c)| (id.clone(), direction_total(c, Direction::In), direction_total(c, Direction::Out)))
            .collect();
    }
    drop(frame);
    let t = Instant::now();
    let saved = persist(site, cam, store, observer, events, reports);
    metrics.store_writable.store(saved.is_ok(), Ordering::Relaxed);
    saved?;
    if !events.is_empty() || !reports.is_empty() {
        metrics
            .stage_duration
            .get_or_create(&vec![("stage".into(), "store".into())])
            .observe(t.elapsed().as_secs_f64());
    }
    Ok(())
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

/// Feeds events to the open bins and the run totals, and tells the observer.
fn feed(cam: &mut Camera, observer: &mut dyn Observer, events: &[TrafficEvent], metrics: &Metrics) {
    for e in events {
        cam.aggregator.event(e);
        if let EventKind::Crossing { direction } = e.kind {
            if let Some((_, counts)) = cam.summary.lines.iter_mut().find(|(id, _)| **id == *e.rule) {
                *counts.entry((direction, e.class)).or_insert(0) += 1;
            }
            let labels = vec![
                ("camera".into(), cam.cfg.id.clone()),
                ("counter".into(), e.rule.to_string()),
                ("direction".into(), direction.as_str().into()),
                ("class".into(), e.class.as_str().into()),
            ];
            metrics.vehicles_counted.get_or_create(&labels).inc();
        }
        if let EventKind::Movement { to, turn } = &e.kind {
            let labels = vec![
                ("camera".into(), cam.cfg.id.clone()),
                ("from".into(), e.rule.to_string()),
                ("to".into(), to.to_string()),
                ("movement".into(), turn.as_str().into()),
                ("class".into(), e.class.as_str().into()),
            ];
            metrics.movements.get_or_create(&labels).inc();
        }
        observer.event(&cam.cfg.id, e);
    }
    // The rules count cumulatively; the Prometheus counters take what was added since last frame.
    let labels = camera_labels(&cam.cfg.id);
    let q = quality(cam);
    for (family, now, seen) in [
        (&metrics.track_fragments, q.track_fragments, &mut cam.summary.track_fragments),
        (&metrics.recrossings_suppressed, q.recrossings_suppressed, &mut cam.summary.recrossings_suppressed),
        (&metrics.unmatched_movements, q.unmatched_movements, &mut cam.summary.unmatched_movements),
    ] {
        family.get_or_create(&labels).inc_by(now - *seen);
        *seen = now;
    }
}

/// The rules' count-quality counters with the tracker's fragments, all cumulative for the camera.
fn quality(cam: &Camera) -> crate::analytics::RuleQuality {
    crate::analytics::RuleQuality { track_fragments: cam.fragments_before + cam.tracker.fragments, ..cam.rules.quality }
}

fn camera_labels(camera: &str) -> Labels {
    crate::telemetry::camera(camera)
}

/// Stores events and closed bins in one transaction, then tells the observer about the bins.
fn persist(
    site: &str,
    cam: &Camera,
    store: &mut Store,
    observer: &mut dyn Observer,
    events: &[TrafficEvent],
    reports: &[FlowReport],
) -> Result<(), RunError> {
    store.save(site, &cam.cfg.id, events, reports)?;
    for r in reports {
        observer.report(r);
    }
    Ok(())
}

/// Ends the camera's tracks, closing their zone visits; the events are stored.
fn end_tracks(
    site: &str,
    cam: &mut Camera,
    store: &mut Store,
    observer: &mut dyn Observer,
    tracked: &mut TrackerOutput,
    events: &mut Vec<TrafficEvent>,
    metrics: &Metrics,
) -> Result<(), RunError> {
    cam.tracker.finish(tracked);
    events.clear();
    cam.rules.update(cam.last_pts, cam.last_wall, &[], &tracked.ended, events);
    feed(cam, observer, events, metrics);
    persist(site, cam, store, observer, events, &[])
}

/// Ends the camera's tracks and closes its open bins, marked partial where cut short.
#[allow(clippy::too_many_arguments)]
fn finish_camera(
    site: &str,
    cam: &mut Camera,
    store: &mut Store,
    observer: &mut dyn Observer,
    tracked: &mut TrackerOutput,
    events: &mut Vec<TrafficEvent>,
    reports: &mut Vec<FlowReport>,
    metrics: &Metrics,
) -> Result<(), RunError> {
    // Tracks first, so that the zone exits land in the bins being closed.
    end_tracks(site, cam, store, observer, tracked, events, metrics)?;
    reports.clear();
    cam.aggregator.finish(reports);
    persist(site, cam, store, observer, &[], reports)
}

/// Exponential backoff with ±25 % jitter: `base` doubling up to `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let d = base.as_secs_f64() * 2f64.powi(attempt.min(16) as i32);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let jitter = 0.75 + 0.5 * f64::from(nanos % 1000) / 1000.0;
    Duration::from_secs_f64(d.min(max.as_secs_f64()) * jitter)
}

/// A live camera failed: try again after 1 s, doubling up to 60 s.
fn schedule_restart(cam: &mut Camera, err: &dyn std::fmt::Display) {
    let wait = backoff(cam.failures, Duration::from_secs(1), Duration::from_secs(60));
    tracing::warn!(camera = %cam.cfg.id, error = %err, retry_in_s = format!("{:.1}", wait.as_secs_f64()), "camera down; restarting alone");
    cam.failures += 1;
    cam.restart_at = Some(Instant::now() + wait);
}
