//! The box's time line. Bins and events are named by the wall clock (UTC), but a box's wall clock
//! jumps: after a boot without a real-time clock, on NTP's first sync, by hand, from a misconfigured
//! time server. Taken as it comes, a step back reopens bins already counted and a step forward looks
//! like a dead camera. So durations come from the monotonic clock, and the wall clock only names them:
//!
//! - The time line follows the wall clock while the two advance together.
//! - **Forward step**: the time line jumps with the wall clock; the skipped stretch had no frames (the
//!   bins call it a `clock_step` gap, not a camera fault).
//! - **Backward step**: the time line never runs back; it runs at half the monotonic rate until the
//!   wall clock catches up (a 10 s step is absorbed in 20 s), so no bin is opened twice and no crossing
//!   leaves the bin it was counted in. Such a bin holds more real time than its length (its report
//!   notes the step).
//! - After a restart the time line starts no earlier than what the store already covers
//!   ([`Timeline::floor`]): a box booted with its clock behind runs on from there, at half speed,
//!   until NTP steps the wall clock past it.
//!
//! Every step (the wall clock's own jump against the monotonic clock, beyond [`STEP`]) is kept as a
//! [`ClockStep`]; the runtime notes it in every live camera's open bins.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A jump of the wall clock against the monotonic clock counted as a step (NTP slews smaller
/// corrections, at most 0.5 ms per second; chrony and ntpd step from 0.128–1 s).
pub const STEP: Duration = Duration::from_secs(1);

/// Steps kept for cameras to note (each camera reads those it has not seen; older ones are dropped).
const KEPT: usize = 64;

/// One step of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockStep {
    /// The time line when it was seen (UTC).
    pub at: SystemTime,
    /// The wall clock's jump, seconds: positive forward, negative back.
    pub seconds: f64,
}

#[derive(Debug)]
struct State {
    /// The time line, and the wall and monotonic clocks, at the last reading.
    t: SystemTime,
    wall: SystemTime,
    mono: Instant,
    steps: Vec<ClockStep>,
    /// Steps seen since the start (those before `steps[0]` were dropped).
    count: u64,
}

impl State {
    /// Keeps a step for the cameras to note (the last [`KEPT`]).
    fn record(&mut self, step: ClockStep) {
        self.steps.push(step);
        if self.steps.len() > KEPT {
            self.steps.remove(0);
        }
        self.count += 1;
    }
}

/// The process's time line ([`timeline`]); an instance of its own for tests.
#[derive(Debug, Default)]
pub struct Timeline {
    state: Mutex<Option<State>>,
}

