//! The outputs thread: everything the cameras produce goes through one bounded channel to here, where
//! it is stored (SQLite, the ATSPM CSV), then printed and handed to the publisher. The thread that owns
//! the ONNX session never waits on a disk, only on this channel when it is full.
//!
//! What the operator console shows live of the cameras ([`Live`]: frame rates, states, scale, reloads)
//! comes the same way, so the console has one feeder; it is handed on at once, never stored or held.
//!
//! Policy when the sink falls behind: the channel holds [`CHANNEL`] steps; when it is full the analysis
//! thread waits (live cameras then drop frames, counted): events and closed bins are never dropped
//! for speed. When the store cannot write (disk full, database locked), steps are held in memory in
//! order and retried every [`RETRY`]; `/readyz` fails and `junction_outputs_held` says how many wait.
//! Past [`MAX_HELD_EVENTS`] held events the oldest events (never reports) are dropped, counted in
//! `junction_events_dropped_total`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use crate::aggregate::{BinState, FlowReport, RuleChange};
use crate::analytics::TrafficEvent;
use crate::camera::Produced;
use crate::publish::Publisher;
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Steps the channel holds before the analysis thread waits.
pub const CHANNEL: usize = 1024;
/// Wait before writing again after the store refused a write.
pub const RETRY: Duration = Duration::from_secs(2);
/// Events held in memory while the store cannot write, at most (about 100 bytes each).
pub const MAX_HELD_EVENTS: usize = 200_000;
/// How often retention and the store's size bound are applied.
const HOUSEKEEPING: Duration = Duration::from_secs(3600);

/// What the outputs thread tells the outside world (the stdout printer, `junction eval`), each step
/// after it is stored.
pub trait Observer {
    fn event(&mut self, camera: &str, event: &TrafficEvent);
    fn report(&mut self, report: &FlowReport);
    /// The cameras' live state, as it changes (not stored first: it is news, not a measurement).
    fn live(&mut self, _update: &Live) {}
}

/// A camera's live state for the operator console. Times are this box's wall clock (a file's frames
/// carry their own), taken on the analysis thread when it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// A frame of `camera` was analysed; `dropped` frames since the previous one; `detect`: its
    /// detection time (zero when the detector skipped it).
    Frame { camera: String, dropped: u64, detect: Duration, at: SystemTime },
    /// `camera` went down, is restarting or ended (`state`: down | restarting | ended).
    State { camera: String, state: &'static str, error: Option<String>, at: SystemTime },
    /// The camera's scale was chosen, or a warm-up began.
    Scale { camera: String, text: String },
    /// A reload of the rules was applied (`ok`) or refused; the changes by camera.
    Reloaded { ok: bool, message: String, changes: Vec<(String, RuleChange)>, at: SystemTime },
}

/// One message to the outputs thread.
#[derive(Debug)]
pub enum Output {
    /// Stored, in order, then told.
    Step(Step),
    /// For the console: handed to the observer on arrival.
    Live(Live),
}

/// What the store keeps, held in order while it cannot write.
#[derive(Debug)]
pub enum Step {
    /// A camera's events and closed bins, in the order they happened.
    Produced { camera: String, produced: Produced },
    /// A camera's open bins, so that a crash loses at most the time since.
    Checkpoint { camera: String, states: Vec<BinState> },
}

/// The analysis side of the channel.
pub type OutputSender = SyncSender<Output>;

/// Retention and size bound of the store, and how long shutdown waits for a store that cannot write.
#[derive(Debug, Clone, Copy)]
pub struct Housekeeping {
    pub retention_days: u32,
    pub max_bytes: u64,
    pub drain: Duration,
}

