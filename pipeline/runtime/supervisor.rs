//! The supervisor: a camera's fault (an error or a panic in its stream, its frame size, its
//! inference or its rules) closes its open bins as partial and restarts it alone with backoff; a file
//! camera ends. The other cameras are not touched.

use super::*;

/// Runs one camera's step, turning its panic into that camera's error.
pub(super) fn supervise<T>(
    cam: &mut Camera,
    step: impl FnOnce(&mut Camera) -> Result<T, RunError>,
) -> Result<T, RunError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| step(&mut *cam))) {
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

/// The cameras' supervisor: what a fault, the end of a stream or a restart does to a camera, and the
/// run's first file error.
pub(super) struct Supervisor<'a> {
    cfg: &'a Config,
    out: Outputs<'a>,
    /// The first error of a file camera: with a lone camera, the run's error.
    file_error: Option<RunError>,
}

impl<'a> Supervisor<'a> {
    pub(super) fn new(cfg: &'a Config, out: Outputs<'a>) -> Self {
        Self { cfg, out, file_error: None }
    }

    /// The run's result once every camera is closed: a lone file camera's error is the run's.
    pub(super) fn outcome(&mut self, single: bool) -> Result<(), RunError> {
        match self.file_error.take() {
            Some(e) if single => Err(e),
            _ => Ok(()),
        }
    }

    /// One camera's error or panic: its open bins close as partial, its source goes; a live camera is
    /// restarted alone with backoff, a file camera ends. The other cameras are not touched.
    pub(super) fn fault(&mut self, cam: &mut Camera, e: RunError) {
        let kind = if matches!(e, RunError::Panic { .. }) { "panic" } else { "error" };
        self.out
            .metrics
            .camera_faults
            .get_or_create(&vec![("camera".into(), cam.id().to_owned()), ("kind".into(), kind.into())])
            .inc();
        self.out.metrics.stream_up.get_or_create(&camera_labels(cam.id())).set(0);
        cam.pipe.summary_mut().faults += 1;
        self.out.status(cam.id(), if cam.live { "down" } else { "ended" }, Some(e.to_string()));
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
            self.out.metrics.camera_ended(cam.id());
            cam.pipe.summary_mut().error = Some(e.to_string());
            self.file_error.get_or_insert(e);
        }
    }

    /// A frame came: the camera is up, and its next failure waits 1 s again.
    pub(super) fn frame_came(&self, cam: &mut Camera) {
        let labels = camera_labels(cam.id());
        let up = self.out.metrics.stream_up.get_or_create(&labels);
        if cam.restarts.recovered() || up.get() == 0 {
            up.set(1);
        }
    }

    /// The run ends: no restart any more, and the camera's open bins close (the rest of each a gap
    /// of `rest`).
    pub(super) fn stop(&self, cam: &mut Camera, rest: GapReason) {
        cam.restarts.cancel();
        self.close(cam, rest);
    }

    /// Drops the camera's source and closes its open bins (the rest of each a gap of `rest`).
    pub(super) fn close(&self, cam: &mut Camera, rest: GapReason) {
        drop_source(cam);
        let mut out = Produced::default();
        let closed = std::panic::catch_unwind(AssertUnwindSafe(|| cam.pipe.finish(rest, &mut out)));
        if closed.is_err() {
            // Its state is not to be trusted: start it afresh (its open bins are lost; the last
            // checkpoint restores them after a restart of the box).
            tracing::error!(camera = %cam.id(), "camera's bins could not be closed (panic); it starts afresh");
            let cfg = cam.cfg().clone();
            let summary = cam.pipe.summary().clone();
            cam.pipe = CameraPipeline::new(self.cfg, &cfg, self.out.metrics.clone());
            *cam.pipe.summary_mut() = summary;
            return;
        }
        self.out.send(cam.id(), out);
    }

    /// A camera due for its restart gets a new source.
    pub(super) fn restart_if_due(&self, cam: &mut Camera) {
        if cam.source.is_some() || !cam.restarts.take_due(Instant::now()) {
            return;
        }
        self.out.metrics.stream_restarts.get_or_create(&camera_labels(cam.id())).inc();
        let mut out = Produced::default();
        cam.pipe.reopening(timeline().now(), &mut out);
        self.out.send(cam.id(), out);
        self.out.status(cam.id(), "restarting", None);
        match Source::open(&cam.cfg().uri, cam.source_opts.clone()) {
            Ok(s) => {
                tracing::info!(camera = %cam.id(), attempt = cam.restarts.failures(), "camera restarted");
                cam.source = Some(s);
                cam.dropped_seen = 0;
                cam.schedule.restart();
            }
            Err(e) => {
                let mut out = Produced::default();
                cam.pipe.reopening_failed(timeline().now(), &mut out);
                self.out.send(cam.id(), out);
                self.out.status(cam.id(), "down", Some(e.to_string()));
                schedule_restart(cam, &e);
            }
        }
    }

    /// Polls the camera's source for up to `wait`. The end of its stream: a live camera restarts
    /// alone, with backoff (its tracks end, its bins stay open); a file camera is finished (an error
    /// is that camera's fault).
    pub(super) fn take_frame(&self, cam: &mut Camera, wait: Duration) -> Result<Option<Frame>, RunError> {
        let Some(source) = cam.source.as_mut() else { return Ok(None) };
        let err = match source.poll(wait) {
            Ok(Poll::Frame(f)) => return Ok(Some(f)),
            Ok(Poll::Idle) => return Ok(None),
            Ok(_) => None,
            Err(e) => Some(e),
        };
        self.out.metrics.stream_up.get_or_create(&camera_labels(cam.id())).set(0);
        if err.is_some() {
            self.out
                .metrics
                .errors
                .get_or_create(&vec![("stage".into(), "source".into()), ("kind".into(), "stream".into())])
                .inc();
        }
        drop_source(cam);
        self.out.status(
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
            self.out.send(cam.id(), out);
            return Ok(None);
        }
        match err {
            None => {
                tracing::info!(camera = %cam.id(), frames = cam.pipe.summary().frames, "stream ended");
                self.close(cam, GapReason::NoFrames);
                cam.finished = true;
                self.out.metrics.camera_ended(cam.id());
                Ok(None)
            }
            Some(e) => Err(e.into()),
        }
    }
}

