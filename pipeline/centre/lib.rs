//! The traffic centre's ingester (`junction-centre`): every box's MQTT landed in PostgreSQL.
//!
//! Subscribes through shared subscriptions (`$share/<group>/junction/v1/+/+/flow`, `…/events`,
//! `…/detector`, `$share/<group>/junction/v1/+/status`), so several ingesters split the messages; a
//! persistent session (clean session off, a fixed client id) and manual acknowledgement: a message is
//! acknowledged only after the transaction holding it committed, so an ingester killed mid-batch loses
//! nothing (the broker delivers the unacknowledged messages again) and counts nothing twice (every row
//! is keyed by its stable id). Each payload is checked against deploy/schema; one that fails, or whose
//! topic does not match it, goes to `dead_letters` with the reason (counted and logged).
//!
//! Consumer rules applied: a report replaces the stored one with the same id only with a higher
//! `revision` (a missing revision is 1); events and loop events are kept once per id; a box's status
//! only moves forward in time. Tables are partitioned by day (migrations beside this file).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::Value;

/// Numbered migrations, applied in order, each once (table `schema_migrations`).
const MIGRATIONS: &[(i32, &str)] =
    &[(1, include_str!("0001_init.sql")), (2, include_str!("0002_received_at_commit.sql"))];

const FLOW_SCHEMA: &str = include_str!("../../deploy/schema/flow.v1.json");
const EVENT_SCHEMA: &str = include_str!("../../deploy/schema/event.v1.json");
const DETECTOR_SCHEMA: &str = include_str!("../../deploy/schema/detector.v1.json");
const STATUS_SCHEMA: &str = include_str!("../../deploy/schema/status.v1.json");

#[derive(Debug, thiserror::Error)]
pub enum CentreError {
    #[error("--mqtt: {0}")]
    Mqtt(String),
    #[error("--postgres: {0}")]
    Postgres(String),
    /// PostgreSQL refused a statement (not the connection): something in the rows.
    #[error("--postgres: refused: {0}")]
    Refused(String),
    #[error("deploy/schema/{file}: {message}")]
    Schema { file: &'static str, message: String },
    #[error("centre: {0}")]
    Runtime(String),
}

/// A refusal is about the rows (SQLSTATE class 22, data exception: U+0000, out of range; class 23,
/// integrity: a CHECK, no partition for the row): the same rows would be refused again, so they are
/// split and what is refused alone becomes a dead letter. Anything else (deadlock, timeout, resources,
/// connection) is retried as it is.
fn pg(e: tokio_postgres::Error) -> CentreError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") || db.code().code().starts_with("23") => {
            CentreError::Refused(format!("{}: {}", db.code().code(), db.message()))
        }
        Some(db) => CentreError::Postgres(format!("{}: {}", db.code().code(), db.message())),
        None => CentreError::Postgres(e.to_string()),
    }
}

/// A dead letter keeps at most this much of its payload (bytes); its error says how much there was.
const DEAD_LETTER_PAYLOAD: usize = 64 * 1024;
/// Times a message may carry: not before 2000, not more than this after the centre's clock (a box's
/// clock may run a little ahead; a year 9999 is a broken one).
const MAX_AHEAD: Duration = Duration::from_secs(7 * 86_400);

/// What `junction-centre` is asked to do.
#[derive(Debug, Clone)]
pub struct CentreConfig {
    /// The centre's broker: `url` (`mqtt://` or `mqtts://`), TLS files and credentials as a box's
    /// `[mqtt]` has them (protocol, client id and the rest are the ingester's own).
    pub mqtt: junction_schema::site::MqttConfig,
    /// Shared-subscription group: ingesters with the same group split the messages.
    pub group: String,
    /// MQTT client id: fixed, so that the broker keeps this ingester's session across restarts.
    pub client_id: String,
    /// libpq connection string, e.g. `host=127.0.0.1 port=5432 user=junction dbname=centre`.
    pub postgres: String,
    /// The CA of PostgreSQL's server certificate (TLS per `sslmode`); `None`: the system's CAs.
    pub postgres_ca_file: Option<std::path::PathBuf>,
    /// Messages per transaction at most.
    pub batch: usize,
    /// The longest a message waits for its batch to fill.
    pub batch_wait: Duration,
    pub retention: Retention,
    /// Where to serve `/metrics` (Prometheus text) and `/healthz`; none: not served.
    pub metrics: Option<std::net::SocketAddr>,
}

/// The ingester's metrics (`junction_centre_*`).
pub struct CentreMetrics {
    registry: prometheus_client::registry::Registry,
    /// Messages taken from the broker (redeliveries included).
    pub messages: Counter,
    /// Rows written, by table (a report replaced at a higher revision counts).
    pub rows: Family<Vec<(String, String)>, Counter>,
    /// Reports not written: the stored revision is as high or higher (duplicates, late revisions).
    pub stale_reports: Counter,
    pub dead_letters: Counter,
    pub batches: Counter,
    pub batch_failures: Counter,
    /// Seconds to classify, write and commit a batch.
    pub batch_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Messages received and not yet committed (in the batch and waiting for it).
    pub pending: Gauge,
    /// Committed messages whose acknowledgement is not written to the broker yet.
    pub unacked: Gauge,
    /// Acknowledgements written to the broker.
    pub acks_sent: Counter,
    /// Messages that arrived at QoS 0 (nothing to acknowledge: lost if the ingester dies with them).
    pub qos0: Counter,
    pub broker_connected: Gauge,
    /// Connections made to the broker: 1, plus one per reconnection.
    pub connections: Counter,
    /// Acknowledgements dropped because their connection ended (the broker sends those messages
    /// again on the next one, and those are acknowledged).
    pub acks_dropped: Counter,
}