/// Runs the outputs thread until every sender is gone and what they sent is written (or, with the
/// store refusing writes, until `drain` has passed).
pub fn run(
    site: &str,
    mut store: Store,
    rx: Receiver<Output>,
    observer: &mut (dyn Observer + Send),
    publisher: Option<&Publisher>,
    metrics: &Metrics,
    housekeeping: Housekeeping,
) {
    let drain = housekeeping.drain;
    let mut held: VecDeque<Step> = VecDeque::new();
    let mut retry_at: Option<Instant> = None;
    let mut failing: Option<String> = None;
    let mut housekept = Instant::now();
    let mut closed_at: Option<Instant> = None;
    loop {
        let wait = retry_at.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(Instant::now()));
        if closed_at.is_none() {
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    accept(m, &mut held, observer);
                    // Take what else is waiting, so that one write failure does not reorder them.
                    while let Ok(m) = rx.try_recv() {
                        accept(m, &mut held, observer);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed_at = Some(Instant::now()),
            }
        } else if retry_at.is_some() {
            std::thread::sleep(wait.min(Duration::from_millis(200)));
        }
        if retry_at.is_none_or(|t| Instant::now() >= t) {
            retry_at = None;
            while let Some(front) = held.front() {
                let t = Instant::now();
                let written = write(site, &mut store, front);
                if written.is_ok() && matches!(front, Step::Produced { .. }) {
                    metrics
                        .stage_duration
                        .get_or_create(&vec![("stage".into(), "store".into())])
                        .observe(t.elapsed().as_secs_f64());
                }
                match written {
                    Ok(()) => {
                        if let Some(m) = held.pop_front() {
                            // The pending gauge comes from the store, so it tells the truth whatever
                            // the publisher does.
                            if publisher.is_some()
                                && matches!(&m, Step::Produced { produced, .. } if !produced.reports.is_empty())
                                && let Ok(n) = store.unpublished()
                            {
                                metrics.outbox_pending.set(n as i64);
                            }
                            tell(observer, publisher, m);
                        }
                        if let Some(e) = failing.take() {
                            tracing::info!(previous_error = %e, "store: writable again; held outputs written");
                        }
                        metrics.store_writable.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let e = e.to_string();
                        if failing.as_deref() != Some(&e) {
                            tracing::error!(error = %e, held = held.len(), "store: cannot write; counting goes on, outputs held in memory and retried");
                        }
                        failing = Some(e);
                        metrics.store_writable.store(false, Ordering::Relaxed);
                        metrics
                            .errors
                            .get_or_create(&vec![("stage".into(), "store".into()), ("kind".into(), "write".into())])
                            .inc();
                        retry_at = Some(Instant::now() + RETRY);
                        break;
                    }
                }
            }
            bound_held(&mut held, metrics);
        }
        metrics.outputs_held.set(held.len() as i64);
        if housekept.elapsed() > HOUSEKEEPING && failing.is_none() {
            housekeep(&mut store, housekeeping, metrics);
            housekept = Instant::now();
        }
        if let Some(t) = closed_at {
            if held.is_empty() {
                break;
            }
            if t.elapsed() > drain {
                let reports: usize = held
                    .iter()
                    .map(|m| match m {
                        Step::Produced { produced, .. } => produced.reports.len(),
                        Step::Checkpoint { .. } => 0,
                    })
                    .sum();
                tracing::error!(
                    held = held.len(),
                    reports,
                    "store: still cannot write at shutdown; these outputs are lost (a checkpoint may restore open bins)"
                );
                metrics.reports_dropped.inc_by(reports as u64);
                break;
            }
        }
    }
}

/// Stores one step. Checkpoints are best effort: while the store fails they are not retried (a later
/// one supersedes them).
fn write(site: &str, store: &mut Store, m: &Step) -> Result<(), StoreError> {
    match m {
        Step::Produced { camera, produced } => store.save(site, camera, &produced.events, &produced.reports),
        Step::Checkpoint { camera, states } => store.checkpoint(site, camera, states),
    }
}