/// Drops the camera's source, adding the frames it dropped that are not yet in the totals.
pub(super) fn drop_source(cam: &mut Camera) {
    if let Some(source) = cam.source.take() {
        cam.pipe.summary_mut().dropped += source.dropped().saturating_sub(cam.dropped_seen);
        cam.dropped_seen = 0;
    }
}

/// A live camera failed: try again after 1 s, doubling up to 60 s.
pub(super) fn schedule_restart(cam: &mut Camera, err: &dyn std::fmt::Display) {
    let wait = cam.restarts.failed(Instant::now());
    tracing::warn!(camera = %cam.id(), error = %err, retry_in_s = format!("{:.1}", wait.as_secs_f64()), "camera down; restarting alone");
}

/// A live camera's restarts: failures since its last frame, and when it is opened again. Time is
/// passed in, so the backoff is tested without a stream.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    failures: u32,
    at: Option<Instant>,
}

impl Restarts {
    /// The camera failed at `now`: it is opened again after 1 s, doubling up to 60 s (±25 %).
    /// Returns the wait.
    pub(super) fn failed(&mut self, now: Instant) -> Duration {
        let wait = crate::retry::backoff(self.failures, Duration::from_secs(1), Duration::from_secs(60));
        self.failures = self.failures.saturating_add(1);
        self.at = Some(now + wait);
        wait
    }

    /// Whether its restart is due at `now`; a due restart is taken (cleared).
    pub(super) fn take_due(&mut self, now: Instant) -> bool {
        let due = self.at.is_some_and(|at| now >= at);
        if due {
            self.at = None;
        }
        due
    }

    /// A frame came: the next failure waits 1 s again. Returns whether it had failed.
    pub(super) fn recovered(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }

    /// No restart any more (the run stops).
    pub(super) fn cancel(&mut self) {
        self.at = None;
    }

    pub(super) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_start_again_after_a_frame() {
        let t0 = Instant::now();
        let s = Duration::from_secs_f64;
        let mut r = Restarts::default();
        assert!(!r.take_due(t0 + s(3600.0)), "nothing failed");
        let w = r.failed(t0);
        assert!(w >= s(0.75) && w <= s(1.25), "{w:?}");
        assert!(!r.take_due(t0 + w - s(0.001)));
        assert!(r.take_due(t0 + w));
        assert!(!r.take_due(t0 + w), "taken once");
        assert!(r.failed(t0) >= s(1.5), "doubles");
        for _ in 0..20 {
            assert!(r.failed(t0) <= s(75.0), "at most 60 s (+25 %)");
        }
        assert_eq!(r.failures(), 22);
        assert!(r.recovered() && !r.recovered());
        assert!(r.failed(t0) <= s(1.25), "from 1 s again after a frame");
        r.cancel();
        assert!(!r.take_due(t0 + s(3600.0)), "cancelled");
    }
}