impl CentreMetrics {
    pub fn new() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        let mut m = Self {
            registry: prometheus_client::registry::Registry::default(),
            messages: Counter::default(),
            rows: Family::default(),
            stale_reports: Counter::default(),
            dead_letters: Counter::default(),
            batches: Counter::default(),
            batch_failures: Counter::default(),
            // 1 ms to ~16 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            pending: Gauge::default(),
            unacked: Gauge::default(),
            acks_sent: Counter::default(),
            qos0: Counter::default(),
            broker_connected: Gauge::default(),
            connections: Counter::default(),
            acks_dropped: Counter::default(),
        };
        let r = &mut m.registry;
        r.register("junction_centre_messages", "Messages taken from the broker", m.messages.clone());
        r.register("junction_centre_rows", "Rows written, by table", m.rows.clone());
        r.register(
            "junction_centre_stale_reports",
            "Reports not written: the stored revision is as high or higher",
            m.stale_reports.clone(),
        );
        r.register("junction_centre_dead_letters", "Messages kept in dead_letters", m.dead_letters.clone());
        r.register("junction_centre_batches", "Batches committed", m.batches.clone());
        r.register(
            "junction_centre_batch_failures",
            "Batches not written (kept and retried)",
            m.batch_failures.clone(),
        );
        r.register("junction_centre_batch_seconds", "Seconds to write and commit a batch", m.batch_seconds.clone());
        r.register("junction_centre_pending", "Messages received and not yet committed", m.pending.clone());
        r.register(
            "junction_centre_unacked",
            "Committed messages whose acknowledgement is not written to the broker yet",
            m.unacked.clone(),
        );
        r.register("junction_centre_acks_sent", "Acknowledgements written to the broker", m.acks_sent.clone());
        r.register("junction_centre_qos0_messages", "Messages that arrived at QoS 0", m.qos0.clone());
        r.register("junction_centre_broker_connected", "1 while connected to the broker", m.broker_connected.clone());
        r.register("junction_centre_connections", "Connections made to the broker", m.connections.clone());
        r.register(
            "junction_centre_acks_dropped",
            "Acknowledgements dropped because their connection ended (those messages come again)",
            m.acks_dropped.clone(),
        );
        m
    }

    fn count(&self, w: &Written) {
        for (table, n) in
            [("reports", w.reports), ("events", w.events), ("detector_events", w.detector), ("box_status", w.status)]
        {
            self.rows.get_or_create(&vec![("table".into(), table.into())]).inc_by(n);
        }
        self.stale_reports.inc_by(w.stale);
        self.dead_letters.inc_by(w.dead);
        self.batches.inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for CentreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `/metrics` and `/healthz` on `addr` (on the ingester's runtime).
async fn serve_metrics(addr: std::net::SocketAddr, metrics: std::sync::Arc<CentreMetrics>) -> Result<(), CentreError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CentreError::Runtime(format!("--metrics {addr}: {e}")))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let m = metrics.clone();
                async move { junction_common::telemetry::metrics_response(m.encode().map_err(|e| e.to_string())) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    tracing::info!(%addr, "centre: /metrics /healthz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "centre: metrics endpoint ended");
        }
    });
    Ok(())
}

/// One message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Report {
        id: String,
        bin_start: SystemTime,
        revision: i32,
        site: String,
        camera: String,
        bin_seconds: i32,
        partial: bool,
        covered: f64,
        payload: Value,
    },
    Event {
        id: String,
        at: SystemTime,
        site: String,
        camera: String,
        rule: String,
        kind: String,
        class: String,
        payload: Value,
    },
    Detector {
        id: String,
        at: SystemTime,
        site: String,
        camera: String,
        detector: String,
        channel: i32,
        code: i32,
    },
    Status {
        site: String,
        state: String,
        version: String,
        at: SystemTime,
    },
    Dead {
        topic: String,
        error: String,
        payload: Vec<u8>,
    },
}

/// The schemas, compiled once.
pub struct Validators {
    flow: jsonschema::Validator,
    event: jsonschema::Validator,
    detector: jsonschema::Validator,
    status: jsonschema::Validator,
}

impl Validators {
    pub fn new() -> Result<Self, CentreError> {
        let load = |file: &'static str, text: &str| {
            let schema: Value =
                serde_json::from_str(text).map_err(|e| CentreError::Schema { file, message: e.to_string() })?;
            jsonschema::validator_for(&schema).map_err(|e| CentreError::Schema { file, message: e.to_string() })
        };
        Ok(Self {
            flow: load("flow.v1.json", FLOW_SCHEMA)?,
            event: load("event.v1.json", EVENT_SCHEMA)?,
            detector: load("detector.v1.json", DETECTOR_SCHEMA)?,
            status: load("status.v1.json", STATUS_SCHEMA)?,
        })
    }
}

fn time(v: &Value, field: &str) -> Result<SystemTime, String> {
    let s = v[field].as_str().ok_or_else(|| format!("{field}: missing"))?;
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).map_err(|e| format!("{field}: {s:?}: {e}"))?;
    let earliest = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    if t < earliest || t > SystemTime::now() + MAX_AHEAD {
        return Err(format!("{field}: {s:?} is not between 2000-01-01 and a week after the centre's clock"));
    }
    Ok(t)
}

/// An integer field as PostgreSQL's int4, range-checked.
fn int4(v: &Value, field: &str, lo: i64, hi: i64) -> Result<i32, String> {
    let n = v[field].as_i64().ok_or_else(|| format!("{field}: {} is not an integer of 64 bits", v[field]))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("{field}: {n} is out of range {lo} to {hi}"));
    }
    i32::try_from(n).map_err(|_| format!("{field}: {n} does not fit 32 bits"))
}

