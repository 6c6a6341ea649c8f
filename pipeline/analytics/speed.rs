//! Ground speed of a track: the least-squares slope of its anchor's ground position (metres) against
//! stream time (PTS seconds) over the last `window_s` seconds. A regression over a window, not the
//! difference of two frames, so box jitter of a few pixels averages out and variable frame rates
//! need no special case.

use std::collections::VecDeque;

use crate::geometry::GroundPoint;

/// A speed estimate, km/h, and whether it is plausible for a road vehicle (implausible ones come
/// from ID switches or boxes jumping between vehicles: flagged and counted, never averaged in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub kmh: f32,
    pub plausible: bool,
}

/// Samples of one track.
#[derive(Debug, Clone, Default)]
pub struct SpeedTrack {
    samples: VecDeque<(f64, GroundPoint)>,
}

impl SpeedTrack {
    /// Adds the anchor's ground position at `t` (PTS seconds) and drops samples older than the window.
    pub fn push(&mut self, t: f64, p: GroundPoint, window_s: f64) {
        self.samples.push_back((t, p));
        while self.samples.front().is_some_and(|(t0, _)| t - t0 > window_s) {
            self.samples.pop_front();
        }
    }

    /// The speed over the window, once it holds 3 samples spanning at least half the window.
    pub fn speed(&self, window_s: f64, max_kmh: f32) -> Option<Speed> {
        let n = self.samples.len();
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if n < 3 || last.0 - first.0 < 0.5 * window_s {
            return None;
        }
        let nf = n as f64;
        let tm = self.samples.iter().map(|s| s.0).sum::<f64>() / nf;
        let xm = self.samples.iter().map(|s| s.1.x).sum::<f64>() / nf;
        let ym = self.samples.iter().map(|s| s.1.y).sum::<f64>() / nf;
        let (mut stt, mut stx, mut sty) = (0.0, 0.0, 0.0);
        for (t, p) in &self.samples {
            let dt = t - tm;
            stt += dt * dt;
            stx += dt * (p.x - xm);
            sty += dt * (p.y - ym);
        }
        if stt <= 0.0 {
            return None;
        }
        // m/s → km/h.
        let kmh = ((stx / stt).hypot(sty / stt) * 3.6) as f32;
        Some(Speed { kmh, plausible: kmh.is_finite() && kmh <= max_kmh })
    }
}
