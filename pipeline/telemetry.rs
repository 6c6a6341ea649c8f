//! The box's Prometheus metrics (logging and systemd notification: `junction_common::telemetry`).
//!
//! Names follow `junction_<name>_<unit>[_total]`; labels have bounded values (camera, counter, direction,
//! class, stage), never a track id. Counters are registered without `_total`: prometheus-client adds it
//! (and panics in debug builds on a name that already ends in it).

pub use junction_common::telemetry::{Notifier, init_logging};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

fn stage_histogram() -> Histogram {
    // 50 µs … ~1.6 s, doubling: covers NMS (µs) to a slow inference (hundreds of ms).
    Histogram::new(exponential_buckets(5e-5, 2.0, 16))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
    pub frames_decoded: Family<Labels, Counter>,
    pub frames_analysed: Family<Labels, Counter>,
    pub frames_dropped: Family<Labels, Counter>,
    /// Due detections left to the tracker because the box was behind.
    pub detections_deferred: Family<Labels, Counter>,
    pub stage_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub vehicles_counted: Family<Labels, Counter>,
    pub recrossings_suppressed: Family<Labels, Counter>,
    pub movements: Family<Labels, Counter>,
    pub unmatched_movements: Family<Labels, Counter>,
    pub track_fragments: Family<Labels, Counter>,
    pub stream_up: Family<Labels, Gauge>,
    pub stream_restarts: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
    pub outbox_pending: Gauge,
    /// Reports deleted before the broker acknowledged them, to keep the store under its size.
    pub reports_dropped: Counter,
    pub mqtt_connected: Gauge,
    /// Outputs waiting in memory because the store cannot write.
    pub outputs_held: Gauge,
    /// Events dropped from memory while the store could not write (reports never are).
    pub events_dropped: Counter,
    /// Errors and panics of one camera's own work, after which the supervisor restarted it alone.
    pub camera_faults: Family<Labels, Counter>,
    /// 1 while the publisher thread runs.
    pub publisher_up: Gauge,
    /// Reports the broker acknowledged.
    pub reports_published: Counter,
    /// Messages the broker refused (MQTT 5 reason code), each time.
    pub mqtt_refused: Counter,
    /// Reports set aside after a refusal, waiting for their retry.
    pub outbox_refused: Gauge,
    /// Per camera: last analysed frame and how old it may be (the camera's stall timeout).
    last_frame: Mutex<HashMap<String, (Option<Instant>, Duration)>>,
    /// Set once the store is open and after each successful write; cleared by a failed one.
    pub store_writable: std::sync::atomic::AtomicBool,
}

