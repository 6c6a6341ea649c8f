//! Which of a round's due frames the detector runs on when they would not all fit before the next
//! frames arrive (more cameras than the box can analyse).
//!
//! A round of the analysis loop takes one frame from each camera that has one, detects on the due
//! ones in one batch, then tracks every frame. A live camera (`on_inference_busy = "keep_latest"`)
//! holds two frames ([`crate::source::KEEP_LATEST_FRAMES`]): one round that overruns delays a frame
//! by a period, but rounds that keep overrunning drop frames, so a round must end within the
//! shortest frame period of the live cameras. The budget: [`HEADROOM`] of that period, less the round's time outside
//! inference (both smoothed from measurement). When the due frames' inference would overrun it, the
//! frames go in order of [`Priority`], and within one priority the camera that waited longest since
//! its last detection first; the rest are deferred: tracked by prediction this round, and due on the
//! camera's next frame (its cadence frame moves one frame on). Dropping frames arbitrarily becomes
//! deferring detection by need, and every camera gets its turn.
//!
//! A frame of a camera that holds its decoder (`block`, files) is never deferred: nothing of it is
//! dropped, so deferring would only lose detections. Without an estimate yet (the first rounds),
//! nothing is deferred.

use std::collections::VecDeque;
use std::time::Duration;

use crate::detect::ImageView;
use crate::geometry::Plan;
use crate::motion::{Decision, Gate, MotionParams, Signals};

/// Share of the shortest live frame period a round may use: the rest absorbs jitter, the decoders'
/// and the outputs thread's share of the cores.
pub const HEADROOM: f64 = 0.95;

/// Weight of the newest measurement in the smoothed costs.
const SMOOTHING: f64 = 0.2;

/// Inference is planned at its smoothed cost plus this many smoothed deviations: the time of one
/// run varies by a third from round to round on a busy box (the decoders share the cores), and an
/// overrun drops frames where a deferral only delays a detection.
const DEVIATIONS: f64 = 1.0;

/// The frame period of a live camera before two of its frames were seen and when its caps do not
/// say: 25 frames/s, the common camera rate (a shorter guess defers more, never drops more).
pub const DEFAULT_PERIOD: Duration = Duration::from_millis(40);

/// Why a due frame is detected on, most pressing first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// A new track awaits confirmation, the scene moved after a still spell, or the camera has gone
    /// `max_skip_s` without a detection: a count may hang on it.
    Urgent,
    /// The picture near the camera's rules changed since the model last looked.
    Motion,
    /// A confirmed track moves (the tracker could predict it a frame longer).
    Moving,
    /// The cadence alone (motion gating off, nothing moving).
    Routine,
}

/// The priority of a frame the motion policy decided `d` on ([`crate::motion::Gate::decide`]).
pub fn priority(d: Decision, s: &Signals, p: &MotionParams) -> Priority {
    if d == Decision::Urgent || s.tentative || s.since_detection.is_none_or(|w| w.as_secs_f64() >= p.max_skip_s) {
        Priority::Urgent
    } else if p.enabled && s.changed >= p.min_blocks {
        Priority::Motion
    } else if s.track_moving {
        Priority::Moving
    } else {
        Priority::Routine
    }
}

/// One due frame of a round.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub priority: Priority,
    /// Stream time since the camera's last detection (`None`: never detected, goes first).
    pub waited: Option<Duration>,
    /// Model input pixels of the frame (every tile), what its inference costs.
    pub pixels: u64,
    /// A frame of a `keep_latest` camera: may be deferred.
    pub deferrable: bool,
}

/// The smoothed costs a round is planned with.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Seconds of inference per model input pixel, and its mean absolute deviation.
    per_pixel_s: Option<f64>,
    deviation_s: f64,
    /// Seconds of a round outside inference once its frames are in (motion measure, tracking, rules,
    /// handing to the outputs; not the wait for frames).
    overhead_s: f64,
}

impl Budget {
    /// One batch of `pixels` input pixels took `elapsed` of inference.
    pub fn observe_inference(&mut self, pixels: u64, elapsed: Duration) {
        if pixels == 0 {
            return;
        }
        let s = elapsed.as_secs_f64() / pixels as f64;
        match self.per_pixel_s {
            None => self.per_pixel_s = Some(s),
            Some(p) => {
                self.deviation_s += SMOOTHING * ((s - p).abs() - self.deviation_s);
                self.per_pixel_s = Some(p + SMOOTHING * (s - p));
            }
        }
    }