/// The path of the first string (key or value) holding U+0000, which PostgreSQL's text and jsonb
/// cannot store.
fn nul_at(v: &Value, path: &mut String) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().enumerate().any(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("/{i}"));
            let found = nul_at(x, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(o) => o.iter().any(|(k, x)| {
            let len = path.len();
            path.push('/');
            path.push_str(&k.replace('\0', "\\u0000"));
            let found = k.contains('\0') || nul_at(x, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

/// A message's row: checked against its schema and its topic (the site and camera in the topic must
/// be the payload's), or a dead letter saying why.
pub fn classify(topic: &str, payload: &[u8], v: &Validators) -> Row {
    match classify_inner(topic, payload, v) {
        Ok(row) => row,
        Err(error) => dead_letter(topic, error, payload),
    }
}

/// A dead letter: the topic, why, and the payload's first [`DEAD_LETTER_PAYLOAD`] bytes (the error
/// says when it was cut).
fn dead_letter(topic: &str, error: String, payload: &[u8]) -> Row {
    let (error, kept) = if payload.len() > DEAD_LETTER_PAYLOAD {
        (
            format!("{error} (payload cut to its first {DEAD_LETTER_PAYLOAD} of {} bytes)", payload.len()),
            DEAD_LETTER_PAYLOAD,
        )
    } else {
        (error, payload.len())
    };
    Row::Dead { topic: topic.to_owned(), error, payload: payload[..kept].to_vec() }
}

fn classify_inner(topic: &str, payload: &[u8], v: &Validators) -> Result<Row, String> {
    let parts: Vec<&str> = topic.split('/').collect();
    let (site, camera, kind) = match parts.as_slice() {
        ["junction", "v1", site, "status"] => (*site, None, "status"),
        ["junction", "v1", site, camera, kind] => (*site, Some(*camera), *kind),
        _ => return Err("not a junction/v1 topic".into()),
    };
    let mut json: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    // Boxes from before revisions existed send none: theirs is the first.
    if kind == "flow"
        && let Some(o) = json.as_object_mut()
    {
        o.entry("revision").or_insert(Value::from(1));
    }
    let validator = match kind {
        "flow" => &v.flow,
        "events" => &v.event,
        "detector" => &v.detector,
        "status" => &v.status,
        other => return Err(format!("unknown message kind {other:?}")),
    };
    if let Some(e) = validator.iter_errors(&json).next() {
        return Err(format!("schema: {} at {}", e, e.instance_path()));
    }
    let mut path = String::new();
    if nul_at(&json, &mut path) {
        return Err(format!("text at {} holds U+0000, which PostgreSQL cannot store", path.trim_start_matches('/')));
    }
    if json["site"] != site || camera.is_some_and(|c| json["camera"] != c) {
        return Err(format!(
            "topic names site {site:?}{} but the payload {} / {}",
            camera.map(|c| format!(" camera {c:?}")).unwrap_or_default(),
            json["site"],
            json["camera"]
        ));
    }
    Ok(match kind {
        "flow" => Row::Report {
            id: text(&json, "id"),
            bin_start: time(&json, "bin_start")?,
            revision: int4(&json, "revision", 1, i64::from(i32::MAX))?,
            site: site.to_owned(),
            camera: camera.unwrap_or_default().to_owned(),
            bin_seconds: int4(&json, "bin_seconds", 1, 31 * 86_400)?,
            partial: json["partial"].as_bool().unwrap_or(false),
            covered: json["covered_seconds"].as_f64().unwrap_or_default(),
            payload: json,
        },
        "events" => Row::Event {
            id: text(&json, "id"),
            at: time(&json, "at")?,
            site: site.to_owned(),
            camera: camera.unwrap_or_default().to_owned(),
            rule: text(&json, "rule"),
            kind: text(&json, "kind"),
            class: text(&json, "class"),
            payload: json,
        },
        "detector" => Row::Detector {
            id: text(&json, "id"),
            at: time(&json, "at")?,
            site: site.to_owned(),
            camera: camera.unwrap_or_default().to_owned(),
            detector: text(&json, "detector"),
            channel: int4(&json, "channel", 0, 65_535)?,
            code: int4(&json, "event_code", 0, 65_535)?,
        },
        _ => Row::Status {
            site: site.to_owned(),
            state: text(&json, "state"),
            version: text(&json, "version"),
            at: time(&json, "at")?,
        },
    })
}

/// Applies the migrations not applied yet, each in its own transaction.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, CentreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg)?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        let tx = client.transaction().await.map_err(pg)?;
        // One migrator at a time (two ingesters starting together).
        tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE").await.map_err(pg)?;
        let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await.map_err(pg)?;
        if done.is_none() {
            tx.batch_execute(sql).await.map_err(|e| CentreError::Postgres(format!("migration {version}: {e}")))?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await.map_err(pg)?;
            applied.push(*version);
        }
        tx.commit().await.map_err(pg)?;
    }
    Ok(applied)
}

/// The day (UTC) a time falls in, as `YYYYMMDD` and its bounds.
fn day(t: SystemTime) -> (String, String, String) {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % 86_400);
    let end = start + Duration::from_secs(86_400);
    let d = |t| humantime::format_rfc3339_seconds(t).to_string();
    let (s, e) = (d(start), d(end));
    (s[..10].replace('-', ""), s, e)
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub reports: u64,
    /// Reports not stored because the stored revision is as high or higher.
    pub stale: u64,
    pub events: u64,
    pub detector: u64,
    pub status: u64,
    pub dead: u64,
}

impl Written {
    fn add(&mut self, w: Written) {
        self.reports += w.reports;
        self.stale += w.stale;
        self.events += w.events;
        self.detector += w.detector;
        self.status += w.status;
        self.dead += w.dead;
    }
}

/// A batch's reports as one array per column (for `unnest`), borrowed from its rows.
#[derive(Default)]
struct ReportColumns<'a> {
    id: Vec<&'a str>,
    bin_start: Vec<SystemTime>,
    revision: Vec<i32>,
    site: Vec<&'a str>,
    camera: Vec<&'a str>,
    bin_seconds: Vec<i32>,
    partial: Vec<bool>,
    covered: Vec<f64>,
    payload: Vec<&'a Value>,
}

impl<'a> ReportColumns<'a> {
    fn push(&mut self, r: &'a Row) {
        if let Row::Report { id, bin_start, revision, site, camera, bin_seconds, partial, covered, payload } = r {
            self.id.push(id);
            self.bin_start.push(*bin_start);
            self.revision.push(*revision);
            self.site.push(site);
            self.camera.push(camera);
            self.bin_seconds.push(*bin_seconds);
            self.partial.push(*partial);
            self.covered.push(*covered);
            self.payload.push(payload);
        }
    }
}

#[derive(Default)]
struct EventColumns<'a> {
    id: Vec<&'a str>,
    at: Vec<SystemTime>,
    site: Vec<&'a str>,
    camera: Vec<&'a str>,
    rule: Vec<&'a str>,
    kind: Vec<&'a str>,
    class: Vec<&'a str>,
    payload: Vec<&'a Value>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, r: &'a Row) {
        if let Row::Event { id, at, site, camera, rule, kind, class, payload } = r {
            self.id.push(id);
            self.at.push(*at);
            self.site.push(site);
            self.camera.push(camera);
            self.rule.push(rule);
            self.kind.push(kind);
            self.class.push(class);
            self.payload.push(payload);
        }
    }
}

