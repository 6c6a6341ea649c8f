//! One camera's analysis: its tracker, rules and bins, fed frame by frame (with or without the
//! detections of that frame). No source and no I/O: the runtime's supervisor owns the source and
//! sends what this produces to the outputs thread; benches and tests drive the same type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::aggregate::{Aggregator, BinState, ChangeKind, FlowReport, GapReason, RuleChange};
use crate::analytics::{Direction, EventKind, RuleQuality, Rules, TrafficEvent};
use crate::config::{CameraConfig, Config};
use crate::detect::{Detection, VehicleClass};
use crate::telemetry::{Labels, Metrics};
use crate::track::{ClassEvidence, TrackedObject, Tracker, TrackerOutput};

/// Vehicles counted on one line by direction and class.
pub type LineCounts = BTreeMap<(Direction, VehicleClass), u64>;

/// Vehicles counted in one direction, every class.
pub fn direction_total(counts: &LineCounts, d: Direction) -> u64 {
    counts.iter().filter(|((x, _), _)| *x == d).map(|(_, n)| *n).sum()
}

/// A camera's totals over a run.
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
    /// Due frames left to the tracker because the box was behind ([`crate::schedule`]).
    pub deferred: u64,
    /// Times the supervisor restarted this camera after an error or a panic of its own.
    pub faults: u64,
    pub error: Option<String>,
}

/// What a camera produced in one step: events, and bins it closed.
#[derive(Debug, Default)]
pub struct Produced {
    pub events: Vec<TrafficEvent>,
    pub reports: Vec<FlowReport>,
}

impl Produced {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.reports.is_empty()
    }
}

fn build_rules(cfg: &Config, cam: &CameraConfig) -> Rules {
    let mut rules = Rules::new(cam.lines.clone(), cam.zones.clone(), cfg.rules.clone())
        .with_approaches(cam.approaches.clone())
        .with_loops(cam.loops.clone());
    if let Some(h) = &cam.ground {
        rules = rules.with_ground(h.clone());
    }
    rules
}

/// What differs between two versions of a camera's rules, by kind and id, stamped `at`.
pub fn rule_changes(old: &CameraConfig, new: &CameraConfig, at: SystemTime) -> Vec<RuleChange> {
    fn diff<T: PartialEq>(
        kind: &str,
        old: &[T],
        new: &[T],
        id: impl Fn(&T) -> &str,
        at: &str,
        out: &mut Vec<RuleChange>,
    ) {
        let change =
            |id: &str, change| RuleChange { at: at.to_owned(), kind: kind.to_owned(), id: id.to_owned(), change };
        for o in old {
            match new.iter().find(|n| id(n) == id(o)) {
                None => out.push(change(id(o), ChangeKind::Removed)),
                Some(n) if n != o => out.push(change(id(o), ChangeKind::Changed)),
                Some(_) => {}
            }
        }
        for n in new.iter().filter(|n| !old.iter().any(|o| id(o) == id(n))) {
            out.push(change(id(n), ChangeKind::Added));
        }
    }
    let at = humantime::format_rfc3339_millis(at).to_string();
    let mut out = Vec::new();
    diff("line", &old.lines, &new.lines, |l| &l.id, &at, &mut out);
    diff("zone", &old.zones, &new.zones, |z| &z.id, &at, &mut out);
    diff("approach", &old.approaches, &new.approaches, |a| &a.id, &at, &mut out);
    diff("loop", &old.loops, &new.loops, |l| &l.id, &at, &mut out);
    // The homography has no equality of its own: its printed matrix stands for it.
    if format!("{:?}", old.ground) != format!("{:?}", new.ground) {
        let change = match (&old.ground, &new.ground) {
            (None, _) => ChangeKind::Added,
            (_, None) => ChangeKind::Removed,
            _ => ChangeKind::Changed,
        };
        out.push(RuleChange { at, kind: "ground".into(), id: "ground_points".into(), change });
    }
    out
}

