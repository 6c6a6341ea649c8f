//! Wall-clock-aligned bins per camera (1 min and 15 min by default): volumes by counter × direction ×
//! class with passenger-car units, flow rates, spot speeds (mean, 85th percentile), headways, turning
//! movements by approach × movement × class, zone occupancy, dwell and queues, frames analysed and
//! dropped, count-quality counters.
//!
//! Bins are aligned to multiples of their length since the Unix epoch (so to UTC midnight, the lengths
//! dividing a day) and are closed by the frames' wall clock, not by the system clock: a file replayed at
//! 10× gives the same reports as the live camera would have. No I/O here.
//!
//! Coverage: each frame credits the time since the previous frame to its bins when that is at most
//! [`MAX_FRAME_GAP`]; longer stretches are gaps with a reason (box not running, camera down, camera
//! restarting, no frames). While the box runs, [`Aggregator::tick`] closes the bins of a camera that
//! delivers nothing, so every bin gets a report. A bin reported again after a restart (same id)
//! carries a higher `revision` and everything counted in it so far ([`BinState`], [`Aggregator::resume`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::analytics::{Direction, EventKind, RuleQuality, TrafficEvent, Turn, ZoneKind, ZoneNow};
use crate::detect::VehicleClass;

pub use junction_schema::site::PcuFactors;
pub use junction_schema::wire::FLOW_SCHEMA;

/// Uncovered time a bin may have and still not be `partial` (seconds): the last frame of a stream
/// that ends on time is at most a frame interval before the bin's end.
const PARTIAL_GRACE: f64 = 1.0;
/// Longest time between two frames credited as covered (and to zone occupancy); longer is a gap.
pub const MAX_FRAME_GAP: Duration = Duration::from_secs(2);

/// Why part of a bin has no frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// junction was not running (before it started, after it stopped or crashed).
    BoxNotRunning,
    /// The camera's stream failed or stalled.
    CameraDown,
    /// The camera was being reopened after a failure (connecting, negotiating).
    CameraRestarting,
    /// The stream was up but delivered no frame for longer than [`MAX_FRAME_GAP`].
    NoFrames,
    /// The camera's rules were reloaded within the bin: this report closes the bin at the reload,
    /// and the bin continues one revision higher under the new rules (see `rule_changes`).
    RulesChanged,
    /// The box's wall clock stepped forward over this stretch: no time passed for the camera
    /// (see `clock_steps` and [`crate::clock`]).
    ClockStep,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BoxNotRunning => "box_not_running",
            Self::CameraDown => "camera_down",
            Self::CameraRestarting => "camera_restarting",
            Self::NoFrames => "no_frames",
            Self::RulesChanged => "rules_changed",
            Self::ClockStep => "clock_step",
        }
    }
}

/// What a rules reload did to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

/// One rule added, changed or removed by a reload within a bin: its counts in the bin cover only the
/// time from `at` (added, changed) or up to `at` (removed; those are in the report closed at `at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    /// RFC 3339 UTC, milliseconds: the last frame analysed under the old rules.
    pub at: String,
    /// `line`, `zone`, `approach`, `loop` or `ground` (the ground plane: speeds and queue lengths).
    pub kind: String,
    pub id: String,
    pub change: ChangeKind,
}

/// A stretch of a bin without frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// RFC 3339 UTC, milliseconds.
    pub from: String,
    pub to: String,
    pub seconds: f64,
    pub reason: GapReason,
}

/// A step of the box's wall clock seen while the bin was open ([`crate::clock`]): forward, the
/// skipped time is a `clock_step` gap; back, the bin holds that much more real time than its length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockStepNote {
    /// RFC 3339 UTC, milliseconds: the box's time line when the step was seen.
    pub at: String,
    /// The wall clock's jump: positive forward, negative back.
    pub seconds: f64,
}

/// Steps noted per bin at most (a clock stepping all the time is noted by its first steps).
const MAX_CLOCK_STEPS: usize = 16;

/// One closed bin of one camera. The `id` is stable (site, camera, bin start, bin length); a bin
/// reported again (after a restart inside it) keeps its id with a higher `revision` and holds
/// everything counted in it so far. Consumer rule: per id, keep the highest revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    pub schema: String,
    pub id: String,
    /// 1 for the first report of a bin; each report of the same id again is one higher.
    #[serde(default = "first_revision")]
    pub revision: u32,
    pub site: String,
    pub camera: String,
    /// Bin start, RFC 3339 UTC.
    pub bin_start: String,
    pub bin_seconds: u64,
    /// Coverage is below the bin: see `gaps`.
    pub partial: bool,
    /// Seconds of the bin covered by frames (time between frames at most 2 s apart).
    pub covered_seconds: f64,
    /// The uncovered stretches of the bin, in time order, each with its reason.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    /// Non-zero counts only, sorted by counter, direction, class.
    pub volumes: Vec<Volume>,
    /// Per counter and direction, every class together.
    pub flows: Vec<Flow>,
    pub zones: Vec<ZoneStats>,
    /// Spot speeds at each counter by class (calibrated cameras; plausible speeds only).
    #[serde(default)]
    pub speeds: Vec<SpeedStats>,
    /// Headways between successive vehicles over a counter in one direction.
    #[serde(default)]
    pub headways: Vec<HeadwayStats>,
    /// Turning movements completed in the bin, by entry approach, exit approach and class.
    #[serde(default)]
    pub movements: Vec<MovementCount>,
    pub quality: Quality,
    /// Rules reloaded within the bin (absent when none): a changed or added rule counts from its
    /// change on, so its counts here cover part of the bin; the bin is then `partial`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_changes: Vec<RuleChange>,
    /// Steps of the box's wall clock while the bin was open (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clock_steps: Vec<ClockStepNote>,
    /// What the store keeps to continue this bin after a restart (not published).
    #[serde(skip)]
    pub state: Option<Arc<BinState>>,
}