    /// A round's work outside inference took `elapsed`.
    pub fn observe_overhead(&mut self, elapsed: Duration) {
        self.overhead_s += SMOOTHING * (elapsed.as_secs_f64() - self.overhead_s);
    }

    /// Seconds per input pixel inference is planned with: the smoothed cost and its spread.
    fn planned_per_pixel_s(&self) -> Option<f64> {
        self.per_pixel_s.map(|p| p + DEVIATIONS * self.deviation_s)
    }

    /// The candidates to detect on this round, as indexes into `cands`, in the order chosen; the
    /// rest are deferred. `period`: the shortest frame period of the round's live cameras (`None`:
    /// no live camera, nothing is deferred). Every frame that cannot wait, and at least the most
    /// pressing live frame, are always chosen.
    pub fn choose(&self, cands: &[Candidate], period: Option<Duration>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..cands.len()).collect();
        let (Some(period), Some(per_pixel)) = (period, self.planned_per_pixel_s()) else { return order };
        let budget = HEADROOM * period.as_secs_f64() - self.overhead_s;
        let total: f64 = cands.iter().map(|c| per_pixel * c.pixels as f64).sum();
        if total <= budget {
            return order;
        }
        // Frames that cannot wait first, then by priority, then the longest wait (never detected
        // counts as longest).
        order.sort_by_key(|&k| {
            let c = &cands[k];
            (c.deferrable, c.priority, std::cmp::Reverse(c.waited.unwrap_or(Duration::MAX)))
        });
        let mut spent = 0.0;
        let mut chosen = Vec::with_capacity(order.len());
        let mut live_taken = false;
        for k in order {
            let c = &cands[k];
            let cost = per_pixel * c.pixels as f64;
            // The most pressing live frame always goes: cameras that cannot wait never take the
            // whole round from the live ones.
            if !c.deferrable || !live_taken || spent + cost <= budget {
                spent += cost;
                live_taken |= c.deferrable;
                chosen.push(k);
            }
        }
        chosen
    }
}

/// Gaps between a camera's frames its period is taken from.
const PERIOD_GAPS: usize = 9;

/// One camera's side of the schedule: its motion gate, its frame period, and the priority its next
/// frame is owed after a deferral. Times are the stream's (`pts`); nothing here reads a clock.
#[derive(Debug, Default)]
pub struct CameraSchedule {
    /// Whether its frames are worth detecting on ([`crate::motion`]).
    gate: Gate,
    /// Stream time between its frames, from `gaps` (`None`: fewer than two frames yet). The
    /// detection budget keeps a round within the shortest of the live cameras'.
    period: Option<Duration>,
    /// The last frame's stream time.
    last_pts: Option<Duration>,
    /// The newest gaps between its frames (stream time, per frame).
    gaps: VecDeque<Duration>,
    /// The priority of its due frame deferred last round: the next frame keeps it if higher.
    owed: Option<Priority>,
}

impl CameraSchedule {
    /// A frame at stream time `pts`, `dropped` frames after the one before: the period is the stream
    /// time since the last frame over the frames in between, and of the newest [`PERIOD_GAPS`] the
    /// second shortest: a variable-rate camera's short gaps bound the round (a longer guess overruns
    /// them), one stray early frame does not.
    pub fn frame(&mut self, pts: Duration, dropped: u64) {
        if let Some(last) = self.last_pts
            && let Some(dt) = pts.checked_sub(last)
        {
            let dt = (dt / (1 + dropped).min(1000) as u32).clamp(Duration::from_millis(1), Duration::from_secs(10));
            if self.gaps.len() == PERIOD_GAPS {
                self.gaps.pop_front();
            }
            self.gaps.push_back(dt);
            let mut sorted: Vec<Duration> = self.gaps.iter().copied().collect();
            sorted.sort_unstable();
            self.period = sorted.get(usize::from(sorted.len() >= 3)).copied();
        }
        self.last_pts = Some(pts);
    }