/// Signed seconds from `a` to `b`.
fn signed(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl Timeline {
    pub const fn new() -> Self {
        Self { state: Mutex::new(None) }
    }

    /// The time line now. Both clocks are read under the lock: a thread held up between reading and
    /// locking would otherwise bring an older reading after a newer one (a false step back).
    pub fn now(&self) -> SystemTime {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::advance(&mut guard, SystemTime::now(), Instant::now())
    }

    /// The time line for a reading of the wall clock `wall` and the monotonic clock `mono`.
    pub fn at(&self, wall: SystemTime, mono: Instant) -> SystemTime {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::advance(&mut guard, wall, mono)
    }

    fn advance(guard: &mut Option<State>, wall: SystemTime, mono: Instant) -> SystemTime {
        let Some(s) = guard.as_mut() else {
            *guard = Some(State { t: wall, wall, mono, steps: Vec::new(), count: 0 });
            return wall;
        };
        let dt = mono.saturating_duration_since(s.mono);
        let jump = signed(s.wall, wall) - dt.as_secs_f64();
        if jump.abs() > STEP.as_secs_f64() {
            s.record(ClockStep { at: s.t + dt, seconds: jump });
            tracing::warn!(seconds = jump, "the wall clock stepped; the time line absorbs it");
        }
        // Following the wall clock, never slower than half the monotonic rate, never back.
        let t = wall.max(s.t + dt / 2);
        s.t = t;
        s.wall = wall;
        s.mono = mono;
        t
    }

    /// Starts the time line no earlier than `t` (what the store already covers), when it is ahead of
    /// the wall clock: noted as a step back of the difference.
    pub fn floor(&self, t: SystemTime) {
        let now = self.now();
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = guard.as_mut()
            && t > s.t + STEP
        {
            s.record(ClockStep { at: t, seconds: signed(t, now) });
            tracing::warn!(
                behind_s = signed(now, t),
                "the wall clock is behind what the store covers; the time line starts there"
            );
            s.t = t;
        }
    }

    /// The steps after the first `seen` (a reader's count, updated).
    pub fn steps_since(&self, seen: &mut u64) -> Vec<ClockStep> {
        let guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(s) = guard.as_ref() else { return Vec::new() };
        let first = s.count - s.steps.len() as u64;
        let skip = seen.saturating_sub(first) as usize;
        *seen = s.count;
        s.steps.iter().skip(skip).copied().collect()
    }
}

static TIMELINE: Timeline = Timeline::new();

/// The process's time line: live cameras' frames, their bins and the runtime's ticks.
pub fn timeline() -> &'static Timeline {
    &TIMELINE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Reads the time line every 0.1 s of monotonic time, with the wall clock offset by `offset(i)`
    /// seconds at reading `i`; the time line's readings, seconds after the first.
    fn run(n: usize, offset: impl Fn(usize) -> f64) -> (Timeline, Vec<f64>) {
        let tl = Timeline::new();
        let (wall0, mono0) = (SystemTime::UNIX_EPOCH + secs(1_800_000_000.0), Instant::now());
        let out = (0..n)
            .map(|i| {
                let real = i as f64 * 0.1;
                let wall = if real + offset(i) >= 0.0 { wall0 + secs(real + offset(i)) } else { wall0 };
                signed(wall0, tl.at(wall, mono0 + secs(real)))
            })
            .collect();
        (tl, out)
    }

    #[test]
    fn a_step_back_is_absorbed_at_half_speed_and_never_runs_back() {
        // 10 s back at 20 s.
        let (tl, t) = run(600, |i| if i >= 200 { -10.0 } else { 0.0 });
        assert!(t.windows(2).all(|w| w[1] >= w[0]), "never back");
        assert!((t[199] - 19.9).abs() < 1e-6);
        // Half speed from the step until the wall clock catches up, 20 s later (reading 399).
        assert!((t[300] - (19.9 + 101.0 * 0.05)).abs() < 1e-6, "{}", t[300]);
        assert!((t[420] - (42.0 - 10.0)).abs() < 1e-6, "back on the wall clock: {}", t[420]);
        let steps = tl.steps_since(&mut 0);
        assert_eq!(steps.len(), 1);
        assert!((steps[0].seconds + 10.0).abs() < 1e-6);
    }

    #[test]
    fn a_step_forward_jumps_and_is_noted_once() {
        let (tl, t) = run(300, |i| if i >= 100 { 90.0 } else { 0.0 });
        assert!((t[100] - t[99] - 90.1).abs() < 1e-6, "the jump: {} → {}", t[99], t[100]);
        assert!((t[299] - (29.9 + 90.0)).abs() < 1e-6);
        let mut seen = 0;
        let steps = tl.steps_since(&mut seen);
        assert_eq!((steps.len(), seen), (1, 1));
        assert!((steps[0].seconds - 90.0).abs() < 1e-6);
        assert!(tl.steps_since(&mut seen).is_empty(), "each reader sees a step once");
    }

    #[test]
    fn small_corrections_are_not_steps() {
        // NTP slewing (0.5 ms/s) and a 0.5 s adjustment.
        let (tl, t) = run(400, |i| i as f64 * 0.00005 + if i >= 200 { -0.5 } else { 0.0 });
        assert!(tl.steps_since(&mut 0).is_empty());
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn the_store_floors_a_restarted_time_line() {
        let tl = Timeline::new();
        let now = tl.now();
        tl.floor(now + secs(30.0));
        let t = tl.now();
        assert!(signed(now, t) >= 30.0, "starts where the store is");
        let steps = tl.steps_since(&mut 0);
        assert_eq!(steps.len(), 1);
        assert!(steps[0].seconds < -29.0);
    }
}