fn first_revision() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    pub counter: String,
    pub class: VehicleClass,
    /// Vehicles with a plausible speed.
    pub vehicles: u64,
    pub mean_kmh: f64,
    /// 85th percentile (nearest rank), km/h.
    pub p85_kmh: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadwayStats {
    pub counter: String,
    pub direction: Direction,
    /// Gaps measured: vehicles in the bin with a predecessor on the same counter and direction.
    pub gaps: u64,
    /// Seconds between successive vehicles (wall clock).
    pub mean_s: f64,
    pub min_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovementCount {
    pub from: String,
    pub to: String,
    pub movement: Turn,
    pub class: VehicleClass,
    pub vehicles: u64,
    pub pcu: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub counter: String,
    pub direction: Direction,
    pub class: VehicleClass,
    pub vehicles: u64,
    /// Passenger-car units: vehicles × the class's factor.
    #[serde(default)]
    pub pcu: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub counter: String,
    pub direction: Direction,
    pub vehicles: u64,
    /// Vehicles per hour: over the bin length, or over the covered time for a partial bin.
    pub veh_per_hour: f64,
    /// The same in passenger-car units per hour.
    #[serde(default)]
    pub pcu_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStats {
    pub zone: String,
    pub kind: ZoneKind,
    pub entries: u64,
    /// Time-weighted mean of vehicles present.
    pub mean_vehicles: f64,
    pub max_vehicles: u32,
    /// Share of the covered time with at least one vehicle present, 0–1.
    pub occupied_share: f64,
    /// Mean dwell of the visits that ended in this bin, seconds.
    pub mean_dwell_s: Option<f64>,
    /// Queue zones: time-weighted mean and the most of queued (slow) vehicles.
    #[serde(default)]
    pub mean_queue_vehicles: f64,
    #[serde(default)]
    pub max_queue_vehicles: u32,
    /// Queue zones on a calibrated camera: queue length in metres from the front edge, time-weighted
    /// mean and maximum.
    #[serde(default)]
    pub mean_queue_m: Option<f64>,
    #[serde(default)]
    pub max_queue_m: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quality {
    pub recrossings_suppressed: u64,
    pub slow_crossings_ignored: u64,
    #[serde(default)]
    pub implausible_speeds: u64,
    #[serde(default)]
    pub unmatched_movements: u64,
    #[serde(default)]
    pub track_fragments: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneAcc {
    entries: u64,
    vehicle_seconds: f64,
    occupied_seconds: f64,
    max_vehicles: u32,
    dwell_sum: f64,
    dwell_n: u64,
    queued_seconds: f64,
    max_queued: u32,
    queue_m_seconds: f64,
    max_queue_m: Option<f64>,
}

#[derive(Debug, Clone)]
struct Bin {
    start: SystemTime,
    revision: u32,
    /// Time up to which the bin's coverage is accounted (covered or a gap).
    cursor: SystemTime,
    covered: f64,
    gaps: Vec<(SystemTime, SystemTime, GapReason)>,
    frames_analysed: u64,
    frames_dropped: u64,
    volumes: BTreeMap<(usize, Direction, VehicleClass), u64>,
    speeds: BTreeMap<(usize, VehicleClass), Vec<f64>>,
    headways: BTreeMap<(usize, Direction), Vec<f64>>,
    movements: BTreeMap<(Arc<str>, Arc<str>, Turn, VehicleClass), u64>,
    zones: Vec<ZoneAcc>,
    /// Quality counted before a restart (from the stored state), and the rules' cumulative counters
    /// when this process opened or resumed the bin.
    quality_before: Quality,
    quality_at_start: RuleQuality,
    rule_changes: Vec<RuleChange>,
    clock_steps: Vec<ClockStepNote>,
}

impl Bin {
    fn new(start: SystemTime, zones: usize, quality: RuleQuality) -> Self {
        Self {
            start,
            revision: 1,
            cursor: start,
            covered: 0.0,
            gaps: Vec::new(),
            frames_analysed: 0,
            frames_dropped: 0,
            volumes: BTreeMap::new(),
            speeds: BTreeMap::new(),
            headways: BTreeMap::new(),
            movements: BTreeMap::new(),
            zones: vec![ZoneAcc::default(); zones],
            quality_before: Quality::default(),
            quality_at_start: quality,
            rule_changes: Vec::new(),
            clock_steps: Vec::new(),
        }
    }

    /// Accounts [cursor, min(to, end)) as covered or as a gap.
    fn account(&mut self, to: SystemTime, end: SystemTime, covered: bool, reason: GapReason) {
        let to = to.min(end);
        if to <= self.cursor {
            return;
        }
        if covered {
            self.covered += secs_between(self.cursor, to);
        } else {
            match self.gaps.last_mut() {
                Some(last) if last.1 == self.cursor && last.2 == reason => last.1 = to,
                _ => self.gaps.push((self.cursor, to, reason)),
            }
        }
        self.cursor = to;
    }
}

/// An open or closed bin as the store keeps it, so that a restarted box continues it: everything
/// counted so far, with the raw speed and headway samples. Times are Unix seconds (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinState {
    pub id: String,
    pub bin_seconds: u64,
    pub start_s: f64,
    /// The revision this bin was (closed) or will be (open) reported at.
    pub revision: u32,
    /// Reported already (closed by a shutdown or its end): continued at `revision + 1` only if the
    /// same bin opens again. Not reported (a checkpoint of an open bin): continued at `revision`.
    pub reported: bool,
    pub cursor_s: f64,
    pub covered_s: f64,
    pub gaps: Vec<(f64, f64, GapReason)>,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    pub volumes: Vec<(String, Direction, VehicleClass, u64)>,
    pub speeds: Vec<(String, VehicleClass, Vec<f64>)>,
    pub headways: Vec<(String, Direction, Vec<f64>)>,
    pub movements: Vec<(String, String, Turn, VehicleClass, u64)>,
    pub zones: Vec<(String, ZoneAcc)>,
    pub quality: Quality,
    #[serde(default)]
    pub rule_changes: Vec<RuleChange>,
    #[serde(default)]
    pub clock_steps: Vec<ClockStepNote>,
}

fn unix_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// Unix seconds from the store as a time; out of range (a corrupt row: negative, NaN, past year 5000)
/// clamped instead of a panic (found by reading after fuzzing began).
pub(crate) fn from_unix_s(s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(s.clamp(0.0, 1e11)).unwrap_or_default()
}

#[derive(Debug)]
struct BinSeries {
    len: Duration,
    current: Option<Bin>,
    /// A reported bin of an earlier run: continued if the bin with its start opens again.
    resume: Option<BinState>,
}

/// Bins of one camera, for each configured length.
#[derive(Debug)]
pub struct Aggregator {
    site: String,
    camera: String,
    counters: Vec<Arc<str>>,
    zones: Vec<(Arc<str>, ZoneKind)>,
    series: Vec<BinSeries>,
    last_frame: Option<SystemTime>,
    quality: RuleQuality,
    pcu: PcuFactors,
    /// Why the time since the last frame (or since the start) has no frames.
    pending: GapReason,
    /// Last crossing per counter and direction, across bins (a headway belongs to the bin of the
    /// second vehicle).
    last_crossing: HashMap<(usize, Direction), SystemTime>,
}

fn align(t: SystemTime, len: Duration) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let len = len.as_secs().max(1);
    UNIX_EPOCH + Duration::from_secs(secs - secs % len)
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64()
}

impl Aggregator {
    pub fn new(
        site: &str,
        camera: &str,
        counters: Vec<Arc<str>>,
        zones: Vec<(Arc<str>, ZoneKind)>,
        bins: &[Duration],
    ) -> Self {
        Self {
            site: site.to_owned(),
            camera: camera.to_owned(),
            counters,
            zones,
            series: bins.iter().map(|len| BinSeries { len: *len, current: None, resume: None }).collect(),
            last_frame: None,
            quality: RuleQuality::default(),
            pcu: PcuFactors::default(),
            pending: GapReason::BoxNotRunning,
            last_crossing: HashMap::new(),
        }
    }

    pub fn with_pcu(mut self, pcu: PcuFactors) -> Self {
        self.pcu = pcu;
        self
    }

    /// Accounts one analysed frame at `wall`, closing the bins it has left behind into `out`.
    /// `dropped` is frames dropped since the previous call; `zones` each zone's state now;
    /// `quality` the rules' cumulative counters.
    pub fn frame(
        &mut self,
        wall: SystemTime,
        dropped: u64,
        zones: &[ZoneNow],
        quality: RuleQuality,
        out: &mut Vec<FlowReport>,
    ) {
        let since = self.last_frame.and_then(|l| wall.duration_since(l).ok());
        let covered = since.is_some_and(|d| d <= MAX_FRAME_GAP);
        self.quality = quality;
        self.advance(wall, covered, self.pending, out);
        // Zone occupancy is time-weighted over covered time only: a stalled stream is not "occupied".
        let dt = if covered { since.unwrap_or_default().as_secs_f64() } else { 0.0 };
        self.last_frame = Some(self.last_frame.map_or(wall, |l| l.max(wall)));
        self.pending = GapReason::NoFrames;
        for s in &mut self.series {
            let Some(bin) = s.current.as_mut() else { continue };
            bin.frames_analysed += 1;
            bin.frames_dropped += dropped;
            for (acc, z) in bin.zones.iter_mut().zip(zones) {
                let n = z.vehicles;
                acc.vehicle_seconds += f64::from(n) * dt;
                if n > 0 {
                    acc.occupied_seconds += dt;
                }
                acc.max_vehicles = acc.max_vehicles.max(n);
                acc.queued_seconds += f64::from(z.queued) * dt;
                acc.max_queued = acc.max_queued.max(z.queued);
                if let Some(m) = z.queue_m {
                    let m = f64::from(m);
                    acc.queue_m_seconds += m * dt;
                    acc.max_queue_m = Some(acc.max_queue_m.map_or(m, |x| x.max(m)));
                }
            }
        }
    }

    /// The box's wall clock stepped ([`crate::clock`]): noted in the open bins; a step forward makes
    /// the time up to the next frame a `clock_step` gap (unless the camera is down anyway).
    pub fn clock_step(&mut self, step: &crate::clock::ClockStep) {
        let note = ClockStepNote {
            at: humantime::format_rfc3339_millis(step.at).to_string(),
            seconds: (step.seconds * 1000.0).round() / 1000.0,
        };
        for s in &mut self.series {
            if let Some(bin) = s.current.as_mut()
                && bin.clock_steps.len() < MAX_CLOCK_STEPS
            {
                bin.clock_steps.push(note.clone());
            }
        }
        if step.seconds > 0.0 && self.pending == GapReason::NoFrames {
            self.pending = GapReason::ClockStep;
        }
    }

    /// The time since the last frame has no frames because of `reason` (a stream failed: camera down).
    pub fn gap_reason(&mut self, reason: GapReason) {
        self.pending = reason;
    }

    /// Accounts the time up to `now` as a gap of the current reason, then `next` is the reason of what
    /// follows (the camera is being reopened: camera restarting). Closes bins that ended.
    pub fn mark(&mut self, now: SystemTime, next: GapReason, out: &mut Vec<FlowReport>) {
        self.advance(now, false, self.pending, out);
        self.pending = next;
    }

    /// While the box runs and the camera delivers nothing (no frame for [`MAX_FRAME_GAP`]), the wall
    /// clock closes its bins: each gets a report with its gaps, frames or not. While the reason is still
    /// open ("no frames" since the last frame), time is accounted up to `now - decided` only: why frames
    /// stopped is known once the source's stall timeout (`decided`) has passed, so the first seconds of
    /// an outage are the camera down, not "no frames"; those bins close that much later. A known reason
    /// (down, restarting, a clock step) is accounted up to `now`; nothing already accounted is touched.
    pub fn tick(&mut self, now: SystemTime, decided: Duration, out: &mut Vec<FlowReport>) {
        let lag = if self.pending == GapReason::NoFrames { decided } else { Duration::ZERO };
        let Some(upto) = now.checked_sub(lag) else { return };
        // A mark() (camera opened, reopened) may have accounted up to its own `now` already.
        if self.series.iter().filter_map(|s| s.current.as_ref()).any(|b| upto <= b.cursor) {
            return;
        }
        let quiet = self.last_frame.is_none_or(|l| upto.duration_since(l).is_ok_and(|d| d > MAX_FRAME_GAP));
        if quiet {
            self.advance(upto, false, self.pending, out);
        }
    }

    /// Continues bins of an earlier run (or of this camera before its restart) from the store: an open
    /// bin's checkpoint becomes the open bin again; a reported bin is continued, one revision higher,
    /// if the same bin opens again.
    pub fn resume(&mut self, states: Vec<BinState>) {
        for st in states {
            let Some(i) = self.series.iter().position(|s| s.len.as_secs() == st.bin_seconds) else { continue };
            if st.reported {
                self.series[i].resume = Some(st);
            } else {
                let bin = self.bin_of(&st);
                self.series[i].current = Some(bin);
            }
        }
    }

    /// The open bins as the store checkpoints them (not yet reported).
    pub fn checkpoint(&self) -> Vec<BinState> {
        self.series.iter().filter_map(|s| s.current.as_ref().map(|b| self.state_of(b, s.len, false))).collect()
    }

    /// Accounts the time up to `t` in every series (covered, or a gap of `reason`), closing the bins
    /// that ended and opening the next: contiguous bins, except over a stretch the box was not running
    /// (nobody can report those bins: the next bin is the one holding `t`).
    fn advance(&mut self, t: SystemTime, covered: bool, reason: GapReason, out: &mut Vec<FlowReport>) {
        for i in 0..self.series.len() {
            let len = self.series[i].len;
            loop {
                let Some(bin) = self.series[i].current.as_mut() else {
                    let bin = self.open(i, align(t, len), t);
                    self.series[i].current = Some(bin);
                    continue;
                };
                if t + MAX_FRAME_GAP < bin.cursor {
                    // Time went back: a file replayed from an earlier start after a restart (live
                    // cameras run on the time line, which never goes back). The open bin (a
                    // checkpoint) is dropped: the replay covers its time again, and the store keeps
                    // whichever report of that bin covers more. (A frame stamped just before the
                    // cursor, e.g. before a tick that closed its bin, is accounted in the open bin.)
                    self.series[i].current = None;
                    continue;
                }
                let end = bin.start + len;
                bin.account(t, end, covered, reason);
                if t < end {
                    break;
                }
                if let Some(bin) = self.series[i].current.take() {
                    out.push(self.report(bin, len, None));
                }
                let next = if !covered && reason == GapReason::BoxNotRunning { align(t, len) } else { end };
                let bin = self.open(i, next, t);
                self.series[i].current = Some(bin);
            }
        }
    }

    /// A new bin of series `i` starting at `start`, opened by time `t`: the reported bin of an earlier
    /// run if it is this one and `t` is past what it covered (one revision higher), else empty. (A
    /// replayed file is not continued: it would count the same time twice.)
    fn open(&mut self, i: usize, start: SystemTime, t: SystemTime) -> Bin {
        match self.series[i].resume.take() {
            Some(st) if from_unix_s(st.start_s) == start && from_unix_s(st.cursor_s) <= t => {
                let mut bin = self.bin_of(&st);
                bin.revision = st.revision + 1;
                bin
            }
            _ => Bin::new(start, self.zones.len(), self.quality),
        }
    }

    fn bin_of(&self, st: &BinState) -> Bin {
        let counter = |name: &str| self.counters.iter().position(|c| **c == *name);
        let mut bin = Bin::new(from_unix_s(st.start_s), self.zones.len(), self.quality);
        bin.revision = st.revision;
        bin.cursor = from_unix_s(st.cursor_s);
        bin.covered = st.covered_s;
        bin.gaps = st.gaps.iter().map(|&(a, b, r)| (from_unix_s(a), from_unix_s(b), r)).collect();
        bin.frames_analysed = st.frames_analysed;
        bin.frames_dropped = st.frames_dropped;
        // Counters and zones no longer configured are left out.
        for (name, d, class, n) in &st.volumes {
            if let Some(c) = counter(name) {
                *bin.volumes.entry((c, *d, *class)).or_insert(0) += n;
            }
        }
        for (name, class, v) in &st.speeds {
            if let Some(c) = counter(name) {
                bin.speeds.entry((c, *class)).or_default().extend(v);
            }
        }
        for (name, d, v) in &st.headways {
            if let Some(c) = counter(name) {
                bin.headways.entry((c, *d)).or_default().extend(v);
            }
        }
        for (from, to, turn, class, n) in &st.movements {
            *bin.movements.entry((from.as_str().into(), to.as_str().into(), *turn, *class)).or_insert(0) += n;
        }
        for (name, acc) in &st.zones {
            if let Some(z) = self.zones.iter().position(|(id, _)| **id == *name) {
                bin.zones[z] = acc.clone();
            }
        }
        bin.quality_before = st.quality;
        bin.rule_changes = st.rule_changes.clone();
        bin.clock_steps = st.clock_steps.clone();
        bin
    }

    fn state_of(&self, bin: &Bin, len: Duration, reported: bool) -> BinState {
        let start = humantime::format_rfc3339_seconds(bin.start).to_string();
        BinState {
            id: format!("{}/{}/{}/{}", self.site, self.camera, start, len.as_secs()),
            bin_seconds: len.as_secs(),
            start_s: unix_s(bin.start),
            revision: bin.revision,
            reported,
            cursor_s: unix_s(bin.cursor),
            covered_s: bin.covered,
            gaps: bin.gaps.iter().map(|&(a, b, r)| (unix_s(a), unix_s(b), r)).collect(),
            frames_analysed: bin.frames_analysed,
            frames_dropped: bin.frames_dropped,
            volumes: bin.volumes.iter().map(|(&(c, d, k), &n)| (self.counters[c].to_string(), d, k, n)).collect(),
            speeds: bin.speeds.iter().map(|(&(c, k), v)| (self.counters[c].to_string(), k, v.clone())).collect(),
            headways: bin.headways.iter().map(|(&(c, d), v)| (self.counters[c].to_string(), d, v.clone())).collect(),
            movements: bin
                .movements
                .iter()
                .map(|((f, t, turn, k), &n)| (f.to_string(), t.to_string(), *turn, *k, n))
                .collect(),
            zones: self.zones.iter().zip(&bin.zones).map(|((id, _), acc)| (id.to_string(), acc.clone())).collect(),
            quality: self.bin_quality(bin),
            rule_changes: bin.rule_changes.clone(),
            clock_steps: bin.clock_steps.clone(),
        }
    }

    fn bin_quality(&self, bin: &Bin) -> Quality {
        let (q, s, b) = (&self.quality, &bin.quality_at_start, &bin.quality_before);
        Quality {
            recrossings_suppressed: b.recrossings_suppressed
                + q.recrossings_suppressed.saturating_sub(s.recrossings_suppressed),
            slow_crossings_ignored: b.slow_crossings_ignored
                + q.slow_crossings_ignored.saturating_sub(s.slow_crossings_ignored),
            implausible_speeds: b.implausible_speeds + q.implausible_speeds.saturating_sub(s.implausible_speeds),
            unmatched_movements: b.unmatched_movements + q.unmatched_movements.saturating_sub(s.unmatched_movements),
            track_fragments: b.track_fragments + q.track_fragments.saturating_sub(s.track_fragments),
        }
    }
    /// Adds an event to the open bins (call after `frame` for the frame that produced it).
    pub fn event(&mut self, e: &TrafficEvent) {
        let mut headway = None;
        if let EventKind::Crossing { direction } = e.kind
            && let Some(c) = self.counters.iter().position(|c| *c == e.rule)
            && let Some(prev) = self.last_crossing.insert((c, direction), e.wall)
        {
            headway = Some(e.wall.duration_since(prev).unwrap_or_default().as_secs_f64());
        }
        for s in &mut self.series {
            let Some(bin) = s.current.as_mut() else { continue };
            match &e.kind {
                EventKind::Crossing { direction } => {
                    if let Some(c) = self.counters.iter().position(|c| *c == e.rule) {
                        *bin.volumes.entry((c, *direction, e.class)).or_insert(0) += 1;
                        if let Some(sp) = e.speed.filter(|s| s.plausible) {
                            bin.speeds.entry((c, e.class)).or_default().push(f64::from(sp.kmh));
                        }
                        if let Some(h) = headway {
                            bin.headways.entry((c, *direction)).or_default().push(h);
                        }
                    }
                }
                EventKind::Movement { to, turn } => {
                    *bin.movements.entry((e.rule.clone(), to.clone(), *turn, e.class)).or_insert(0) += 1;
                }
                EventKind::LoopOn { .. } | EventKind::LoopOff { .. } => {}
                EventKind::ZoneEnter => {
                    if let Some(z) = self.zones.iter().position(|(id, _)| *id == e.rule) {
                        bin.zones[z].entries += 1;
                    }
                }
                EventKind::ZoneExit { dwell } => {
                    if let Some(z) = self.zones.iter().position(|(id, _)| *id == e.rule) {
                        bin.zones[z].dwell_sum += dwell.as_secs_f64();
                        bin.zones[z].dwell_n += 1;
                    }
                }
            }
        }
    }

    /// The camera's rules were reloaded (after its last frame under the old rules): each open bin is
    /// reported now, partial, the rest of it a `rules_changed` gap, and continues one revision higher
    /// under the new rules. Counters and zones that did not change keep their counts; changed and
    /// removed ones (and movements through a changed approach) start again from `at`, so the
    /// continued bin holds, per rule, what the rule as it now stands counted.
    pub fn reconfigure(
        &mut self,
        counters: Vec<Arc<str>>,
        zones: Vec<(Arc<str>, ZoneKind)>,
        changes: &[RuleChange],
        out: &mut Vec<FlowReport>,
    ) {
        let reset = |kind: &str, id: &str| {
            changes.iter().any(|c| c.kind == kind && c.id == id && c.change != ChangeKind::Added)
        };
        let mut states = Vec::new();
        for i in 0..self.series.len() {
            let len = self.series[i].len;
            if let Some(mut bin) = self.series[i].current.take() {
                bin.rule_changes.extend(changes.iter().cloned());
                let report = self.report(bin, len, Some(GapReason::RulesChanged));
                if let Some(st) = report.state.as_deref() {
                    states.push((i, st.clone()));
                }
                out.push(report);
            }
        }
        let old_counters = std::mem::replace(&mut self.counters, counters);
        self.zones = zones;
        // Headways continue on counters that did not change.
        let last: Vec<_> = self.last_crossing.drain().collect();
        for ((c, d), t) in last {
            let name = &old_counters[c];
            if let Some(n) = self.counters.iter().position(|x| x == name)
                && !reset("line", name)
            {
                self.last_crossing.insert((n, d), t);
            }
        }
        for (i, mut st) in states {
            st.volumes.retain(|(c, ..)| !reset("line", c));
            st.speeds.retain(|(c, ..)| !reset("line", c));
            st.headways.retain(|(c, ..)| !reset("line", c));
            st.zones.retain(|(z, _)| !reset("zone", z));
            st.movements.retain(|(from, to, ..)| !reset("approach", from) && !reset("approach", to));
            let mut bin = self.bin_of(&st);
            bin.revision = st.revision + 1;
            self.series[i].current = Some(bin);
        }
    }

    /// Closes every open bin (end of stream, shutdown, a camera restarted after an error): the rest of
    /// each bin is a gap of `rest` in the report, which is partial when that is more than a second.
    /// If the same bin opens again (the camera is back within it), it continues one revision higher.
    pub fn finish(&mut self, rest: GapReason, out: &mut Vec<FlowReport>) {
        for i in 0..self.series.len() {
            if let Some(bin) = self.series[i].current.take() {
                let len = self.series[i].len;
                let report = self.report(bin, len, Some(rest));
                self.series[i].resume = report.state.as_deref().cloned();
                out.push(report);
            }
        }
        self.last_frame = None;
        self.pending = rest;
    }

    /// The report of a bin; `rest`: the bin closes before its end, the rest of it a gap of that reason.
    fn report(&self, bin: Bin, len: Duration, rest: Option<GapReason>) -> FlowReport {
        let state = Arc::new(self.state_of(&bin, len, true));
        let end = bin.start + len;
        let mut gaps = bin.gaps.clone();
        if let Some(reason) = rest
            && secs_between(bin.cursor, end) > PARTIAL_GRACE
        {
            gaps.push((bin.cursor, end, reason));
        }
        let covered = bin.covered;
        let partial = covered + PARTIAL_GRACE < len.as_secs_f64() || !bin.rule_changes.is_empty();
        let hours = if partial { covered.max(1.0) } else { len.as_secs_f64() } / 3600.0;
        let mut flows: BTreeMap<(usize, Direction), u64> = BTreeMap::new();
        let mut pcus: BTreeMap<(usize, Direction), f64> = BTreeMap::new();
        let volumes = bin
            .volumes
            .iter()
            .map(|(&(c, direction, class), &vehicles)| {
                *flows.entry((c, direction)).or_insert(0) += vehicles;
                *pcus.entry((c, direction)).or_insert(0.0) += vehicles as f64 * self.pcu.of(class);
                Volume {
                    counter: self.counters[c].to_string(),
                    direction,
                    class,
                    vehicles,
                    pcu: vehicles as f64 * self.pcu.of(class),
                }
            })
            .collect();
        let flows = flows
            .into_iter()
            .map(|((c, direction), vehicles)| Flow {
                counter: self.counters[c].to_string(),
                direction,
                vehicles,
                veh_per_hour: vehicles as f64 / hours,
                pcu_per_hour: pcus.get(&(c, direction)).copied().unwrap_or(0.0) / hours,
            })
            .collect();
        let speeds = bin
            .speeds
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(&(c, class), v)| SpeedStats {
                counter: self.counters[c].to_string(),
                class,
                vehicles: v.len() as u64,
                mean_kmh: v.iter().sum::<f64>() / v.len() as f64,
                p85_kmh: percentile(v, 0.85),
            })
            .collect();
        let headways = bin
            .headways
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(&(c, direction), v)| HeadwayStats {
                counter: self.counters[c].to_string(),
                direction,
                gaps: v.len() as u64,
                mean_s: v.iter().sum::<f64>() / v.len() as f64,
                min_s: v.iter().copied().fold(f64::INFINITY, f64::min),
            })
            .collect();
        let movements = bin
            .movements
            .iter()
            .map(|((from, to, turn, class), &vehicles)| MovementCount {
                from: from.to_string(),
                to: to.to_string(),
                movement: *turn,
                class: *class,
                vehicles,
                pcu: vehicles as f64 * self.pcu.of(*class),
            })
            .collect();
        let zones = self
            .zones
            .iter()
            .zip(&bin.zones)
            .map(|((id, kind), acc)| ZoneStats {
                zone: id.to_string(),
                kind: *kind,
                entries: acc.entries,
                mean_vehicles: if covered > 0.0 { acc.vehicle_seconds / covered } else { 0.0 },
                max_vehicles: acc.max_vehicles,
                occupied_share: if covered > 0.0 { (acc.occupied_seconds / covered).min(1.0) } else { 0.0 },
                mean_dwell_s: (acc.dwell_n > 0).then(|| acc.dwell_sum / acc.dwell_n as f64),
                mean_queue_vehicles: if covered > 0.0 { acc.queued_seconds / covered } else { 0.0 },
                max_queue_vehicles: acc.max_queued,
                mean_queue_m: acc.max_queue_m.map(|_| if covered > 0.0 { acc.queue_m_seconds / covered } else { 0.0 }),
                max_queue_m: acc.max_queue_m,
            })
            .collect();
        let start = humantime::format_rfc3339_seconds(bin.start).to_string();
        let ms = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        FlowReport {
            schema: FLOW_SCHEMA.to_owned(),
            id: state.id.clone(),
            revision: bin.revision,
            site: self.site.clone(),
            camera: self.camera.clone(),
            bin_start: start,
            bin_seconds: len.as_secs(),
            partial,
            covered_seconds: (covered * 1000.0).round() / 1000.0,
            gaps: gaps
                .iter()
                .map(|&(a, b, reason)| Gap {
                    from: ms(a),
                    to: ms(b),
                    seconds: (secs_between(a, b) * 1000.0).round() / 1000.0,
                    reason,
                })
                .collect(),
            frames_analysed: bin.frames_analysed,
            frames_dropped: bin.frames_dropped,
            volumes,
            flows,
            zones,
            speeds,
            headways,
            movements,
            quality: state.quality,
            rule_changes: bin.rule_changes.clone(),
            clock_steps: bin.clock_steps.clone(),
            state: Some(state),
        }
    }
}