    /// Blocks of the picture near the rules (model-input pixels of `plan`) that changed since the
    /// model last looked, by more than `threshold` grey levels; `rules` gives the rules' box (frame
    /// pixels) when the mask must be made again.
    pub fn changed(
        &mut self,
        image: &ImageView<'_>,
        plan: &Plan,
        rules: impl FnOnce() -> Option<[f32; 4]>,
        threshold: u8,
    ) -> u32 {
        self.gate.meter.measure(image, plan, rules);
        self.gate.meter.changed(threshold)
    }

    /// The motion policy's decision for the frame the signals describe ([`Gate::decide`]).
    pub fn decide(&mut self, p: &MotionParams, signals: Signals) -> Decision {
        self.gate.decide(p, signals)
    }

    /// Stream time from the last detection to `pts` (`None`: none yet on this stream).
    pub fn since_detection(&self, pts: Duration) -> Option<Duration> {
        self.gate.since_detection(pts)
    }

    /// The frame at `pts` was detected on.
    pub fn detected(&mut self, pts: Duration) {
        self.gate.detected(pts);
    }

    /// The rules moved: the motion mask is made again on the next frame.
    pub fn rules_changed(&mut self) {
        self.gate.meter.rules_changed();
    }

    /// Stream time between frames, once two were seen.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// The priority owed from a deferral last round, taken (the next round owes nothing unless this
    /// frame is deferred too).
    pub fn take_owed(&mut self) -> Option<Priority> {
        self.owed.take()
    }

    /// Its due frame was deferred at `priority`: the next frame is on the cadence in its place, and
    /// at least as pressing.
    pub fn deferred(&mut self, priority: Priority) {
        self.gate.deferred();
        self.owed = Some(priority);
    }