/// One camera's whole analysis state.
pub struct CameraPipeline {
    cfg: CameraConfig,
    tracker: Tracker,
    rules: Rules,
    aggregator: Aggregator,
    metrics: Arc<Metrics>,
    labels: Labels,
    tracked: TrackerOutput,
    /// Track fragments of the trackers this camera had before its last restart.
    fragments_before: u64,
    last_pts: Duration,
    last_wall: SystemTime,
    summary: CameraSummary,
    scratch: Vec<TrafficEvent>,
}

impl std::fmt::Debug for CameraPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraPipeline").field("camera", &self.cfg.id).finish_non_exhaustive()
    }
}

impl CameraPipeline {
    pub fn new(cfg: &Config, cam: &CameraConfig, metrics: Arc<Metrics>) -> Self {
        let tracker = Tracker::new(cfg.tracker.clone())
            .with_evidence(ClassEvidence { two_wheelers: cfg.two_wheelers.clone(), ground: cam.ground.clone() });
        let rules = build_rules(cfg, cam);
        let counters = cam.lines.iter().map(|l| l.id.clone()).collect();
        let zones = cam.zones.iter().map(|z| (z.id.clone(), z.kind)).collect();
        Self {
            cfg: cam.clone(),
            tracker,
            rules,
            aggregator: Aggregator::new(&cfg.site, &cam.id, counters, zones, &cfg.bins).with_pcu(cfg.pcu),
            labels: crate::telemetry::camera(&cam.id),
            metrics,
            tracked: TrackerOutput::default(),
            fragments_before: 0,
            last_pts: Duration::ZERO,
            last_wall: SystemTime::UNIX_EPOCH,
            summary: CameraSummary {
                camera: cam.id.clone(),
                lines: cam.lines.iter().map(|l| (l.id.to_string(), BTreeMap::new())).collect(),
                ..CameraSummary::default()
            },
            scratch: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    pub fn config(&self) -> &CameraConfig {
        &self.cfg
    }

    pub fn summary(&self) -> &CameraSummary {
        &self.summary
    }

    pub fn summary_mut(&mut self) -> &mut CameraSummary {
        &mut self.summary
    }

    pub fn into_summary(self) -> CameraSummary {
        self.summary
    }

    /// The tracks of the last frame (for the snapshot).
    pub fn tracks(&self) -> &[TrackedObject] {
        &self.tracked.tracks
    }

    /// Applies the rules of a reloaded calibration (`new`: the same camera as configured now) without
    /// stopping: tracks go on; rules that did not change keep their state and their counts in the
    /// open bins; if anything changed, each open bin is reported now as partial (reason
    /// `rules_changed`, the changes listed) and continues one revision higher, the changed rules
    /// counting from here. Returns the changes (none: nothing was touched). Only the rules and the
    /// ground plane are taken from `new`; the source, its region of interest and tiles stay as they
    /// were started.
    pub fn reload(&mut self, cfg: &Config, new: &CameraConfig, now: SystemTime, out: &mut Produced) -> Vec<RuleChange> {
        let at = if self.last_wall > SystemTime::UNIX_EPOCH { self.last_wall } else { now };
        let changes = rule_changes(&self.cfg, new, at);
        if changes.is_empty() {
            return changes;
        }
        let old = std::mem::replace(&mut self.rules, Rules::new(Vec::new(), Vec::new(), cfg.rules.clone()));
        self.rules = old.carry_into(build_rules(cfg, new));
        let counters = new.lines.iter().map(|l| l.id.clone()).collect();
        let zones = new.zones.iter().map(|z| (z.id.clone(), z.kind)).collect();
        self.aggregator.reconfigure(counters, zones, &changes, &mut out.reports);
        for l in &new.lines {
            if !self.summary.lines.iter().any(|(id, _)| **id == *l.id) {
                self.summary.lines.push((l.id.to_string(), BTreeMap::new()));
            }
        }
        self.cfg.lines = new.lines.clone();
        self.cfg.zones = new.zones.clone();
        self.cfg.approaches = new.approaches.clone();
        self.cfg.loops = new.loops.clone();
        self.cfg.ground = new.ground.clone();
        changes
    }

    /// Continues bins stored by an earlier run or before this camera's restart.
    pub fn resume(&mut self, states: Vec<BinState>) {
        self.aggregator.resume(states);
    }

    /// Open bins, for the store's checkpoint.
    pub fn checkpoint(&self) -> Vec<BinState> {
        self.aggregator.checkpoint()
    }

    /// The next frame is on the detector's cadence: every `every`-th frame ([`crate::motion`] decides
    /// whether it is detected on).
    pub fn on_cadence(&self, every: u32) -> bool {
        self.summary.frames.is_multiple_of(u64::from(every.max(1)))
    }

    /// A due frame was left to the tracker because the box was behind ([`crate::schedule`]).
    pub fn detection_deferred(&mut self) {
        self.summary.deferred += 1;
        self.metrics.detections_deferred.get_or_create(&self.labels).inc();
    }

    /// A new track awaits confirmation: the detector must see it again at once.
    pub fn has_tentative(&self) -> bool {
        self.tracker.has_tentative()
    }

    /// One frame at stream time `pts` and wall clock `wall`: track (`dets`: this frame's detections,
    /// `None` where the detector skipped it), rules, bins. `dropped`: frames dropped since the last call;
    /// `detect_time`: this frame's share of the detector's time.
    pub fn frame(
        &mut self,
        pts: Duration,
        wall: SystemTime,
        dets: Option<&[Detection]>,
        dropped: u64,
        detect_time: Duration,
        out: &mut Produced,
    ) {
        let m = &self.metrics;
        m.frames_decoded.get_or_create(&self.labels).inc();
        m.frame_seen(&self.cfg.id);
        let t_track = Instant::now();
        match dets {
            Some(d) => {
                self.summary.detected += 1;
                self.tracker.update(pts, d, &mut self.tracked);
            }
            None => self.tracker.predict(pts, &mut self.tracked),
        }
        let t_rules = Instant::now();
        self.scratch.clear();
        self.rules.update(pts, wall, &self.tracked.tracks, &self.tracked.ended, &mut self.scratch);
        let t_end = Instant::now();
        m.frames_analysed.get_or_create(&self.labels).inc();
        for (stage, d) in [("detect", detect_time), ("track", t_rules - t_track), ("rules", t_end - t_rules)] {
            m.stage_duration.get_or_create(&vec![("stage".into(), stage.into())]).observe(d.as_secs_f64());
        }
        m.frames_dropped.get_or_create(&self.labels).inc_by(dropped);
        let quality = self.quality();
        self.aggregator.frame(wall, dropped, self.rules.zone_now(), quality, &mut out.reports);
        self.summary.frames += 1;
        self.summary.dropped += dropped;
        self.last_pts = pts;
        self.last_wall = wall;
        self.feed(out);
    }

    /// The stream failed or ended (a live camera is restarted): its tracks end, the time since its
    /// last frame is "camera down", its bins stay open.
    pub fn stream_down(&mut self, out: &mut Produced) {
        self.end_tracks(out);
        self.fragments_before += self.tracker.fragments;
        self.tracker = self.tracker.fresh();
        self.aggregator.gap_reason(GapReason::CameraDown);
    }

    /// A live camera's first opening at `now`: before it the box was not running; what follows until
    /// its first frame is the camera being opened.
    pub fn started(&mut self, now: SystemTime, out: &mut Produced) {
        self.aggregator.mark(now, GapReason::CameraRestarting, &mut out.reports);
    }

    /// The camera's source is being opened again at `now`: the gap so far was the camera down, what
    /// follows until its first frame is the camera restarting.
    pub fn reopening(&mut self, now: SystemTime, out: &mut Produced) {
        self.aggregator.mark(now, GapReason::CameraRestarting, &mut out.reports);
    }

    /// Reopening failed at `now`: what follows is the camera down again.
    pub fn reopening_failed(&mut self, now: SystemTime, out: &mut Produced) {
        self.aggregator.mark(now, GapReason::CameraDown, &mut out.reports);
    }

    /// The box's wall clock stepped ([`crate::clock`]): noted in the open bins.
    pub fn clock_step(&mut self, step: &crate::clock::ClockStep) {
        self.aggregator.clock_step(step);
    }

    /// A live camera's wall clock while it delivers nothing: bins close on time, with their gaps, once
    /// the stall timeout has said why (see [`crate::aggregate::Aggregator::tick`]).
    pub fn tick(&mut self, now: SystemTime, out: &mut Produced) {
        self.aggregator.tick(now, self.cfg.stall_timeout, &mut out.reports);
    }

    /// Ends the tracks and closes the open bins; the rest of each bin is a gap of `rest`. If the same
    /// bin opens again later in this process, it continues one revision higher.
    pub fn finish(&mut self, rest: GapReason, out: &mut Produced) {
        // Tracks first, so that the zone exits land in the bins being closed.
        self.end_tracks(out);
        self.fragments_before += self.tracker.fragments;
        self.tracker = self.tracker.fresh();
        self.aggregator.finish(rest, &mut out.reports);
    }

    fn end_tracks(&mut self, out: &mut Produced) {
        self.tracker.finish(&mut self.tracked);
        self.scratch.clear();
        self.rules.update(self.last_pts, self.last_wall, &[], &self.tracked.ended, &mut self.scratch);
        self.feed(out);
        self.tracked.tracks.clear();
    }

    /// Feeds the step's events to the open bins and the run totals, and to `out`.
    fn feed(&mut self, out: &mut Produced) {
        let m = &self.metrics;
        for e in &self.scratch {
            self.aggregator.event(e);
            if let EventKind::Crossing { direction } = e.kind {
                if let Some((_, counts)) = self.summary.lines.iter_mut().find(|(id, _)| **id == *e.rule) {
                    *counts.entry((direction, e.class)).or_insert(0) += 1;
                }
                let labels = vec![
                    ("camera".into(), self.cfg.id.clone()),
                    ("counter".into(), e.rule.to_string()),
                    ("direction".into(), direction.as_str().into()),
                    ("class".into(), e.class.as_str().into()),
                ];
                m.vehicles_counted.get_or_create(&labels).inc();
            }
            if let EventKind::Movement { to, turn } = &e.kind {
                let labels = vec![
                    ("camera".into(), self.cfg.id.clone()),
                    ("from".into(), e.rule.to_string()),
                    ("to".into(), to.to_string()),
                    ("movement".into(), turn.as_str().into()),
                    ("class".into(), e.class.as_str().into()),
                ];
                m.movements.get_or_create(&labels).inc();
            }
        }
        out.events.append(&mut self.scratch);
        // The rules count cumulatively; the Prometheus counters take what was added since last step.
        let q = self.quality();
        let s = &mut self.summary;
        for (family, now, seen) in [
            (&m.track_fragments, q.track_fragments, &mut s.track_fragments),
            (&m.recrossings_suppressed, q.recrossings_suppressed, &mut s.recrossings_suppressed),
            (&m.unmatched_movements, q.unmatched_movements, &mut s.unmatched_movements),
        ] {
            family.get_or_create(&self.labels).inc_by(now.saturating_sub(*seen));
            *seen = now;
        }
    }

    /// The rules' count-quality counters with the tracker's fragments, all cumulative for the camera.
    fn quality(&self) -> RuleQuality {
        RuleQuality { track_fragments: self.fragments_before + self.tracker.fragments, ..self.rules.quality }
    }
}