/// Registers a metric and records the series names it is exposed under.
fn reg<M>(registry: &mut Registry, names: &mut Vec<String>, name: &str, help: &str, metric: M)
where
    M: prometheus_client::registry::Metric + prometheus_client::metrics::TypedMetric,
{
    use prometheus_client::metrics::MetricType;
    match M::TYPE {
        MetricType::Counter => names.push(format!("{name}_total")),
        MetricType::Histogram => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
        _ => names.push(name.to_owned()),
    }
    registry.register(name, help, metric);
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

pub fn camera(c: &str) -> Labels {
    vec![("camera".into(), c.into())]
}

impl Metrics {
    /// `cameras`: id and readiness window (its stall timeout) of each camera.
    pub fn new(cameras: &[(String, Duration)]) -> Self {
        let mut registry = Registry::default();
        let mut names: Vec<String> = Vec::new();
        let m = Self {
            frames_decoded: Family::default(),
            frames_analysed: Family::default(),
            frames_dropped: Family::default(),
            detections_deferred: Family::default(),
            stage_duration: Family::new_with_constructor(stage_histogram),
            vehicles_counted: Family::default(),
            recrossings_suppressed: Family::default(),
            movements: Family::default(),
            unmatched_movements: Family::default(),
            track_fragments: Family::default(),
            stream_up: Family::default(),
            stream_restarts: Family::default(),
            errors: Family::default(),
            outbox_pending: Gauge::default(),
            reports_dropped: Counter::default(),
            mqtt_connected: Gauge::default(),
            outputs_held: Gauge::default(),
            events_dropped: Counter::default(),
            camera_faults: Family::default(),
            publisher_up: Gauge::default(),
            reports_published: Counter::default(),
            mqtt_refused: Counter::default(),
            outbox_refused: Gauge::default(),
            last_frame: Mutex::new(cameras.iter().map(|(c, w)| (c.clone(), (None, *w))).collect()),
            store_writable: std::sync::atomic::AtomicBool::new(false),
            registry: Registry::default(),
            names: Vec::new(),
        };
        reg(
            &mut registry,
            &mut names,
            "junction_frames_decoded",
            "Frames taken from the source",
            m.frames_decoded.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_frames_analysed",
            "Frames run through detection",
            m.frames_analysed.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_frames_dropped",
            "Frames dropped while inference was busy",
            m.frames_dropped.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_detections_deferred",
            "Due detections left to the tracker because inference was behind the cameras",
            m.detections_deferred.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_stage_duration_seconds",
            "Time per frame in each analysis stage",
            m.stage_duration.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_vehicles_counted",
            "Line crossings counted",
            m.vehicles_counted.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_recrossings_suppressed",
            "Crossings not counted because the track had already crossed that line",
            m.recrossings_suppressed.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_movements",
            "Turning movements by camera, entry approach, exit approach, movement and class",
            m.movements.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_track_fragments",
            "Tracks confirmed where a track had just been lost: one vehicle under two ids",
            m.track_fragments.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_unmatched_movements",
            "Tracks that entered by an approach and ended without leaving by one",
            m.unmatched_movements.clone(),
        );
        reg(&mut registry, &mut names, "junction_stream_up", "1 while the camera delivers frames", m.stream_up.clone());
        reg(
            &mut registry,
            &mut names,
            "junction_outputs_held",
            "Outputs held in memory because the store cannot write (disk full, locked)",
            m.outputs_held.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_events_dropped",
            "Events dropped from memory while the store could not write (reports never are)",
            m.events_dropped.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_camera_faults",
            "Errors or panics of one camera's analysis; the camera was restarted alone",
            m.camera_faults.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_publisher_up",
            "1 while the MQTT publisher thread runs",
            m.publisher_up.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_reports_published",
            "Reports (each revision) the MQTT broker acknowledged",
            m.reports_published.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_mqtt_refused",
            "Messages the MQTT broker refused (MQTT 5 reason code), each refusal; they are set aside and retried",
            m.mqtt_refused.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_outbox_refused",
            "Reports set aside after the broker refused them, waiting for their retry",
            m.outbox_refused.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_stream_restarts",
            "Camera pipeline restarts",
            m.stream_restarts.clone(),
        );
        reg(&mut registry, &mut names, "junction_errors", "Errors by stage and kind", m.errors.clone());
        reg(
            &mut registry,
            &mut names,
            "junction_outbox_pending",
            "Reports stored but not yet acknowledged by the broker",
            m.outbox_pending.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_reports_dropped",
            "Reports deleted undelivered to keep the store under store.max_size_mb",
            m.reports_dropped.clone(),
        );
        reg(
            &mut registry,
            &mut names,
            "junction_mqtt_connected",
            "1 while connected to the broker",
            m.mqtt_connected.clone(),
        );
        Self { registry, names, ..m }
    }

    /// Every series name the exposition can carry (`_total` of counters, `_bucket`/`_sum`/`_count`
    /// of histograms), samples or not: what dashboards and alerts may query.
    pub fn exported_names(&self) -> &[String] {
        &self.names
    }

    pub fn encode(&self) -> Result<String, String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(|e| e.to_string())?;
        Ok(out)
    }

    pub fn frame_seen(&self, camera: &str) {
        if let Ok(mut m) = self.last_frame.lock()
            && let Some(entry) = m.get_mut(camera)
        {
            entry.0 = Some(Instant::now());
        }
    }

    /// A camera that ended (a file camera at its end, or stopped by its fault) is no longer expected to
    /// deliver: it leaves the readiness check.
    pub fn camera_ended(&self, camera: &str) {
        if let Ok(mut m) = self.last_frame.lock() {
            m.remove(camera);
        }
    }

    /// Ready when every camera still running delivered a frame within its window and the store is
    /// writable.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.store_writable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("the store is not writable".into());
        }
        let m = self.last_frame.lock().map_err(|_| "state poisoned".to_owned())?;
        let mut late: Vec<&str> = m
            .iter()
            .filter(|(_, (t, window))| t.is_none_or(|t| t.elapsed() > *window))
            .map(|(c, _)| c.as_str())
            .collect();
        late.sort_unstable();
        if late.is_empty() { Ok(()) } else { Err(format!("no recent frame from camera {}", late.join(", "))) }
    }
}
