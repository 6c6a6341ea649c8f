//! The analysis loop: each round gathers a frame from every camera that has one, chooses which are
//! detected within the budget ([`crate::schedule`]), runs the detector over their tiles in as few
//! model runs as the batch allows, and hands each frame to its camera's pipeline; what they produce,
//! their checkpoints and the console's news go to the outputs thread.

use super::*;

impl Analysis<'_> {
    pub(super) fn run(&mut self, cameras: &mut [Camera], stop: &AtomicBool) -> Result<(), RunError> {
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
        for cam in cameras.iter().filter(|c| c.source.is_none()) {
            self.out.status(cam.id(), "down", None);
        }
        while !stop.load(Ordering::Relaxed) && cameras.iter().any(|c| !c.finished) {
            notifier.alive();
            if self.reload.swap(false, Ordering::Relaxed) {
                reload::reload_rules(self.cfg, &self.out, self.snapshots, cameras);
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
                    let sup = &mut self.sup;
                    let step = supervise(cam, |cam| {
                        sup.restart_if_due(cam);
                        sup.take_frame(cam, wait)
                    });
                    match step {
                        Ok(Some(frame)) => ready.push((i, frame)),
                        Ok(None) => {}
                        Err(e) => sup.fault(cam, e),
                    }
                }
            }
            let now = timeline().now();
            let steps = timeline().steps_since(&mut self.clock_steps_seen);
            for cam in cameras.iter_mut().filter(|c| c.live && !c.finished) {
                let r = supervise(cam, |cam| {
                    let mut out = Produced::default();
                    for step in &steps {
                        cam.pipe.clock_step(step);
                    }
                    cam.pipe.tick(now, &mut out);
                    self.out.send(cam.id(), out);
                    checkpoint::checkpoint_if_due(&self.out, cam, Instant::now());
                    Ok(())
                });
                if let Err(e) = r {
                    self.sup.fault(cam, e);
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
                        self.sup.fault(&mut cameras[i], e);
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
                        .schedule
                        .period()
                        .or_else(|| cam.source.as_ref().and_then(Source::caps_period))
                        .unwrap_or(crate::schedule::DEFAULT_PERIOD);
                    period = Some(period.map_or(p, |q| q.min(p)));
                }
                let owed = cam.schedule.take_owed();
                let Some(priority) = self.wants_detection(cam, frame) else { continue };
                let priority = owed.map_or(priority, |o| o.min(priority));
                due.push(k);
                cands.push(Candidate {
                    priority,
                    waited: cam.schedule.since_detection(frame.pts),
                    pixels: frame.plan.input_pixels(),
                    deferrable,
                });
            }
            let mut chosen = budget.choose(&cands, period);
            if chosen.len() < due.len() {
                for (j, &k) in due.iter().enumerate() {
                    if !chosen.contains(&j) {
                        let cam = &mut cameras[ready[k].0];
                        cam.schedule.deferred(cands[j].priority);
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
                    self.sup.fault(cam, e);
                    continue;
                }
                let detected = due.contains(&k);
                if detected {
                    cam.schedule.detected(frame.pts);
                }
                let d = detected.then_some(&dets[i][..]);
                let share = if detected { detect_share } else { Duration::ZERO };
                let r = supervise(cam, |cam| {
                    self.analyse(cam, frame, d, share);
                    Ok(())
                });
                if let Err(e) = r {
                    self.sup.fault(cam, e);
                }
            }
            budget.observe_overhead(t_round.elapsed().saturating_sub(detect_time));
        }
        // Stopped by a signal, or every stream ended: close what is open.
        notifier.stopping();
        let rest = if stop.load(Ordering::Relaxed) { GapReason::BoxNotRunning } else { GapReason::NoFrames };
        for cam in cameras.iter_mut().filter(|c| !c.finished) {
            self.sup.stop(cam, rest);
        }
        self.sup.outcome(single)
    }

    /// Whether a camera's frame is detected on, and how pressing it is: its cadence and the motion
    /// policy ([`crate::motion`], [`crate::schedule::priority`]).
    pub(super) fn wants_detection(&self, cam: &mut Camera, frame: &Frame) -> Option<Priority> {
        let p = &self.cfg.motion;
        let changed = if p.enabled {
            let rules = cam.pipe.config();
            cam.schedule.changed(&frame.image(), &frame.plan, || rules.rules_bbox(), p.threshold)
        } else {
            0
        };
        let signals = Signals {
            cadence: cam.pipe.on_cadence(self.cfg.detector.every),
            tentative: cam.pipe.has_tentative(),
            track_moving: cam.pipe.tracks().iter().any(crate::motion::moving),
            changed,
            since_detection: cam.schedule.since_detection(frame.pts),
        };
        let d = cam.schedule.decide(p, signals);
        d.detect().then(|| crate::schedule::priority(d, &signals, p))
    }

    /// Detection for the frames `due` (indexes into `ready`), every tile of all of them in as few
    /// model runs as the batch allows. A failed batch is run again frame by frame, so that an error
    /// is pinned on its camera: returns (index into `ready`, message) of the frames that failed.
    pub(super) fn detect(
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
    pub(super) fn measure_scale(&mut self, cam: &mut Camera, frame: &Frame) {
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
                self.out.live(Live::Scale { camera: cam.id().to_owned(), text });
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
    pub(super) fn analyse(
        &mut self,
        cam: &mut Camera,
        frame: Frame,
        dets: Option<&[Detection]>,
        detect_time: Duration,
    ) {
        self.sup.frame_came(cam);
        // The appsink count can lag by the frame waiting there: never let the total go back.
        let dropped = cam.source.as_ref().map_or(0, Source::dropped).max(cam.dropped_seen);
        cam.schedule.frame(frame.pts, dropped - cam.dropped_seen);
        let mut out = Produced::default();
        cam.pipe.frame(frame.pts, frame.wall, dets, dropped - cam.dropped_seen, detect_time, &mut out);
        if dets.is_some() {
            self.measure_scale(cam, &frame);
        }
        if self.frame_news {
            let (dropped, at) = (dropped - cam.dropped_seen, SystemTime::now());
            self.out.live(Live::Frame { camera: cam.id().to_owned(), dropped, detect: detect_time, at });
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
        self.out.send(cam.id(), out);
        checkpoint::checkpoint_if_due(&self.out, cam, Instant::now());
    }
}