/// A step to store, held in order; the console's news straight to the observer (never held behind a
/// store that cannot write: the operator sees the cameras whatever the disk does).
fn accept(m: Output, held: &mut VecDeque<Step>, observer: &mut dyn Observer) {
    match m {
        Output::Step(step) => held.push_back(step),
        Output::Live(update) => observer.live(&update),
    }
}

/// After the step is on disk: the printer, then the publisher.
fn tell(observer: &mut dyn Observer, publisher: Option<&Publisher>, m: Step) {
    let Step::Produced { camera, produced } = m else { return };
    for e in &produced.events {
        observer.event(&camera, e);
    }
    for r in &produced.reports {
        observer.report(r);
    }
    if let Some(p) = publisher
        && !produced.is_empty()
    {
        p.wake();
    }
}

/// Keeps the held events under [`MAX_HELD_EVENTS`]: the oldest go first, never a report; stale
/// checkpoints go too (the newest per camera supersedes them).
fn bound_held(held: &mut VecDeque<Step>, metrics: &Metrics) {
    let mut seen = std::collections::HashSet::new();
    let mut keep = vec![true; held.len()];
    for (i, m) in held.iter().enumerate().rev() {
        if let Step::Checkpoint { camera, .. } = m
            && !seen.insert(camera.clone())
        {
            keep[i] = false;
        }
    }
    let mut k = keep.iter();
    held.retain(|_| *k.next().unwrap_or(&true));
    let mut events: usize = held
        .iter()
        .map(|m| match m {
            Step::Produced { produced, .. } => produced.events.len(),
            Step::Checkpoint { .. } => 0,
        })
        .sum();
    if events <= MAX_HELD_EVENTS {
        return;
    }
    let mut dropped = 0usize;
    for m in held.iter_mut() {
        if events <= MAX_HELD_EVENTS {
            break;
        }
        if let Step::Produced { produced, .. } = m {
            let n = produced.events.len().min(events - MAX_HELD_EVENTS);
            produced.events.drain(..n);
            events -= n;
            dropped += n;
        }
    }
    metrics.events_dropped.inc_by(dropped as u64);
    tracing::error!(
        events = dropped,
        "store: cannot write and the memory bound is reached; dropped the oldest events (reports are kept)"
    );
}

/// Applies retention (days) and the size bound to the store, loudly when undelivered data goes.
pub fn housekeep(store: &mut Store, h: Housekeeping, metrics: &Metrics) {
    match store.prune(h.retention_days, SystemTime::now()) {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, days = h.retention_days, "store: pruned rows past retention"),
        Err(e) => tracing::error!(error = %e, "store: retention failed"),
    }
    match store.bound_size(h.max_bytes) {
        Ok(bound) => {
            if bound.delivered_rows() > 0 {
                tracing::warn!(
                    events = bound.events,
                    detector_events = bound.detector_events,
                    delivered_reports = bound.delivered,
                    atspm_files = bound.atspm_files,
                    max_bytes = h.max_bytes,
                    "store: at its size bound; deleted the oldest delivered data"
                );
            }
            if bound.undelivered_detector > 0 {
                tracing::error!(
                    detector_events = bound.undelivered_detector,
                    "store: at its size bound; deleted the oldest loop detector events the broker never acknowledged"
                );
            }
            if bound.undelivered > 0 {
                metrics.reports_dropped.inc_by(bound.undelivered as u64);
                tracing::error!(
                    reports = bound.undelivered,
                    max_bytes = h.max_bytes,
                    "store: at its size bound; deleted the oldest reports the broker never acknowledged (raise store.max_size_mb or fix the broker link)"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "store: size bound failed"),
    }
}

/// A sender that reports a closed channel as an error (the outputs thread is gone).
pub fn send(tx: &OutputSender, m: Output, metrics: &Arc<Metrics>) -> bool {
    let queued = tx.send(m).is_ok();
    if !queued {
        metrics.errors.get_or_create(&vec![("stage".into(), "outputs".into()), ("kind".into(), "gone".into())]).inc();
    }
    queued
}