/// Nearest-rank percentile (`q` in 0–1) of unsorted values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> SystemTime {
        // 2026-11-26T08:00:00Z
        UNIX_EPOCH + Duration::from_secs(1_795_680_000) + Duration::from_secs_f64(s)
    }

    fn crossing(t: f64, class: VehicleClass, direction: Direction) -> TrafficEvent {
        TrafficEvent {
            rule: "x".into(),
            kind: EventKind::Crossing { direction },
            track: 1,
            class,
            class_share: 1.0,
            pts: Duration::from_secs_f64(t),
            wall: at(t),
            speed: None,
        }
    }

    #[test]
    fn bins_close_on_wall_clock_and_mark_partial() {
        let mut agg = Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        // Frames every 0.5 s from 10 s to 130 s: the first bin starts late (partial), the second is
        // whole, the third is cut short by finish.
        let mut t = 10.0;
        while t <= 130.0 {
            agg.frame(at(t), 0, &[], RuleQuality::default(), &mut out);
            if (t - 30.0).abs() < 1e-9 || (t - 70.0).abs() < 1e-9 || (t - 75.0).abs() < 1e-9 {
                agg.event(&crossing(t, VehicleClass::Car, Direction::In));
            }
            if (t - 80.0).abs() < 1e-9 {
                agg.event(&crossing(t, VehicleClass::Motorcycle, Direction::Out));
            }
            t += 0.5;
        }
        agg.finish(GapReason::NoFrames, &mut out);
        assert_eq!(out.len(), 3);
        assert!(out[0].partial && !out[1].partial && out[2].partial);
        assert_eq!(out[1].bin_start, "2026-11-26T08:01:00Z");
        assert_eq!(out[1].id, "s/c/2026-11-26T08:01:00Z/60");
        assert_eq!(
            out[0].volumes,
            vec![Volume {
                counter: "x".into(),
                direction: Direction::In,
                class: VehicleClass::Car,
                vehicles: 1,
                pcu: 1.0
            }]
        );
        assert_eq!(out[1].volumes.len(), 2);
        assert_eq!(out[1].flows[0].vehicles, 2);
        assert!((out[1].flows[0].veh_per_hour - 120.0).abs() < 1e-9);
        assert_eq!(out[1].frames_analysed, 120);
    }

    fn frames(agg: &mut Aggregator, from: f64, to: f64, out: &mut Vec<FlowReport>) {
        let mut t = from;
        while t <= to + 1e-9 {
            agg.frame(at(t), 0, &[], RuleQuality::default(), out);
            t += 0.5;
        }
    }

    /// A live camera's loop: ticks every half second from `from` to `to` (as the runtime does).
    fn ticks(agg: &mut Aggregator, from: f64, to: f64, out: &mut Vec<FlowReport>) {
        let mut t = from;
        while t <= to + 1e-9 {
            agg.tick(at(t), Duration::from_secs(10), out);
            t += 0.5;
        }
    }

    #[test]
    fn a_lagging_tick_never_undoes_a_mark() {
        // A live camera opened at 30 s (mark: box not running before), its first frame at 33 s: the
        // ticks in between (lagging by a 10 s stall timeout) must not drop or reopen the bin.
        let mut agg = Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        agg.mark(at(30.0), GapReason::CameraRestarting, &mut out);
        ticks(&mut agg, 30.5, 32.5, &mut out);
        frames(&mut agg, 33.0, 50.0, &mut out);
        ticks(&mut agg, 50.5, 75.0, &mut out);
        agg.finish(GapReason::BoxNotRunning, &mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        let r = &out[0];
        assert_eq!((r.revision, r.frames_analysed), (1, 35));
        assert_eq!(
            r.gaps.iter().map(|g| (g.reason, g.seconds)).collect::<Vec<_>>(),
            vec![(GapReason::BoxNotRunning, 30.0), (GapReason::CameraRestarting, 3.0), (GapReason::NoFrames, 10.0)]
        );
    }

    #[test]
    fn a_stall_is_camera_down_from_the_last_frame() {
        // Frames to 20 s; the stream stalls, which the source declares 10 s later (its stall timeout):
        // the stretch from the last frame is the camera down, not "no frames" for its first seconds.
        let mut agg = Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        frames(&mut agg, 0.0, 20.0, &mut out);
        ticks(&mut agg, 20.5, 30.0, &mut out);
        agg.gap_reason(GapReason::CameraDown);
        ticks(&mut agg, 30.5, 75.0, &mut out);
        let r = &out[0];
        assert_eq!(
            r.gaps.iter().map(|g| (g.reason, g.seconds)).collect::<Vec<_>>(),
            vec![(GapReason::CameraDown, 40.0)]
        );
    }

    #[test]
    fn coverage_and_gaps_say_why_frames_are_missing() {
        let mut agg = Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        // Box starts at 5 s; frames to 20 s; the stream fails; reopened at 100 s; frames from 110 s.
        frames(&mut agg, 5.0, 20.0, &mut out);
        agg.gap_reason(GapReason::CameraDown);
        // While the camera is down the wall clock closes its bins: 08:01 has no frame at all.
        agg.tick(at(100.0), Duration::ZERO, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        agg.mark(at(100.0), GapReason::CameraRestarting, &mut out);
        frames(&mut agg, 110.0, 130.0, &mut out);
        agg.tick(at(300.0), Duration::ZERO, &mut out);
        agg.finish(GapReason::BoxNotRunning, &mut out);
        let r0 = &out[0];
        assert!(r0.partial);
        assert!((r0.covered_seconds - 15.0).abs() < 1e-6, "{r0:?}");
        let reasons: Vec<_> = r0.gaps.iter().map(|g| (g.reason, g.seconds)).collect();
        assert_eq!(reasons, vec![(GapReason::BoxNotRunning, 5.0), (GapReason::CameraDown, 40.0)]);
        let r1 = &out[1];
        assert_eq!(r1.bin_start, "2026-11-26T08:01:00Z");
        let reasons: Vec<_> = r1.gaps.iter().map(|g| (g.reason, g.seconds)).collect();
        assert_eq!(reasons, vec![(GapReason::CameraDown, 40.0), (GapReason::CameraRestarting, 10.0)]);
        assert!((r1.covered_seconds - 10.0).abs() < 1e-6, "{r1:?}");
        let r2 = &out[2];
        assert_eq!(
            r2.gaps.iter().map(|g| (g.reason, g.seconds)).collect::<Vec<_>>(),
            vec![(GapReason::NoFrames, 50.0)]
        );
        // 08:03 and 08:04 (the camera silent, the box running): no frames at all, still reported.
        for r in &out[3..5] {
            assert_eq!((r.frames_analysed, r.covered_seconds, r.partial), (0, 0.0, true), "{r:?}");
            assert_eq!(
                r.gaps.iter().map(|g| (g.reason, g.seconds)).collect::<Vec<_>>(),
                vec![(GapReason::NoFrames, 60.0)]
            );
        }
        // The box stops at 300 s: the open bin says so.
        assert_eq!(out.len(), 6, "{out:#?}");
        assert_eq!(out[5].gaps.last().map(|g| g.reason), Some(GapReason::BoxNotRunning));
    }

    #[test]
    fn a_bin_reported_at_shutdown_continues_one_revision_higher() {
        let new = || Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        let mut first = new();
        frames(&mut first, 0.0, 20.0, &mut out);
        first.event(&crossing(10.0, VehicleClass::Car, Direction::In));
        first.finish(GapReason::BoxNotRunning, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].revision, out[0].frames_analysed), (1, 41));
        let state = out[0].state.as_deref().cloned().unwrap();
        // A restart 10 s later: the same bin, everything of both runs, revision 2.
        let mut second = new();
        second.resume(vec![state.clone()]);
        frames(&mut second, 30.0, 50.0, &mut out);
        second.event(&crossing(40.0, VehicleClass::Motorcycle, Direction::In));
        second.finish(GapReason::BoxNotRunning, &mut out);
        let r = &out[1];
        assert_eq!((r.id.as_str(), r.revision, r.frames_analysed), (out[0].id.as_str(), 2, 82));
        assert!((r.covered_seconds - 40.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.volumes.iter().map(|v| v.vehicles).sum::<u64>(), 2);
        assert!(r.gaps.iter().any(|g| g.reason == GapReason::BoxNotRunning && (g.seconds - 10.0).abs() < 1e-6));
        // A replay from an earlier time does not continue it (nothing is counted twice), nor does it
        // add to a checkpointed open bin.
        let mut ckpt = new();
        let mut open = new();
        frames(&mut open, 0.0, 20.0, &mut out);
        ckpt.resume(open.checkpoint());
        frames(&mut ckpt, 0.0, 20.0, &mut out);
        ckpt.finish(GapReason::NoFrames, &mut out);
        assert_eq!(out.pop().map(|r| r.frames_analysed), Some(41));
        let mut replay = new();
        replay.resume(vec![state]);
        frames(&mut replay, 0.0, 20.0, &mut out);
        replay.finish(GapReason::NoFrames, &mut out);
        assert_eq!((out[2].revision, out[2].frames_analysed), (1, 41));
    }

    #[test]
    fn a_checkpoint_restores_the_open_bin_after_a_crash() {
        let new = || Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        let mut first = new();
        frames(&mut first, 0.0, 20.0, &mut out);
        first.event(&crossing(10.0, VehicleClass::Car, Direction::In));
        let saved = first.checkpoint();
        frames(&mut first, 20.5, 25.0, &mut out); // lost with the crash
        assert!(out.is_empty());
        let mut second = new();
        second.resume(saved);
        frames(&mut second, 30.0, 60.0, &mut out);
        let r = &out[0];
        assert_eq!((r.revision, r.frames_analysed), (1, 41 + 60));
        assert_eq!(r.volumes.len(), 1);
        assert_eq!(r.gaps.iter().map(|g| g.reason).collect::<Vec<_>>(), vec![GapReason::BoxNotRunning]);
    }

    #[test]
    fn zone_occupancy_is_time_weighted() {
        let mut agg =
            Aggregator::new("s", "c", vec![], vec![("z".into(), ZoneKind::Queue)], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        // 0–10 s: 2 vehicles; 10–20 s: none; frames each second.
        for i in 0..=20 {
            let n = if i <= 10 { 2 } else { 0 };
            let z = ZoneNow { vehicles: n, ..ZoneNow::default() };
            agg.frame(at(i as f64), 0, &[z], RuleQuality::default(), &mut out);
        }
        agg.finish(GapReason::NoFrames, &mut out);
        let z = &out[0].zones[0];
        assert_eq!(z.max_vehicles, 2);
        assert!((z.occupied_share - 0.5).abs() < 1e-9, "{z:?}");
        assert!((z.mean_vehicles - 1.0).abs() < 1e-9, "{z:?}");
    }

    /// A reload at 20 s: the bin is reported then (revision 1, partial, rules_changed to its end) and
    /// goes on at revision 2; the unchanged counter keeps its counts, the changed one starts again.
    #[test]
    fn reconfigure_closes_and_continues_the_bin() {
        let counters: Vec<Arc<str>> = vec!["x".into(), "y".into()];
        let mut agg = Aggregator::new("s", "c", counters.clone(), vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        let on = |rule: &str, t: f64| TrafficEvent {
            rule: rule.into(),
            ..crossing(t, VehicleClass::Motorcycle, Direction::In)
        };
        for k in 0..=200 {
            let t = f64::from(k) * 0.1;
            agg.frame(at(t), 0, &[], RuleQuality::default(), &mut out);
            if k == 50 || k == 150 {
                agg.event(&on("x", t));
                agg.event(&on("y", t));
            }
        }
        let change = RuleChange {
            at: humantime::format_rfc3339_millis(at(20.0)).to_string(),
            kind: "line".into(),
            id: "y".into(),
            change: ChangeKind::Changed,
        };
        agg.reconfigure(counters, vec![], std::slice::from_ref(&change), &mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!((r.revision, r.partial), (1, true));
        assert_eq!(r.gaps.last().map(|g| (g.reason, g.seconds)), Some((GapReason::RulesChanged, 40.0)));
        assert_eq!(
            r.volumes.iter().map(|v| (v.counter.as_str(), v.vehicles)).collect::<Vec<_>>(),
            vec![("x", 2), ("y", 2)]
        );
        for k in 201..=620 {
            let t = f64::from(k) * 0.1;
            agg.frame(at(t), 0, &[], RuleQuality::default(), &mut out);
            if k == 300 {
                agg.event(&on("x", t));
                agg.event(&on("y", t));
            }
        }
        let r = &out[1];
        assert_eq!(r.revision, 2);
        assert!((r.covered_seconds - 60.0).abs() < 1e-6, "coverage goes on over the reload: {r:?}");
        assert_eq!(
            r.volumes.iter().map(|v| (v.counter.as_str(), v.vehicles)).collect::<Vec<_>>(),
            vec![("x", 3), ("y", 1)]
        );
        assert_eq!((r.partial, r.rule_changes.clone()), (true, vec![change]));
        // The next bin knows nothing of it.
        agg.finish(GapReason::NoFrames, &mut out);
        assert!(out[2].rule_changes.is_empty());
    }
}
