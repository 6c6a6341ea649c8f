//! Checkpoints: each camera's open bins are written to the store every `store.checkpoint` (what a
//! crash or a power cut can lose at most), through the outputs thread like everything else.

use super::*;

/// When a camera's open bins are next checkpointed, on the box's monotonic clock. Time is passed in,
/// so the cadence is tested without a stream.
#[derive(Debug)]
pub(super) struct Checkpoints {
    every: Duration,
    last: Instant,
}

impl Checkpoints {
    pub(super) fn new(every: Duration, now: Instant) -> Self {
        Self { every, last: now }
    }

    /// Whether one is due at `now`; a due one is taken (the next is `every` after `now`).
    pub(super) fn take_due(&mut self, now: Instant) -> bool {
        let due = now.saturating_duration_since(self.last) >= self.every;
        if due {
            self.last = now;
        }
        due
    }
}

/// Sends the camera's open bins to the store when its checkpoint is due at `now`.
pub(super) fn checkpoint_if_due(out: &Outputs, cam: &mut Camera, now: Instant) {
    if !cam.checkpoints.take_due(now) {
        return;
    }
    out.checkpoint(cam.id(), cam.pipe.checkpoint());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_every_period_and_taken_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Checkpoints::new(s(10), t0);
        assert!(!c.take_due(t0 + s(9)));
        assert!(c.take_due(t0 + s(10)));
        assert!(!c.take_due(t0 + s(10)), "taken once");
        assert!(!c.take_due(t0 + s(19)), "the next is counted from the last one");
        assert!(c.take_due(t0 + s(25)));
        assert!(!c.take_due(t0), "a clock before the last one is not a checkpoint due");
    }
}