#[derive(Default)]
struct DetectorColumns<'a> {
    id: Vec<&'a str>,
    at: Vec<SystemTime>,
    site: Vec<&'a str>,
    camera: Vec<&'a str>,
    detector: Vec<&'a str>,
    channel: Vec<i32>,
    code: Vec<i32>,
}

impl<'a> DetectorColumns<'a> {
    fn push(&mut self, r: &'a Row) {
        if let Row::Detector { id, at, site, camera, detector, channel, code } = r {
            self.id.push(id);
            self.at.push(*at);
            self.site.push(site);
            self.camera.push(camera);
            self.detector.push(detector);
            self.channel.push(*channel);
            self.code.push(*code);
        }
    }
}

/// The batch's reports, one per id: the highest revision (the first of equals).
fn highest_revisions(rows: &[Row]) -> Vec<&Row> {
    let mut kept: Vec<&Row> = Vec::new();
    let mut at: std::collections::HashMap<(&str, SystemTime), usize> = std::collections::HashMap::new();
    for r in rows {
        let Row::Report { id, bin_start, revision, .. } = r else { continue };
        match at.get(&(id.as_str(), *bin_start)) {
            Some(&i) => {
                if matches!(kept[i], Row::Report { revision: k, .. } if k < revision) {
                    kept[i] = r;
                }
            }
            None => {
                at.insert((id.as_str(), *bin_start), kept.len());
                kept.push(r);
            }
        }
    }
    kept
}

/// Writes one batch in one transaction, creating the days' partitions it needs first. `partitions`:
/// those known to exist (updated only after the commit).
pub async fn write(
    client: &mut tokio_postgres::Client,
    rows: &[Row],
    partitions: &mut HashSet<(&'static str, String)>,
) -> Result<Written, CentreError> {
    let mut needed: Vec<(&'static str, String, String, String)> = Vec::new();
    for r in rows {
        let (table, t) = match r {
            Row::Report { bin_start, .. } => ("reports", *bin_start),
            Row::Event { at, .. } => ("events", *at),
            Row::Detector { at, .. } => ("detector_events", *at),
            _ => continue,
        };
        let (name, from, to) = day(t);
        if !partitions.contains(&(table, name.clone())) && !needed.iter().any(|n| n.0 == table && n.1 == name) {
            needed.push((table, name, from, to));
        }
    }
    // One multi-row statement per table (arrays unnested server-side): a batch is a handful of round
    // trips whatever its size. A report id may come twice in one batch (a redelivery, or revision 2
    // right behind 1): only the highest revision goes in, as `ON CONFLICT DO UPDATE` may not touch a
    // row twice in one statement.
    let reports = highest_revisions(rows);
    let (mut events, mut detector, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        match r {
            Row::Report { .. } => {}
            Row::Event { .. } => events.push(r),
            Row::Detector { .. } => detector.push(r),
            Row::Status { .. } | Row::Dead { .. } => other.push(r),
        }
    }
    let n_reports = rows.iter().filter(|r| matches!(r, Row::Report { .. })).count() as u64;
    let tx = client.transaction().await.map_err(pg)?;
    for (table, name, from, to) in &needed {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table}_{name} PARTITION OF {table} FOR VALUES FROM ('{from}') TO ('{to}')"
        ))
        .await
        .map_err(pg)?;
    }
    let mut w = Written::default();
    if !reports.is_empty() {
        let mut c = ReportColumns::default();
        for r in &reports {
            c.push(r);
        }
        let stored = tx
            .execute(
                "INSERT INTO reports (id, bin_start, revision, site, camera, bin_seconds, partial, covered_seconds, payload)
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int4[], $4::text[], $5::text[], $6::int4[],
                                      $7::bool[], $8::float8[], $9::jsonb[])
                 ON CONFLICT (bin_start, id) DO UPDATE SET revision = EXCLUDED.revision, partial = EXCLUDED.partial,
                     covered_seconds = EXCLUDED.covered_seconds, payload = EXCLUDED.payload,
                     received_at = clock_timestamp()
                 WHERE reports.revision < EXCLUDED.revision",
                &[&c.id, &c.bin_start, &c.revision, &c.site, &c.camera, &c.bin_seconds, &c.partial, &c.covered, &c.payload],
            )
            .await
            .map_err(pg)?;
        w.reports = stored;
        w.stale = n_reports - stored;
    }
    if !events.is_empty() {
        let mut c = EventColumns::default();
        for r in &events {
            c.push(r);
        }
        w.events = tx
            .execute(
                "INSERT INTO events (id, at, site, camera, rule, kind, class, payload)
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::jsonb[])
                 ON CONFLICT DO NOTHING",
                &[&c.id, &c.at, &c.site, &c.camera, &c.rule, &c.kind, &c.class, &c.payload],
            )
            .await
            .map_err(pg)?;
    }
    if !detector.is_empty() {
        let mut c = DetectorColumns::default();
        for r in &detector {
            c.push(r);
        }
        w.detector = tx
            .execute(
                "INSERT INTO detector_events (id, at, site, camera, detector, channel, event_code)
                 SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int4[],
                                      $7::int4[])
                 ON CONFLICT DO NOTHING",
                &[&c.id, &c.at, &c.site, &c.camera, &c.detector, &c.channel, &c.code],
            )
            .await
            .map_err(pg)?;
    }
    for r in other {
        match r {
            Row::Status { site, state, version, at } => {
                w.status += tx
                    .execute(
                        "INSERT INTO box_status (site, state, version, at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (site) DO UPDATE SET state = EXCLUDED.state, version = EXCLUDED.version,
                             at = EXCLUDED.at, received_at = clock_timestamp()
                         WHERE box_status.at <= EXCLUDED.at",
                        &[site, state, version, at],
                    )
                    .await
                    .map_err(pg)?;
            }
            Row::Dead { topic, error, payload } => {
                tx.execute(
                    "INSERT INTO dead_letters (topic, error, payload) VALUES ($1, $2, $3)",
                    &[topic, error, payload],
                )
                .await
                .map_err(pg)?;
                w.dead += 1;
            }
            _ => {}
        }
    }
    tx.commit().await.map_err(pg)?;
    for (table, name, _, _) in needed {
        partitions.insert((table, name));
    }
    Ok(w)
}