    /// A new stream: its timestamps start again, so waits and gaps from the old one would read as
    /// none waited (it would lose every tie for detection) or as a jump. The period is kept until
    /// the new stream's frames give one.
    pub fn restart(&mut self) {
        self.gate = Gate::default();
        self.gaps.clear();
        self.last_pts = None;
        self.owed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(priority: Priority, waited_ms: Option<u64>) -> Candidate {
        Candidate { priority, waited: waited_ms.map(Duration::from_millis), pixels: 100_000, deferrable: true }
    }

    /// A budget where one 100 000-pixel frame costs 10 ms and a round's overhead is 10 ms.
    fn budget() -> Budget {
        let mut b = Budget::default();
        b.observe_inference(1_000_000, Duration::from_millis(100));
        b.observe_overhead(Duration::from_millis(50));
        assert!((b.overhead_s - 0.010).abs() < 1e-9);
        b
    }

    #[test]
    fn everything_fits_or_no_estimate_or_no_live_camera_defers_nothing() {
        let b = budget();
        let period = Some(Duration::from_millis(100));
        // 0.95 × 100 ms − 10 ms = 85 ms: eight frames of 10 ms fit.
        let eight = vec![cand(Priority::Routine, Some(100)); 8];
        assert_eq!(b.choose(&eight, period).len(), 8);
        let nine = vec![cand(Priority::Routine, Some(100)); 9];
        assert_eq!(b.choose(&nine, period).len(), 8);
        let many = vec![cand(Priority::Routine, Some(100)); 12];
        assert_eq!(Budget::default().choose(&many, period).len(), 12, "no estimate yet");
        assert_eq!(b.choose(&many, None).len(), 12, "no live camera");
    }

    #[test]
    fn over_budget_the_most_pressing_and_longest_waiting_go_first() {
        let b = budget();
        let mut cands = vec![cand(Priority::Routine, Some(2000)); 6];
        cands.push(cand(Priority::Motion, Some(100)));
        cands.push(cand(Priority::Urgent, Some(100)));
        cands.push(cand(Priority::Moving, Some(300)));
        cands.push(cand(Priority::Moving, Some(900)));
        cands.push(cand(Priority::Moving, None));
        let chosen = b.choose(&cands, Some(Duration::from_millis(100)));
        // Eight of eleven fit: urgent, motion, the three moving (never detected, 900, 300 ms), then
        // three of the six routine frames.
        assert_eq!(chosen[..5], [7, 6, 10, 9, 8]);
        assert_eq!(chosen.len(), 8);
        assert!(chosen[5..].iter().all(|&k| k < 6));
    }

    #[test]
    fn frames_that_cannot_wait_are_always_taken_and_one_live_frame_always_is() {
        let b = budget();
        let mut cands = vec![cand(Priority::Routine, Some(100)); 10];
        for c in &mut cands[..9] {
            c.deferrable = false;
        }
        // The nine blocking frames (90 ms) overrun the 85 ms budget alone: the most pressing live
        // frame still goes, the other waits.
        cands.push(cand(Priority::Urgent, Some(100)));
        assert_eq!(b.choose(&cands, Some(Duration::from_millis(100))), [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]);
        // A period shorter than the overhead leaves no budget: the most pressing frame still goes.
        let two = [cand(Priority::Routine, Some(100)), cand(Priority::Urgent, Some(100))];
        assert_eq!(b.choose(&two, Some(Duration::from_millis(5))), [1]);
    }

    #[test]
    fn deferred_cameras_take_turns() {
        // Four cameras of equal priority, budget for two a round: a deferred camera has waited
        // longer the next round and goes first, so each is detected every other round.
        let b = budget();
        let period = Some(Duration::from_millis(40)); // 0.95 × 40 − 10 = 28 ms: two frames.
        let mut waited = [0u64; 4];
        let mut detections = [0; 4];
        for _ in 0..10 {
            waited.iter_mut().for_each(|w| *w += 100);
            let cands: Vec<_> = waited.iter().map(|w| cand(Priority::Motion, Some(*w))).collect();
            for k in b.choose(&cands, period) {
                detections[k] += 1;
                waited[k] = 0;
            }
        }
        assert_eq!(detections, [5; 4]);
    }

    #[test]
    fn a_cost_that_varies_is_planned_above_its_mean() {
        // One frame took 10 ms, then 20 ms: smoothed 12 ms, deviation 2 ms, planned at 14 ms, so
        // six frames fit 85 ms where seven of 12 ms would.
        let mut b = budget();
        b.observe_inference(100_000, Duration::from_millis(20));
        let seven = vec![cand(Priority::Routine, Some(100)); 7];
        assert_eq!(b.choose(&seven, Some(Duration::from_millis(100))).len(), 6);
    }

    #[test]
    fn a_camera_period_is_the_second_shortest_of_its_newest_gaps() {
        let ms = Duration::from_millis;
        let mut c = CameraSchedule::default();
        c.frame(ms(1000), 0);
        assert_eq!(c.period(), None, "one frame gives no period");
        c.frame(ms(1040), 0);
        assert_eq!(c.period(), Some(ms(40)));
        // One stray early frame (10 ms) sets the period only while fewer than three gaps are known.
        c.frame(ms(1050), 0);
        assert_eq!(c.period(), Some(ms(10)), "two gaps: the shorter");
        c.frame(ms(1090), 0);
        assert_eq!(c.period(), Some(ms(40)), "gaps 40, 10, 40: the second shortest");
        // A gap over dropped frames counts per frame.
        let mut d = CameraSchedule::default();
        d.frame(ms(0), 0);
        d.frame(ms(120), 2);
        assert_eq!(d.period(), Some(ms(40)));
        // Nine gaps at most: the old ones age out.
        for k in 1..=20 {
            d.frame(ms(120 + 100 * k), 0);
        }
        assert_eq!(d.period(), Some(ms(100)));
    }

    #[test]
    fn a_deferral_is_owed_once_and_a_restart_forgets_the_old_stream() {
        let ms = Duration::from_millis;
        let mut c = CameraSchedule::default();
        c.frame(ms(0), 0);
        c.frame(ms(40), 0);
        c.deferred(Priority::Motion);
        assert_eq!(c.take_owed(), Some(Priority::Motion));
        assert_eq!(c.take_owed(), None, "taken once");
        c.detected(ms(40));
        assert_eq!(c.since_detection(ms(100)), Some(ms(60)));
        c.deferred(Priority::Urgent);
        c.restart();
        assert_eq!(c.take_owed(), None);
        assert_eq!(c.since_detection(ms(80)), None, "waits of the old stream are gone");
        assert_eq!(c.period(), Some(ms(40)), "kept until the new stream gives one");
        c.frame(ms(5), 0);
        assert_eq!(c.period(), Some(ms(40)), "a new stream's first frame is no gap");
    }
}