/// Drops the day partitions that end before `cutoff` (retention): whole days go at once.
pub async fn drop_partitions_before(
    client: &tokio_postgres::Client,
    tables: &[&str],
    cutoff: SystemTime,
) -> Result<Vec<String>, CentreError> {
    let (last, _, _) = day(cutoff);
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = ANY($1)",
            &[&tables],
        )
        .await
        .map_err(pg)?;
    let mut dropped = Vec::new();
    for r in rows {
        let name: String = r.get(0);
        let Some(date) = name.rsplit('_').next().filter(|d| d.len() == 8 && d.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        if date < last.as_str() {
            client.batch_execute(&format!("DROP TABLE IF EXISTS {name}")).await.map_err(pg)?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// The topics this ingester takes, in its group.
pub fn subscriptions(group: &str) -> Vec<String> {
    ["junction/v1/+/+/flow", "junction/v1/+/+/events", "junction/v1/+/+/detector", "junction/v1/+/status"]
        .iter()
        .map(|t| format!("$share/{group}/{t}"))
        .collect()
}

/// Messages received and not yet committed, and what has been written so far.
struct Batch {
    /// Each with the connection it came by (see `Acks`).
    pending: Vec<(u64, Publish)>,
    /// Day partitions known to exist.
    partitions: HashSet<(&'static str, String)>,
    total: Written,
    metrics: std::sync::Arc<CentreMetrics>,
    acks: std::sync::Arc<Acks>,
}

/// A filter this ingester never subscribes to: unsubscribing from it is a request that wakes an event
/// loop idle in `poll` (the broker answers UNSUBACK and changes nothing), so that acknowledgements
/// waiting for it go out at once.
const WAKE_FILTER: &str = "junction/v1/-/wake";

/// Acknowledgements of committed messages on their way to the broker. The batch loop adds them; the
/// event loop's task writes every one that is ready, in delivery order, in one flush, before each
/// `poll` and while it waits for room in the intake. rumqttc's own path (`AsyncClient::ack`) takes
/// one request per turn of its loop while a turn reads up to ten packets: draining a backlog, the
/// acknowledgements fell ever further behind the reads (17 500 waiting behind a 20 000-message
/// backlog; under a sustained overload a million, the keepalive answer lost behind them, the
/// connection dropped and landing stalled).
#[derive(Default)]
struct Acks {
    /// (connection, packet id) of committed QoS 1 messages, in delivery order.
    ready: std::sync::Mutex<std::collections::VecDeque<(u64, u16)>>,
    /// The connection the event loop is on, counted from 1. A packet id is acknowledged only on the
    /// connection its message came by: after a reconnection the broker sends the unacknowledged
    /// messages again and those are acknowledged instead (rumqttc drops queued acknowledgements
    /// on a reconnection for the same reason: a packet id may name another message by then).
    connection: std::sync::atomic::AtomicU64,
    /// Set by the event loop's task before it writes what is ready and polls; a batch that commits
    /// meanwhile wakes it (see `WAKE_FILTER`).
    parked: std::sync::atomic::AtomicBool,
    /// A wake-up is in rumqttc's request channel (at most one at a time, so that the channel never
    /// fills); cleared when it has gone out, or when a new connection starts.
    waking: std::sync::atomic::AtomicBool,
    /// Rings when acknowledgements are added, for the event loop's task waiting for intake room.
    added: tokio::sync::Notify,
}

impl Acks {
    fn queue(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, u16)>> {
        // A panic while holding the lock leaves a queue of plain numbers: still usable.
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds committed messages' acknowledgements and makes sure the event loop's task writes them.
    fn add(&self, acks: impl Iterator<Item = (u64, u16)>, client: &AsyncClient, metrics: &CentreMetrics) {
        let waiting = {
            let mut q = self.queue();
            q.extend(acks);
            q.len()
        };
        metrics.unacked.set(waiting as i64);
        self.added.notify_one();
        // Checked after adding (the task sets `parked` before it takes what is ready): either the task
        // takes these on its way into `poll`, or it is in `poll` and this wakes it (or the wake-up
        // already waiting in the channel does).
        use std::sync::atomic::Ordering::SeqCst;
        if self.parked.load(SeqCst) && !self.waking.swap(true, SeqCst) && client.try_unsubscribe(WAKE_FILTER).is_err() {
            self.waking.store(false, SeqCst);
        }
    }

    /// Writes every ready acknowledgement of the current connection and flushes them; those of
    /// an ended connection are dropped. Nothing is written while disconnected.
    async fn write(&self, events: &mut rumqttc::EventLoop, metrics: &CentreMetrics) {
        // Bounded like rumqttc's own flushes; what is not flushed stays buffered for the next one.
        let timeout = Duration::from_secs(events.network_options.connection_timeout());
        let Some(network) = events.network.as_mut() else {
            return;
        };
        let connection = self.connection.load(std::sync::atomic::Ordering::SeqCst);
        let ready: Vec<(u64, u16)> = self.queue().drain(..).collect();
        if ready.is_empty() {
            return;
        }
        let (mut written, mut dropped, mut broken) = (0u64, 0u64, false);
        for &(on, pkid) in &ready {
            // Into the write buffer. A failure is the connection's (the next poll reports it): the
            // rest are dropped with it, and their messages come again on the next connection.
            if on != connection || broken {
                dropped += 1;
            } else if network.write(Packet::PubAck(rumqttc::PubAck::new(pkid))).await.is_err() {
                (broken, dropped) = (true, dropped + 1);
            } else {
                written += 1;
            }
        }
        metrics.acks_dropped.inc_by(dropped);
        match tokio::time::timeout(timeout, network.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "centre: writing acknowledgements"),
            Err(_) => tracing::warn!("centre: acknowledgements not flushed within the connection timeout"),
        }
        metrics.acks_sent.inc_by(written);
        metrics.unacked.set(self.queue().len() as i64);
    }
}

impl Batch {
    /// Writes each row in its own transaction; a row PostgreSQL refuses becomes a dead letter with the
    /// refusal, so one poison message cannot hold back the rest. (Known partitions are forgotten
    /// first: retention may have dropped one that a late message needs.)
    async fn write_alone(&mut self, db: &mut tokio_postgres::Client, rows: &[Row]) -> Result<Written, CentreError> {
        self.partitions.clear();
        let mut total = Written::default();
        for (row, (_, p)) in rows.iter().zip(&self.pending) {
            match write(db, std::slice::from_ref(row), &mut self.partitions).await {
                Ok(w) => total.add(w),
                Err(CentreError::Refused(why)) => {
                    tracing::warn!(topic = %p.topic, error = %why, "centre: message refused by PostgreSQL; kept in dead_letters");
                    let dead = dead_letter(&p.topic, format!("refused by PostgreSQL: {why}"), &p.payload);
                    total.add(write(db, std::slice::from_ref(&dead), &mut self.partitions).await?);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Writes what is pending in one transaction and, once it committed, acknowledges it: now, and
    /// only now, the broker may forget those messages. On an error everything stays pending.
    async fn flush(
        &mut self,
        db: &mut tokio_postgres::Client,
        client: &AsyncClient,
        validators: &Validators,
    ) -> Result<(), CentreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let rows: Vec<Row> = self.pending.iter().map(|(_, p)| classify(&p.topic, &p.payload, validators)).collect();
        let w = match write(db, &rows, &mut self.partitions).await {
            Ok(w) => w,
            // Something in the rows (PostgreSQL refused it, the connection is fine): the batch is
            // written a message at a time, and what is refused alone goes to dead letters.
            Err(CentreError::Refused(why)) => {
                tracing::warn!(error = %why, messages = rows.len(), "centre: batch refused; writing it message by message");
                self.metrics.batch_failures.inc();
                self.write_alone(db, &rows).await?
            }
            Err(e) => return Err(e),
        };
        // QoS 0 needs no acknowledgement (subscriptions are QoS 1, so nothing comes at QoS 2).
        let acks = self.pending.drain(..).filter(|(_, p)| p.qos != QoS::AtMostOnce).map(|(on, p)| (on, p.pkid));
        self.acks.add(acks, client, &self.metrics);
        if w.dead > 0 {
            tracing::warn!(dead = w.dead, "centre: invalid messages kept in dead_letters");
        }
        self.total.add(w);
        self.metrics.count(&w);
        self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.pending.set(0);
        tracing::debug!(
            ?w,
            messages = rows.len(),
            seconds = started.elapsed().as_secs_f64(),
            "centre: batch committed"
        );
        Ok(())
    }
}

/// How long the centre keeps each kind of row (days; 0 keeps them for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub reports_days: u32,
    /// Per-vehicle events and loop detector events: the bulk of the rows.
    pub events_days: u32,
    /// Dead letters (rows, by the time they were received).
    pub dead_letters_days: u32,
}

async fn retention(db: &tokio_postgres::Client, r: &Retention) {
    for (tables, days) in [(&["reports"][..], r.reports_days), (&["events", "detector_events"][..], r.events_days)] {
        if days == 0 {
            continue;
        }
        let cutoff = SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400);
        match drop_partitions_before(db, tables, cutoff).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(?dropped, days, "centre: retention dropped partitions")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "centre: retention"),
        }
    }
    if r.dead_letters_days > 0 {
        let days = f64::from(r.dead_letters_days);
        match db
            .execute("DELETE FROM dead_letters WHERE received_at < now() - $1::float8 * interval '1 day'", &[&days])
            .await
        {
            Ok(n) if n > 0 => tracing::info!(deleted = n, days, "centre: retention deleted dead letters"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "centre: dead letters' retention"),
        }
    }
}

/// Runs the ingester until `stop` is set: batches of messages, each committed then acknowledged.
pub fn run(cfg: &CentreConfig, stop: &std::sync::atomic::AtomicBool) -> Result<(), CentreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CentreError::Runtime(e.to_string()))?;
    rt.block_on(ingest(cfg, stop))
}

/// The TLS side of the PostgreSQL connection: rustls with the given CA (or the system's), used as
/// the connection string's `sslmode` says (`disable`; `prefer`, the default, TLS when the server offers
/// it; `require`). Unlike libpq's `require`, the server's certificate and name are always verified.
pub fn postgres_tls(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, CentreError> {
    let path = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let bad = |m: String| CentreError::Postgres(format!("--postgres-ca-file {}: {m}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]).filter_map(Result::ok) {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

async fn connect(conninfo: &str, ca_file: Option<&std::path::Path>) -> Result<tokio_postgres::Client, CentreError> {
    use tokio_postgres::config::{Host, SslMode};
    let config: tokio_postgres::Config = conninfo.parse().map_err(pg)?;
    // TLS when the connection string asks for it (`sslmode=require`), verified. `prefer` (the default)
    // and `disable` stay plain: an unverified TLS (libpq's `prefer`) stops no one in the middle, and a
    // verified one would refuse the self-signed certificate Debian's PostgreSQL ships with. PostgreSQL
    // has no TLS over its Unix socket (the README's `host=/run/postgresql`).
    let over_tcp = config.get_hosts().iter().all(|h| matches!(h, Host::Tcp(_))) || !config.get_hostaddrs().is_empty();
    if config.get_ssl_mode() != SslMode::Require || !over_tcp {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(pg)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "postgres connection ended");
            }
        });
        return Ok(client);
    }
    let (client, connection) = config.connect(postgres_tls(ca_file)?).await.map_err(|e| {
        // A certificate the CA did not sign, or a name it does not carry: say which setting, with the
        // causes (tokio-postgres says only "error performing TLS handshake").
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        if text.to_lowercase().contains("certificate") {
            CentreError::Postgres(format!("{text} (the server's certificate against --postgres-ca-file)"))
        } else {
            pg(e)
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

async fn ingest(cfg: &CentreConfig, stop: &std::sync::atomic::AtomicBool) -> Result<(), CentreError> {
    use std::sync::atomic::Ordering;
    let validators = Validators::new()?;
    // The broker's settings are checked (TLS files readable, a password read) before anything starts.
    let conn = junction_common::mqtt::connection_settings(&cfg.mqtt).map_err(|e| CentreError::Mqtt(e.to_string()))?;
    let metrics = std::sync::Arc::new(CentreMetrics::new());
    if let Some(addr) = cfg.metrics {
        serve_metrics(addr, metrics.clone()).await?;
    }
    let mut db = connect(&cfg.postgres, cfg.postgres_ca_file.as_deref()).await?;
    let applied = migrate(&mut db).await?;
    tracing::info!(?applied, "centre: database ready");
    let mut opts = MqttOptions::new(&cfg.client_id, &conn.broker.host, conn.broker.port);
    if let Some(tls) = conn.tls {
        opts.set_transport(rumqttc::Transport::tls_with_config(tls));
    }
    if let Some((user, password)) = conn.credentials {
        opts.set_credentials(user, password);
    }
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_max_packet_size(junction_schema::wire::MAX_PACKET_BYTES, junction_schema::wire::MAX_PACKET_BYTES);
    opts.set_keep_alive(Duration::from_secs(30));
    // Requests are few: the subscriptions, wake-ups (`WAKE_FILTER`) and the final disconnect.
    let (client, mut events) = AsyncClient::new(opts, 64);
    // The event loop runs in its own task and hands publishes over a channel: `poll` is never
    // cancelled half-way (a timeout around it lost messages), and the batch loop waits on the channel.
    // Bounded (four batches): when the database is slower than the boxes, the event loop stops
    // reading and the broker's TCP send blocks, which bounds the ingester's memory whatever the
    // broker's in-flight window (Mosquitto 2.0.11 does not hold to it: it sent an overloaded ingester
    // 696 090 unacknowledged messages despite max_inflight_messages 1000; unbounded, they all queued
    // here). Neither loop waits on the other: the batch loop hands acknowledgements to `Acks` and
    // the event loop's task writes them, also while it waits for room in the intake.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Publish)>(cfg.batch.max(1) * 4);
    let acks = std::sync::Arc::new(Acks::default());
    let (subscriber, group) = (client.clone(), cfg.group.clone());
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller_stopping = stopping.clone();
    let poller_metrics = metrics.clone();
    let poller_acks = acks.clone();
    let poller = tokio::spawn(async move {
        let (acks, metrics) = (poller_acks, poller_metrics);
        // When the last keepalive ping went out, and when the last packet came in.
        let (mut pinged, mut heard) = (None::<Instant>, Instant::now());
        loop {
            // A backlog of publishes queued at the broker ahead of the ping's answer delays it past
            // rumqttc's deadline (the next ping), which would drop a connection that is plainly alive:
            // a packet that came in after the ping answers for it.
            if events.state.await_pingresp && pinged.is_some_and(|p| heard > p) {
                events.state.await_pingresp = false;
            }
            acks.parked.store(true, Ordering::SeqCst);
            acks.write(&mut events, &metrics).await;
            let polled = events.poll().await;
            acks.parked.store(false, Ordering::SeqCst);
            if matches!(polled, Ok(Event::Incoming(_))) {
                heard = Instant::now();
            }
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let connection = acks.connection.fetch_add(1, Ordering::SeqCst) + 1;
                    // rumqttc keeps or drops the old connection's requests by the session's presence.
                    acks.waking.store(false, Ordering::SeqCst);
                    metrics.broker_connected.set(1);
                    metrics.connections.inc();
                    tracing::info!(
                        session_present = ack.session_present,
                        connection,
                        "centre: connected to the broker"
                    );
                    for t in subscriptions(&group) {
                        if let Err(e) = subscriber.try_subscribe(t, QoS::AtLeastOnce) {
                            tracing::error!(error = %e, "centre: subscribe");
                        }
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::PingReq)) => pinged = Some(Instant::now()),
                Ok(Event::Outgoing(rumqttc::Outgoing::Unsubscribe(_))) => acks.waking.store(false, Ordering::SeqCst),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.qos == QoS::AtMostOnce {
                        metrics.qos0.inc();
                    }
                    // Room in the intake; committed batches' acknowledgements keep going out meanwhile.
                    let room = loop {
                        tokio::select! {
                            biased;
                            room = tx.reserve() => break room,
                            () = acks.added.notified() => acks.write(&mut events, &metrics).await,
                        }
                    };
                    match room {
                        Ok(room) => room.send((acks.connection.load(Ordering::SeqCst), p)),
                        Err(_) => break,
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) if poller_stopping.load(Ordering::Relaxed) => break,
                Err(e) => {
                    metrics.broker_connected.set(0);
                    tracing::warn!(error = %e, "centre: broker connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    let mut batch = Batch {
        pending: Vec::new(),
        partitions: HashSet::new(),
        total: Written::default(),
        metrics: metrics.clone(),
        acks: acks.clone(),
    };
    // Under systemd (Type=notify): ready once the database is migrated and the subscriptions asked
    // for; the loop below pets the watchdog, so an ingester that hangs is restarted.
    let mut notifier = junction_common::telemetry::Notifier::from_env();
    notifier.ready();
    let mut first_at: Option<Instant> = None;
    let mut failures = 0u32;
    // Retention runs at start and then hourly (dropping a day's partition is cheap; a day is the unit).
    let mut next_retention = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        notifier.alive();
        if Instant::now() >= next_retention {
            next_retention = Instant::now() + Duration::from_secs(3600);
            retention(&db, &cfg.retention).await;
        }
        let due = first_at.map(|t| t + cfg.batch_wait);
        let flush_now = batch.pending.len() >= cfg.batch || due.is_some_and(|d| Instant::now() >= d);
        if flush_now {
            match batch.flush(&mut db, &client, &validators).await {
                Ok(()) => {
                    first_at = None;
                    failures = 0;
                }
                Err(e) => {
                    let wait =
                        junction_common::retry::backoff(failures, Duration::from_millis(500), Duration::from_secs(30));
                    failures += 1;
                    metrics.batch_failures.inc();
                    tracing::error!(error = %e, retry_in_s = wait.as_secs_f64(), held = batch.pending.len(), "centre: batch not written; kept and retried");
                    tokio::time::sleep(wait).await;
                    if db.is_closed() {
                        match connect(&cfg.postgres, cfg.postgres_ca_file.as_deref()).await {
                            Ok(c) => db = c,
                            Err(e) => tracing::error!(error = %e, "centre: reconnecting to postgres"),
                        }
                    }
                }
            }
            continue;
        }
        let wait = due.map_or(Duration::from_millis(200), |d| {
            d.saturating_duration_since(Instant::now()).min(Duration::from_millis(200))
        });
        match tokio::time::timeout(wait, rx.recv()).await {
            Err(_) => {}
            Ok(Some(p)) => {
                first_at.get_or_insert_with(Instant::now);
                batch.pending.push(p);
                metrics.messages.inc();
                metrics.pending.set((batch.pending.len() + rx.len()) as i64);
            }
            Ok(None) => break,
        }
    }
    // Stopping: what is held is written and acknowledged (else it would wait for this client id to
    // come back), then the session ends cleanly.
    notifier.stopping();
    if let Err(e) = batch.flush(&mut db, &client, &validators).await {
        tracing::error!(error = %e, held = batch.pending.len(), "centre: last batch not written; the broker keeps it");
    }
    let total = batch.total;
    stopping.store(true, Ordering::Relaxed);
    // The last acknowledgements (handed to `Acks` by that flush, written by the event loop's task
    // before it takes the disconnect request that follows them), then a clean disconnect; meanwhile
    // what the event loop still brings is taken and left unacknowledged (the broker delivers it
    // again), so that it never waits on us.
    let drainer = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    if tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await.is_err() {
        tracing::warn!("centre: the disconnect request was not taken within 5 s");
    }
    let closed = tokio::time::timeout(Duration::from_secs(2), poller).await;
    drainer.abort();
    if closed.is_err() {
        tracing::warn!("centre: the broker connection did not close within 2 s");
    }
    tracing::info!(
        reports = total.reports,
        stale = total.stale,
        events = total.events,
        detector = total.detector,
        status = total.status,
        dead = total.dead,
        "centre: stopped"
    );
    Ok(())
}

/// A message as the ingester receives it, on each kind of topic: its checks (schema, topic, times,
/// ranges, text PostgreSQL cannot store) decide between a row and a dead letter. The fuzz target
/// `centre_payload` (pipeline/fuzz) and the box's stable smoke test call it.
#[doc(hidden)]
pub fn fuzz_payload(data: &[u8]) {
    static VALIDATORS: std::sync::OnceLock<Option<Validators>> = std::sync::OnceLock::new();
    let Some(v) = VALIDATORS.get_or_init(|| Validators::new().ok()) else { return };
    for topic in
        ["junction/v1/s1/c1/flow", "junction/v1/s1/c1/events", "junction/v1/s1/c1/detector", "junction/v1/s1/status"]
    {
        let _ = classify(topic, data, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Value {
        serde_json::json!({
            "schema": "junction.flow.v1", "id": "s/c/2026-11-26T08:00:00Z/60", "revision": 2, "site": "s",
            "camera": "c", "bin_start": "2026-11-26T08:00:00Z", "bin_seconds": 60, "partial": false,
            "covered_seconds": 59.9, "gaps": [], "frames_analysed": 600, "frames_dropped": 0, "volumes": [],
            "flows": [], "zones": [], "speeds": [], "headways": [], "movements": [],
            "quality": {"recrossings_suppressed": 0, "slow_crossings_ignored": 0, "implausible_speeds": 0,
                        "unmatched_movements": 0, "track_fragments": 0}
        })
    }

    #[test]
    fn a_valid_report_is_a_row_and_anything_else_a_dead_letter_saying_why() {
        let v = Validators::new().expect("schemas");
        let ok = classify("junction/v1/s/c/flow", flow().to_string().as_bytes(), &v);
        assert!(matches!(ok, Row::Report { revision: 2, bin_seconds: 60, .. }), "{ok:?}");
        let mut old = flow();
        old.as_object_mut().map(|o| o.remove("revision"));
        assert!(matches!(
            classify("junction/v1/s/c/flow", old.to_string().as_bytes(), &v),
            Row::Report { revision: 1, .. }
        ));
        let dead = |topic: &str, payload: &[u8]| match classify(topic, payload, &v) {
            Row::Dead { error, .. } => error,
            other => panic!("not a dead letter: {other:?}"),
        };
        assert!(dead("junction/v1/s/c/flow", b"{not json").contains("not JSON"));
        let mut bad = flow();
        bad["bin_seconds"] = Value::from("sixty");
        assert!(dead("junction/v1/s/c/flow", bad.to_string().as_bytes()).contains("bin_seconds"));
        assert!(dead("junction/v1/s/other/flow", flow().to_string().as_bytes()).contains("topic names"));
        assert!(dead("elsewhere/x", b"{}").contains("not a junction/v1 topic"));
    }

    #[test]
    fn a_batch_keeps_one_report_per_id_at_its_highest_revision() {
        let v = Validators::new().unwrap();
        let row = |minute: u32, revision: u32| {
            let mut f = flow();
            let start = format!("2026-11-26T08:{minute:02}:00Z");
            f["id"] = format!("s/c/{start}/60").into();
            f["bin_start"] = start.into();
            f["bin_seconds"] = 60.into();
            f["revision"] = revision.into();
            classify("junction/v1/s/c/flow", f.to_string().as_bytes(), &v)
        };
        let rows = [row(0, 1), row(1, 2), row(0, 3), row(1, 1), row(0, 2), row(2, 1)];
        assert!(rows.iter().all(|r| matches!(r, Row::Report { .. })), "{rows:?}");
        let got: Vec<(String, i32)> = highest_revisions(&rows)
            .into_iter()
            .map(|r| match r {
                Row::Report { id, revision, .. } => (id[4..].to_owned(), *revision),
                _ => unreachable!(),
            })
            .collect();
        let want = [("2026-11-26T08:00:00Z/60", 3), ("2026-11-26T08:01:00Z/60", 2), ("2026-11-26T08:02:00Z/60", 1)];
        assert_eq!(got, want.map(|(i, r)| (i.to_owned(), r)));
    }

    #[test]
    fn days_and_subscriptions() {
        let t = humantime::parse_rfc3339("2026-11-26T23:59:59Z").expect("time");
        assert_eq!(day(t), ("20261126".into(), "2026-11-26T00:00:00Z".into(), "2026-11-27T00:00:00Z".into()));
        assert_eq!(subscriptions("g")[3], "$share/g/junction/v1/+/status");
    }
}
