//! The box's own store (SQLite): every FlowReport and every traffic event, kept whether or not a
//! broker is configured. It will also be the MQTT outbox (`published_at`).
//!
//! Schema changes are numbered migrations applied in order at open (`PRAGMA user_version`). Each
//! closed bin is committed in its own transaction, so a crash loses at most the bins still open.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use junction_schema::wire;
use rusqlite::{Connection, OptionalExtension, params};

use crate::aggregate::{BinState, FlowReport};
use crate::analytics::{EventKind, TrafficEvent};

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: reports (the outbox) and events.
    "CREATE TABLE reports (
        id TEXT PRIMARY KEY,              -- site/camera/bin_start/bin_seconds: stable across retries
        site TEXT NOT NULL,
        camera TEXT NOT NULL,
        bin_start TEXT NOT NULL,          -- RFC 3339 UTC
        bin_seconds INTEGER NOT NULL,
        partial INTEGER NOT NULL,
        payload TEXT NOT NULL,            -- the FlowReport as JSON
        stored_at TEXT NOT NULL,
        published_at TEXT                 -- NULL until the broker acknowledges it
    );
    CREATE INDEX reports_unpublished ON reports (published_at, stored_at);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        camera TEXT NOT NULL,
        rule TEXT NOT NULL,               -- line or zone id
        kind TEXT NOT NULL,               -- crossing | zone_enter | zone_exit
        direction TEXT,                   -- in | out, for crossings
        class TEXT NOT NULL,
        track INTEGER NOT NULL,
        pts_s REAL NOT NULL,              -- stream time, seconds
        wall TEXT NOT NULL,               -- RFC 3339 UTC, milliseconds
        dwell_s REAL                      -- for zone exits
    );
    CREATE INDEX events_wall ON events (camera, wall);",
    // 2: events are an outbox too (the optional per-vehicle MQTT topic); movements and speeds; loop
    // detector on/off events (ATSPM 82/81), their own outbox for the detector topic.
    "ALTER TABLE events ADD COLUMN published_at TEXT;
    CREATE INDEX events_unpublished ON events (published_at, seq);
    ALTER TABLE events ADD COLUMN to_rule TEXT;       -- movements: the exit approach (rule: the entry)
    ALTER TABLE events ADD COLUMN speed_kmh REAL;     -- ground speed at the event, calibrated cameras
    ALTER TABLE events ADD COLUMN speed_ok INTEGER;   -- 0: implausible (not averaged in)
    CREATE TABLE detector_events (
        seq INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        camera TEXT NOT NULL,
        detector TEXT NOT NULL,           -- loop id
        channel INTEGER NOT NULL,         -- ATSPM event parameter
        code INTEGER NOT NULL,            -- 82 on, 81 off
        wall TEXT NOT NULL,               -- RFC 3339 UTC, tenths of a second
        published_at TEXT
    );
    CREATE INDEX detector_unpublished ON detector_events (published_at, seq);
    CREATE INDEX detector_wall ON detector_events (camera, wall);",
    // 3: revised bins: a report stored again under its id carries a higher revision; the last bin of
    // each camera and length as a restarted box continues it (open: a checkpoint; closed: reported).
    "ALTER TABLE reports ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE bin_states (
        site TEXT NOT NULL,
        camera TEXT NOT NULL,
        bin_seconds INTEGER NOT NULL,
        id TEXT NOT NULL,                 -- the bin's report id
        revision INTEGER NOT NULL,
        reported INTEGER NOT NULL,        -- 1: closed and stored in reports; 0: a checkpoint of an open bin
        state TEXT NOT NULL,              -- aggregate::BinState as JSON
        saved_at TEXT NOT NULL,
        PRIMARY KEY (site, camera, bin_seconds)
    );",
    // 4: the share of the track's class vote its class won (crate::track), 0-1.
    "ALTER TABLE events ADD COLUMN class_share REAL;",
    // 5: loop events' time in milliseconds, for their ids: two `on` of one loop within a tenth of a
    // second (on, off, on) had one id, and the centre kept one of them.
    "ALTER TABLE detector_events ADD COLUMN wall_ms TEXT;",
    // 6: a message the broker refused (MQTT 5 reason code) is set aside until `refused_until` (RFC 3339
    // UTC, ms), its refusals counted, so the rest of the outbox flows past it.
    "ALTER TABLE reports ADD COLUMN refused_until TEXT;
    ALTER TABLE reports ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN refused_until TEXT;
    ALTER TABLE events ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE detector_events ADD COLUMN refused_until TEXT;
    ALTER TABLE detector_events ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;",
];

/// ATSPM high-resolution controller events (Indiana): detector on, detector off.
pub const ATSPM_DETECTOR_ON: u8 = 82;
pub const ATSPM_DETECTOR_OFF: u8 = 81;

/// A loop detector event as ATSPM codes it: (event code, parameter = channel).
fn atspm_event(kind: &EventKind) -> Option<(u8, u16)> {
    match *kind {
        EventKind::LoopOn { channel } => Some((ATSPM_DETECTOR_ON, channel)),
        EventKind::LoopOff { channel } => Some((ATSPM_DETECTOR_OFF, channel)),
        _ => None,
    }
}

/// RFC 3339 UTC with tenths of a second (the resolution of controller event logs), truncated.
pub fn tenths(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs());
    let s = humantime::format_rfc3339_seconds(whole).to_string();
    format!("{}.{}Z", s.trim_end_matches('Z'), d.subsec_millis() / 100)
}

/// A per-vehicle event as the store keeps it and the box publishes it (`junction.event.v1`); loop
/// detector events are [`DetectorRecord`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub rule: String,
    pub kind: String,
    /// Crossings: the side the vehicle went to (in/out); movements: the turn.
    pub direction: Option<String>,
    pub class: String,
    pub track: i64,
    /// Seconds on the stream's clock.
    pub pts_s: f64,
    /// UTC wall time, RFC 3339 with milliseconds.
    pub wall: String,
    /// Zone exits: seconds in the zone.
    pub dwell_s: Option<f64>,
    /// Movements: the approach the vehicle left by.
    pub to_rule: Option<String>,
    pub speed_kmh: Option<f64>,
    pub speed_ok: Option<bool>,
    /// The share of the track's class vote its class won, 0–1 (`None`: stored before it was kept).
    pub class_share: Option<f64>,
}

impl EventRecord {
    /// `None` for loop detector events (they are [`DetectorRecord`]s).
    pub fn of(e: &TrafficEvent) -> Option<Self> {
        let (kind, direction, dwell_s, to_rule) = match &e.kind {
            EventKind::Crossing { direction } => ("crossing", Some(direction.as_str()), None, None),
            EventKind::ZoneEnter => ("zone_enter", None, None, None),
            EventKind::ZoneExit { dwell } => ("zone_exit", None, Some(dwell.as_secs_f64()), None),
            EventKind::Movement { to, turn } => ("movement", Some(turn.as_str()), None, Some(to.to_string())),
            EventKind::LoopOn { .. } | EventKind::LoopOff { .. } => return None,
        };
        Some(Self {
            rule: e.rule.to_string(),
            kind: kind.into(),
            direction: direction.map(Into::into),
            class: e.class.as_str().into(),
            track: e.track as i64,
            pts_s: e.pts.as_secs_f64(),
            wall: humantime::format_rfc3339_millis(e.wall).to_string(),
            dwell_s,
            to_rule,
            speed_kmh: e.speed.map(|s| f64::from(s.kmh)),
            speed_ok: e.speed.map(|s| s.plausible),
            class_share: Some(f64::from(e.class_share)),
        })
    }

    /// The message the box publishes.
    pub fn message(&self, site: &str, camera: &str) -> wire::Event {
        wire::Event::new(
            site,
            camera,
            &wire::EventFields {
                rule: &self.rule,
                kind: &self.kind,
                direction: self.direction.as_deref(),
                class: &self.class,
                track: self.track,
                pts_s: self.pts_s,
                at: &self.wall,
                dwell_s: self.dwell_s,
                to: self.to_rule.as_deref(),
                speed: self.speed_kmh.map(|kmh| (kmh, self.speed_ok.unwrap_or(false))),
                class_share: self.class_share,
            },
        )
    }
}

/// A loop detector event as the store keeps it and the box publishes it (`junction.detector.v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorRecord {
    /// The loop's id.
    pub detector: String,
    pub channel: i64,
    /// ATSPM event code: 82 on, 81 off.
    pub code: i64,
    /// UTC wall time, RFC 3339 in tenths of a second (the resolution of controller logs).
    pub wall: String,
    /// The same in milliseconds, for the id (none in rows stored before it was kept).
    pub wall_ms: Option<String>,
}

impl DetectorRecord {
    /// `None` for anything but loop on/off.
    pub fn of(e: &TrafficEvent) -> Option<Self> {
        let (code, channel) = atspm_event(&e.kind)?;
        Some(Self {
            detector: e.rule.to_string(),
            channel: channel.into(),
            code: code.into(),
            wall: tenths(e.wall),
            wall_ms: Some(humantime::format_rfc3339_millis(e.wall).to_string()),
        })
    }

    /// The message the box publishes; its id is unique per event (an event is a frame's, and frames
    /// are more than a millisecond apart): the time in milliseconds (tenths for rows stored before
    /// milliseconds were kept).
    pub fn message(&self, site: &str, camera: &str) -> wire::Detector {
        let when = self.wall_ms.as_deref().unwrap_or(&self.wall);
        wire::Detector::new(site, camera, &self.detector, self.channel, self.code, &self.wall, when)
    }
}

/// What the box says of an event, on every path: the MQTT topics (through the store's rows), the
/// printer's JSON lines and the console's live stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Message {
    /// A per-vehicle event (`junction.event.v1`).
    Event(wire::Event),
    /// A loop detector's on or off (`junction.detector.v1`).
    Detector(wire::Detector),
}

impl Message {
    /// The message for `e`, seen by `camera` of `site`, as the store would publish it (every event
    /// is one or the other; `None` would be a kind neither knows).
    pub fn of(site: &str, camera: &str, e: &TrafficEvent) -> Option<Self> {
        match DetectorRecord::of(e) {
            Some(d) => Some(Self::Detector(d.message(site, camera))),
            None => EventRecord::of(e).map(|r| Self::Event(r.message(site, camera))),
        }
    }

    /// The JSON object with `"type": "event" | "detector"` added, as the printer and the console send it.
    pub fn typed(&self) -> serde_json::Value {
        let (kind, mut v) = match self {
            Self::Event(e) => ("event", serde_json::to_value(e)),
            Self::Detector(d) => ("detector", serde_json::to_value(d)),
        };
        if let Ok(serde_json::Value::Object(m)) = &mut v {
            m.insert("type".into(), kind.into());
        }
        v.unwrap_or_default()
    }
}

/// A row of the outbox: a report by id at the revision read, a loop detector event or a per-vehicle
/// event by seq. [`Store::next_pending`] hands it out; [`Store::mark_published`] and
/// [`Store::set_aside`] take it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbox {
    Report(String, u32),
    Detector(i64),
    Event(i64),
}

impl Outbox {
    /// Its table, and the condition that picks it (`?1`: the id or seq).
    fn locate(&self) -> (&'static str, String, rusqlite::types::Value) {
        match self {
            Outbox::Report(id, revision) => {
                ("reports", format!("id = ?1 AND revision = {revision}"), id.clone().into())
            }
            Outbox::Detector(seq) => ("detector_events", "seq = ?1".into(), (*seq).into()),
            Outbox::Event(seq) => ("events", "seq = ?1".into(), (*seq).into()),
        }
    }
}

/// The next message of the outbox: its row, the camera it is about and its payload (JSON of its
/// schema, `junction.flow.v1`, `junction.detector.v1` or `junction.event.v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub row: Outbox,
    pub camera: String,
    pub payload: String,
}

/// What [`Store::bound_size`] removed to keep the store under its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizePrune {
    pub events: usize,
    /// Loop detector events the broker had acknowledged.
    pub detector_events: usize,
    /// Daily ATSPM CSV files.
    pub atspm_files: usize,
    /// Reports the broker had already acknowledged.
    pub delivered: usize,
    /// Loop detector events never delivered (before any undelivered report).
    pub undelivered_detector: usize,
    /// Reports never delivered: lost for the traffic centre (logged loudly, counted).
    pub undelivered: usize,
}

impl SizePrune {
    pub fn delivered_rows(&self) -> usize {
        self.events + self.detector_events + self.atspm_files + self.delivered
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Sqlite { path: PathBuf, message: String },
    #[error("store {path}: cannot create its folder: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error(
        "store {path}: in use by another junction run ({holder}); two runs on one store would overwrite each other's checkpoints and reports"
    )]
    InUse { path: PathBuf, holder: String },
}

/// A run's exclusive hold on its store: an advisory lock (flock) on `<store>.lock`, released when the
/// process ends however it ends. The file says which process holds it.
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Connection,
    /// Where loop detector events also go as daily ATSPM CSV files.
    atspm_dir: Option<PathBuf>,
    /// The sync level of a transaction that holds closed bins, and the connection's current one.
    report_sync: Sync,
    sync: Sync,
}

/// SQLite's `synchronous` level in WAL mode. `Normal`: a commit survives a crash of this process, a
/// power cut may roll back the last commits. `Full`: the WAL is synced at each commit, so the commit
/// (and every one before it) survives a power cut too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Normal,
    Full,
}

/// Header of the daily detector CSV: the Indiana high-resolution controller event log's columns.
pub const ATSPM_CSV_HEADER: &str = "timestamp,event_code,parameter";

/// One row of the daily CSV: `2026-11-26 08:00:00.1,82,3` (UTC, tenths of a second).
pub fn atspm_csv_row(t: SystemTime, code: u8, channel: u16) -> String {
    let iso = tenths(t);
    format!("{},{code},{channel}", iso.trim_end_matches('Z').replacen('T', " ", 1))
}

impl Store {
    /// Takes the store at `path` for this process, or says who has it.
    pub fn lock(path: &Path) -> Result<StoreLock, StoreError> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder { path: path.to_owned(), source })?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let io = |what: &str, e: std::io::Error| StoreError::Sqlite {
            path: path.to_owned(),
            message: format!("{what} {}: {e}", lock_path.display()),
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("cannot open its lock file", e))?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(|e| io("cannot write its lock file", e))?;
                write!(file, "pid {}", std::process::id()).map_err(|e| io("cannot write its lock file", e))?;
                Ok(StoreLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default().trim().to_owned();
                Err(StoreError::InUse {
                    path: path.to_owned(),
                    holder: if holder.is_empty() { "pid unknown".into() } else { holder },
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io("cannot lock", e)),
        }
    }

    /// The connection's `synchronous` level for the next commits, changed only when it differs.
    fn set_sync(&mut self, want: Sync) -> rusqlite::Result<()> {
        if want != self.sync {
            self.conn.pragma_update(None, "synchronous", if want == Sync::Full { "FULL" } else { "NORMAL" })?;
            self.sync = want;
        }
        Ok(())
    }

    /// Opens (creating if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder { path: path.to_owned(), source })?;
        }
        let err = |e: rusqlite::Error| StoreError::Sqlite { path: path.to_owned(), message: e.to_string() };
        let conn = Connection::open(path).map_err(err)?;
        // WAL: readers (reports, the publisher) never block the writer. NORMAL sync survives a crash of
        // this process; `save` raises it to FULL for the commits holding closed bins (see `Sync`).
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let mut store =
            Self { path: path.to_owned(), conn, atspm_dir: None, report_sync: Sync::Full, sync: Sync::Normal };
        store.migrate()?;
        Ok(store)
    }

    /// Also append loop detector events to `<dir>/<site>_<camera>_<YYYY-MM-DD>.csv` (UTC days).
    pub fn with_atspm_csv(mut self, dir: &Path) -> Self {
        self.atspm_dir = Some(dir.to_owned());
        self
    }

    fn append_atspm(&self, site: &str, camera: &str, events: &[TrafficEvent]) -> Result<(), StoreError> {
        use std::io::Write;
        let Some(dir) = &self.atspm_dir else { return Ok(()) };
        let io = |path: &Path, e: std::io::Error| StoreError::Sqlite {
            path: path.to_owned(),
            message: format!("ATSPM CSV (store.atspm_dir): {e}"),
        };
        // Rows per daily file, in event order; each file is opened once per save.
        let mut rows: std::collections::BTreeMap<PathBuf, String> = std::collections::BTreeMap::new();
        for e in events {
            let Some((code, channel)) = atspm_event(&e.kind) else { continue };
            let day = &tenths(e.wall)[..10];
            let text = rows.entry(dir.join(format!("{site}_{camera}_{day}.csv"))).or_default();
            text.push_str(&atspm_csv_row(e.wall, code, channel));
            text.push('\n');
        }
        if rows.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(|err| io(dir, err))?;
        for (file, text) in rows {
            let new = !file.exists();
            let mut f =
                std::fs::OpenOptions::new().create(true).append(true).open(&file).map_err(|err| io(&file, err))?;
            let header = if new { format!("{ATSPM_CSV_HEADER}\n") } else { String::new() };
            f.write_all(format!("{header}{text}").as_bytes()).map_err(|err| io(&file, err))?;
        }
        Ok(())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), message: e.to_string() }
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: usize =
            self.conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).map_err(|e| self.err(e))?
                as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Sqlite {
                path: self.path.clone(),
                message: format!("schema version {version} is newer than this junction knows ({})", MIGRATIONS.len()),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self
                .conn
                .transaction()
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), message: e.to_string() })?;
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), message: e.to_string() })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), message: e.to_string() })?;
            tx.commit().map_err(|e| StoreError::Sqlite { path: self.path.clone(), message: e.to_string() })?;
            tracing::info!(path = %self.path.display(), version = i + 1, "store migrated");
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Stores events and closed reports in one transaction. A report already stored under its id is
    /// replaced only by a higher revision (which goes out to the broker again), or by one covering
    /// more of the bin (a file replayed after a crash), stored one revision higher; anything else is
    /// kept out (a file replayed from the same start gives the same ids at revision 1).
    pub fn save(
        &mut self,
        site: &str,
        camera: &str,
        events: &[TrafficEvent],
        reports: &[FlowReport],
    ) -> Result<(), StoreError> {
        if events.is_empty() && reports.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = move |e: rusqlite::Error| StoreError::Sqlite { path: path.clone(), message: e.to_string() };
        // Closed bins are synced to the disk before anyone is told (printed, published); the frame-by-
        // frame event commits are not (the next closed bin's sync covers them).
        self.set_sync(if reports.is_empty() { Sync::Normal } else { self.report_sync }).map_err(&err)?;
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO events (site, camera, rule, kind, direction, class, track, pts_s, wall, dwell_s,
                                         to_rule, speed_kmh, speed_ok, class_share)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(&err)?;
            let mut det = tx
                .prepare_cached(
                    "INSERT INTO detector_events (site, camera, detector, channel, code, wall, wall_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(&err)?;
            for e in events {
                // Loop detectors have their own table.
                if let Some(d) = DetectorRecord::of(e) {
                    det.execute(params![site, camera, d.detector, d.channel, d.code, d.wall, d.wall_ms])
                        .map_err(&err)?;
                    continue;
                }
                let Some(r) = EventRecord::of(e) else { continue };
                ins.execute(params![
                    site,
                    camera,
                    r.rule,
                    r.kind,
                    r.direction,
                    r.class,
                    r.track,
                    r.pts_s,
                    r.wall,
                    r.dwell_s,
                    r.to_rule,
                    r.speed_kmh,
                    r.speed_ok,
                    r.class_share
                ])
                .map_err(&err)?;
            }
            let mut rep = tx
                .prepare_cached(
                    "INSERT INTO reports (id, site, camera, bin_start, bin_seconds, partial, payload, stored_at, revision)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET partial = excluded.partial, payload = excluded.payload,
                        stored_at = excluded.stored_at, revision = excluded.revision, published_at = NULL,
                        refused_until = NULL",
                )
                .map_err(&err)?;
            let mut state = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO bin_states (site, camera, bin_seconds, id, revision, reported, state, saved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
                )
                .map_err(&err)?;
            let mut stored = tx
                .prepare_cached(
                    "SELECT revision, json_extract(payload, '$.covered_seconds') FROM reports WHERE id = ?1",
                )
                .map_err(&err)?;
            let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            for r in reports {
                let before: Option<(u32, f64)> = stored
                    .query_row([&r.id], |row| Ok((row.get(0)?, row.get::<_, Option<f64>>(1)?.unwrap_or(0.0))))
                    .optional()
                    .map_err(&err)?;
                // Nothing is replaced by less: a higher revision continues the stored report; a report
                // of the same bin that covers more of it (a file replayed after a crash) goes in one
                // revision higher; anything else is kept out.
                let revision = match before {
                    None => r.revision,
                    Some((s, _)) if r.revision > s => r.revision,
                    Some((s, covered)) if r.covered_seconds > covered + 0.25 => s + 1,
                    Some((s, _)) => {
                        tracing::debug!(id = %r.id, revision = r.revision, stored = s, "store: this bin is stored at this revision or higher, covering as much; kept");
                        continue;
                    }
                };
                let payload = if revision == r.revision {
                    serde_json::to_string(r)
                } else {
                    serde_json::to_string(&FlowReport { revision, state: None, ..r.clone() })
                }
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    message: format!("report {}: {e}", r.id),
                })?;
                rep.execute(params![
                    r.id,
                    r.site,
                    r.camera,
                    r.bin_start,
                    r.bin_seconds as i64,
                    r.partial,
                    payload,
                    now,
                    revision
                ])
                .map_err(&err)?;
                if let Some(s) = &r.state {
                    let json = serde_json::to_string(&BinState { revision, ..(**s).clone() }).map_err(|e| {
                        StoreError::Sqlite { path: self.path.clone(), message: format!("bin state {}: {e}", r.id) }
                    })?;
                    state
                        .execute(params![r.site, r.camera, r.bin_seconds as i64, r.id, revision, json, now])
                        .map_err(&err)?;
                }
            }
        }
        tx.commit().map_err(&err)?;
        // The database row is the outbox and is committed: a CSV that cannot be written (disk full)
        // must not make the caller write the step again (the events would be stored twice).
        if let Err(e) = self.append_atspm(site, camera, events) {
            tracing::error!(error = %e, "store: loop detector events not appended to the ATSPM CSV (they are in the database)");
        }
        Ok(())
    }

    /// The sync level of transactions holding closed bins (default [`Sync::Full`]; benches compare).
    pub fn with_report_sync(mut self, sync: Sync) -> Self {
        self.report_sync = sync;
        self
    }

    /// Checkpoints a camera's open bins (replacing its last bin of each length).
    pub fn checkpoint(&mut self, site: &str, camera: &str, states: &[BinState]) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = move |e: rusqlite::Error| StoreError::Sqlite { path: path.clone(), message: e.to_string() };
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        // Synced like closed bins: a power cut loses at most the time since the last checkpoint (what
        // the README promises), not earlier checkpoints still in an unsynced WAL.
        self.set_sync(self.report_sync).map_err(&err)?;
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO bin_states (site, camera, bin_seconds, id, revision, reported, state, saved_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
                )
                .map_err(&err)?;
            for s in states {
                let json = serde_json::to_string(s).map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    message: format!("bin state {}: {e}", s.id),
                })?;
                st.execute(params![site, camera, s.bin_seconds as i64, s.id, s.revision, json, now]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// The last bin of each length of a camera, open (checkpointed) or reported, to continue it.
    pub fn bin_states(&self, site: &str, camera: &str) -> Result<Vec<BinState>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, state FROM bin_states WHERE site = ?1 AND camera = ?2 ORDER BY bin_seconds")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![site, camera], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| self.err(e))?;
            match serde_json::from_str(&json) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::warn!(id, error = %e, "store: a saved bin state does not parse; that bin starts afresh")
                }
            }
        }
        Ok(out)
    }

    /// The stored revision of a report, if any.
    pub fn revision(&self, id: &str) -> Result<Option<u32>, StoreError> {
        self.conn
            .query_row("SELECT revision FROM reports WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Report ids in the order stored.
    pub fn report_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self.conn.prepare("SELECT id FROM reports ORDER BY rowid").map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The next message for the broker, oldest first, none set aside after a refusal (until `now`):
    /// reports first (what the centre plans with), then loop detector events, then per-vehicle events
    /// when `events` is set.
    pub fn next_pending(&self, now: SystemTime, events: bool) -> Result<Option<Pending>, StoreError> {
        let now = humantime::format_rfc3339_millis(now).to_string();
        if let Some(p) = self.next_report(&now)? {
            return Ok(Some(p));
        }
        if let Some(p) = self.next_detector(&now)? {
            return Ok(Some(p));
        }
        if events { self.next_event(&now) } else { Ok(None) }
    }

    /// The broker acknowledged `row` (its PUBACK): a report only at the revision that was sent, so a
    /// higher revision stored meanwhile stays in the outbox.
    pub fn mark_published(&self, row: &Outbox, at: SystemTime) -> Result<(), StoreError> {
        let at = humantime::format_rfc3339_millis(at).to_string();
        let (table, which, key) = row.locate();
        self.conn
            .execute(&format!("UPDATE {table} SET published_at = ?2 WHERE {which}"), params![key, at])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The oldest report not yet acknowledged and not set aside past `now` (RFC 3339).
    fn next_report(&self, now: &str) -> Result<Option<Pending>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, revision, camera, payload FROM reports
                 WHERE published_at IS NULL AND (refused_until IS NULL OR refused_until <= ?1)
                 ORDER BY stored_at, rowid LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        st.query_row([now], |r| {
            Ok(Pending { row: Outbox::Report(r.get(0)?, r.get(1)?), camera: r.get(2)?, payload: r.get(3)? })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// The broker refused this row (a report by id and the revision sent, an event or a loop event by
    /// seq): counted, and set aside until `now` + `delay(refusals so far)`; returns the refusals.
    pub fn set_aside(&self, row: &Outbox, now: SystemTime, delay: impl Fn(u32) -> Duration) -> Result<u32, StoreError> {
        let (table, which, key) = row.locate();
        let n: u32 = self
            .conn
            .query_row(
                &format!("UPDATE {table} SET refusals = refusals + 1 WHERE {which} RETURNING refusals"),
                [&key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or(0);
        let until = humantime::format_rfc3339_millis(now + delay(n)).to_string();
        self.conn
            .execute(&format!("UPDATE {table} SET refused_until = ?2 WHERE {which}"), params![key, until])
            .map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Reports set aside after the broker refused them (waiting for their retry).
    pub fn refused(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM reports WHERE published_at IS NULL AND refused_until IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Reports waiting for the broker.
    pub fn unpublished(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM reports WHERE published_at IS NULL", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The oldest per-vehicle event not yet published nor set aside past `now` (RFC 3339). Its id is
    /// stable across retries: site/camera/rule/track/kind/wall.
    fn next_event(&self, now: &str) -> Result<Option<Pending>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, site, camera, rule, kind, direction, class, track, pts_s, wall, dwell_s,
                        to_rule, speed_kmh, speed_ok, class_share FROM events
                 WHERE published_at IS NULL AND (refused_until IS NULL OR refused_until <= ?1) ORDER BY seq LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        st.query_row([now], |r| {
            let (seq, site, camera): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let e = EventRecord {
                rule: r.get(3)?,
                kind: r.get(4)?,
                direction: r.get(5)?,
                class: r.get(6)?,
                track: r.get(7)?,
                pts_s: r.get(8)?,
                wall: r.get(9)?,
                dwell_s: r.get(10)?,
                to_rule: r.get(11)?,
                speed_kmh: r.get(12)?,
                speed_ok: r.get(13)?,
                class_share: r.get(14)?,
            };
            let payload = wire::to_json(&e.message(&site, &camera));
            Ok(Pending { row: Outbox::Event(seq), camera, payload })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// The oldest loop detector event not yet published nor set aside past `now` (RFC 3339).
    fn next_detector(&self, now: &str) -> Result<Option<Pending>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, site, camera, detector, channel, code, wall, wall_ms FROM detector_events
                 WHERE published_at IS NULL AND (refused_until IS NULL OR refused_until <= ?1) ORDER BY seq LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        st.query_row([now], |r| {
            let (seq, site, camera): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let d = DetectorRecord {
                detector: r.get(3)?,
                channel: r.get(4)?,
                code: r.get(5)?,
                wall: r.get(6)?,
                wall_ms: r.get(7)?,
            };
            let payload = wire::to_json(&d.message(&site, &camera));
            Ok(Pending { row: Outbox::Detector(seq), camera, payload })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Loop detector events of a camera (all cameras when `None`) in [from, to): (wall, code, channel).
    pub fn detector_events(
        &self,
        camera: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, u8, u16)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT wall, code, channel FROM detector_events
                 WHERE (?1 IS NULL OR camera = ?1) AND wall >= ?2 AND wall < ?3 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![camera, from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Stored reports of `bin_seconds` with bins starting in [from, to), optionally of one site, in
    /// time order (then camera).
    pub fn reports(
        &self,
        site: Option<&str>,
        bin_seconds: u64,
        from: &str,
        to: &str,
    ) -> Result<Vec<FlowReport>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT payload FROM reports WHERE (?1 IS NULL OR site = ?1) AND bin_seconds = ?2
                 AND bin_start >= ?3 AND bin_start < ?4 ORDER BY bin_start, camera",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![site, bin_seconds as i64, from, to], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for payload in rows {
            let payload = payload.map_err(|e| self.err(e))?;
            out.push(serde_json::from_str(&payload).map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                message: format!("a stored report does not parse: {e}"),
            })?);
        }
        Ok(out)
    }

    /// Spot speeds of crossings in [from, to) (wall clock): (class, km/h), plausible ones only.
    pub fn crossing_speeds(&self, site: Option<&str>, from: &str, to: &str) -> Result<Vec<(String, f64)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT class, speed_kmh FROM events WHERE kind = 'crossing' AND speed_ok = 1
                 AND (?1 IS NULL OR site = ?1) AND wall >= ?2 AND wall < ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map(params![site, from, to], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Bytes the store's live pages take (freed pages are reused, so this, not the file size, is
    /// what grows).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let q =
            |pragma: &str| self.conn.pragma_query_value(None, pragma, |r| r.get::<_, i64>(0)).map_err(|e| self.err(e));
        Ok((q("page_count")? - q("freelist_count")?).max(0) as u64 * q("page_size")? as u64)
    }

    /// Daily ATSPM CSV files: (day YYYY-MM-DD, path, bytes), oldest first.
    fn atspm_files(&self) -> Vec<(String, PathBuf, u64)> {
        let Some(dir) = &self.atspm_dir else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut out: Vec<(String, PathBuf, u64)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let day = name.strip_suffix(".csv")?.rsplit('_').next()?.to_owned();
                (day.len() == 10).then(|| (day, e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            })
            .collect();
        out.sort();
        out
    }

    /// Bytes the store takes: the database's live pages and the ATSPM CSV files.
    pub fn total_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.used_bytes()? + self.atspm_files().iter().map(|f| f.2).sum::<u64>())
    }

    /// Keeps the store (database and ATSPM files) under `max_bytes`, losing undelivered data last: the
    /// oldest hour of events, delivered loop detector events, delivered reports and ATSPM files first,
    /// then undelivered loop detector events, and only when nothing else is left the oldest
    /// undelivered reports.
    pub fn bound_size(&mut self, max_bytes: u64) -> Result<SizePrune, StoreError> {
        let mut out = SizePrune::default();
        while self.total_bytes()? > max_bytes {
            let oldest: Option<String> = self
                .conn
                .query_row(
                    "SELECT MIN(t) FROM (SELECT MIN(wall) AS t FROM events
                     UNION ALL SELECT MIN(wall) FROM detector_events WHERE published_at IS NOT NULL
                     UNION ALL SELECT MIN(bin_start) FROM reports WHERE published_at IS NOT NULL)",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            if let Some(oldest) = oldest {
                let cutoff = humantime::parse_rfc3339_weak(oldest.trim_end_matches('Z'))
                    .map(|t| humantime::format_rfc3339_millis(t + Duration::from_secs(3600)).to_string())
                    .unwrap_or(oldest);
                let e = |s: &Self, sql: &str| s.conn.execute(sql, [&cutoff]).map_err(|e| s.err(e));
                let before = out;
                out.events += e(self, "DELETE FROM events WHERE wall <= ?1")?;
                out.detector_events +=
                    e(self, "DELETE FROM detector_events WHERE published_at IS NOT NULL AND wall <= ?1")?;
                out.delivered += e(self, "DELETE FROM reports WHERE published_at IS NOT NULL AND bin_start <= ?1")?;
                if out != before {
                    continue;
                }
            }
            // The ATSPM files are a local copy of the loop events: whole days go, oldest first, never
            // the newest (the one being appended to).
            let files = self.atspm_files();
            if files.len() > 1 {
                let (day, path, _) = &files[0];
                match std::fs::remove_file(path) {
                    Ok(()) => {
                        out.atspm_files += 1;
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(day, path = %path.display(), error = %err, "store: cannot delete an ATSPM file")
                    }
                }
            }
            let n = self
                .conn
                .execute(
                    "DELETE FROM detector_events WHERE seq IN
                     (SELECT seq FROM detector_events WHERE published_at IS NULL ORDER BY seq LIMIT 1000)",
                    [],
                )
                .map_err(|e| self.err(e))?;
            if n > 0 {
                out.undelivered_detector += n;
                continue;
            }
            let n = self
                .conn
                .execute(
                    "DELETE FROM reports WHERE rowid IN
                     (SELECT rowid FROM reports WHERE published_at IS NULL ORDER BY rowid LIMIT 100)",
                    [],
                )
                .map_err(|e| self.err(e))?;
            if n == 0 {
                // Only the newest ATSPM file is left, or nothing: stop.
                break;
            }
            out.undelivered += n;
        }
        Ok(out)
    }

    /// Deletes what is older than `days` (by bin start / event wall time) in every table and the ATSPM
    /// files; undelivered reports stay (they go only to the size bound). Returns rows and files removed.
    pub fn prune(&mut self, days: u32, now: SystemTime) -> Result<usize, StoreError> {
        let age = Duration::from_secs(u64::from(days) * 86_400);
        // SystemTime goes before 1970 where humantime cannot (36 500 days once panicked here).
        let cutoff_t = now.checked_sub(age).filter(|t| *t >= SystemTime::UNIX_EPOCH).unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff = humantime::format_rfc3339_seconds(cutoff_t).to_string();
        let mut n = 0;
        for sql in [
            "DELETE FROM events WHERE wall < ?1",
            "DELETE FROM detector_events WHERE wall < ?1 AND published_at IS NOT NULL",
            "DELETE FROM reports WHERE bin_start < ?1 AND published_at IS NOT NULL",
        ] {
            n += self.conn.execute(sql, [&cutoff]).map_err(|e| self.err(e))?;
        }
        let day = &cutoff[..10];
        for (d, path, _) in self.atspm_files() {
            if d.as_str() < day && std::fs::remove_file(&path).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{FLOW_SCHEMA, Quality};

    fn report(id: &str) -> FlowReport {
        FlowReport {
            schema: FLOW_SCHEMA.into(),
            id: id.into(),
            site: "s".into(),
            camera: "c".into(),
            bin_start: "2026-11-26T08:00:00Z".into(),
            bin_seconds: 60,
            partial: false,
            covered_seconds: 59.5,
            frames_analysed: 600,
            frames_dropped: 0,
            volumes: vec![],
            flows: vec![],
            zones: vec![],
            speeds: vec![],
            headways: vec![],
            movements: vec![],
            quality: Quality::default(),
            revision: 1,
            gaps: vec![],
            rule_changes: vec![],
            clock_steps: vec![],
            state: None,
        }
    }

    #[test]
    fn migrates_once_and_keeps_reports_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/junction.db");
        {
            let mut s = Store::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            s.save("s", "c", &[], &[report("a"), report("b")]).unwrap();
            s.mark_published(&Outbox::Report("a".into(), 1), SystemTime::now()).unwrap();
            // The same revision again (a file replayed from the same start) is kept out.
            let mut again = report("a");
            again.frames_analysed = 1;
            s.save("s", "c", &[], &[again]).unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.report_ids().unwrap(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(s.unpublished().unwrap(), 1);
        assert_eq!(s.reports(None, 60, "2026", "2027").unwrap()[0].frames_analysed, 600);
        // A higher revision replaces it and goes out again; a lower one never does.
        let mut r2 = report("a");
        r2.revision = 2;
        r2.frames_analysed = 900;
        s.save("s", "c", &[], &[r2]).unwrap();
        s.save("s", "c", &[], &[report("a")]).unwrap();
        assert_eq!(s.revision("a").unwrap(), Some(2));
        assert_eq!(s.unpublished().unwrap(), 2);
        // An acknowledgement of revision 1 arriving late does not mark revision 2 delivered.
        s.mark_published(&Outbox::Report("a".into(), 1), SystemTime::now()).unwrap();
        assert_eq!(s.unpublished().unwrap(), 2);
        let got = s.reports(None, 60, "2026", "2027").unwrap();
        assert_eq!((got[0].revision, got[0].frames_analysed), (2, 900));
        // A replay of the bin that covers more of it (the box crashed mid-bin the first time) goes in
        // one revision higher, whatever revision it was made at.
        let mut more = report("a");
        more.covered_seconds = 60.0;
        more.frames_analysed = 1200;
        s.save("s", "c", &[], &[more]).unwrap();
        let got = s.reports(None, 60, "2026", "2027").unwrap();
        assert_eq!((got[0].revision, got[0].frames_analysed), (3, 1200));
    }

    fn event(rule: &str, secs: u64) -> TrafficEvent {
        TrafficEvent {
            rule: rule.into(),
            kind: EventKind::Crossing { direction: crate::analytics::Direction::In },
            track: 7,
            class: crate::detect::VehicleClass::Car,
            class_share: 0.87,
            pts: Duration::from_secs(secs),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs),
            speed: None,
        }
    }

    #[test]
    fn checkpoints_are_synced_like_closed_bins() {
        // The README promises that a power cut loses at most the time since the last checkpoint: its
        // commit must sync the WAL (FULL), not leave it to the next closed bin (NORMAL).
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("j.db")).unwrap();
        s.save("s", "c", &[event("a", 1)], &[]).unwrap();
        let level = |s: &Store| s.conn.pragma_query_value(None, "synchronous", |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(level(&s), 1, "frame-by-frame events at NORMAL");
        let state = BinState {
            id: "s/c/2026-11-26T08:00:00Z/60".into(),
            bin_seconds: 60,
            start_s: 1_795_000_000.0,
            revision: 1,
            reported: false,
            cursor_s: 1_795_000_010.0,
            covered_s: 10.0,
            gaps: vec![],
            frames_analysed: 100,
            frames_dropped: 0,
            volumes: vec![],
            speeds: vec![],
            headways: vec![],
            movements: vec![],
            zones: vec![],
            quality: Default::default(),
            rule_changes: vec![],
            clock_steps: vec![],
        };
        s.checkpoint("s", "c", &[state]).unwrap();
        assert_eq!(level(&s), 2, "the checkpoint committed at FULL");
    }

    #[test]
    fn events_are_an_outbox_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("j.db")).unwrap();
        s.save("s", "c", &[event("a", 1), event("b", 2)], &[]).unwrap();
        // Events go out only when asked for.
        assert_eq!(s.next_pending(SystemTime::now(), false).unwrap(), None);
        let Pending { row, camera, payload } = s.next_pending(SystemTime::now(), true).unwrap().unwrap();
        assert_eq!(camera, "c");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            (v["rule"].as_str(), v["direction"].as_str(), v["track"].as_i64()),
            (Some("a"), Some("in"), Some(7))
        );
        assert!(v["id"].as_str().unwrap().starts_with("s/c/a/7/crossing/"), "{v}");
        s.mark_published(&row, SystemTime::now()).unwrap();
        let next = s.next_pending(SystemTime::now(), true).unwrap().unwrap();
        assert!(matches!(next.row, Outbox::Event(_)) && next.payload.contains(r#""rule":"b""#), "{next:?}");
    }

    /// One outbox for three tables: reports first, then loop detector events, then per-vehicle events;
    /// a row the broker refused waits its turn out while the rest flows past it.
    #[test]
    fn the_outbox_hands_out_reports_then_loop_events_then_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("j.db")).unwrap();
        s.save("s", "c", &[event("a", 1), loop_event(2, true)], &[report("r")]).unwrap();
        let t0 = SystemTime::now();
        let kinds = |s: &Store, at: SystemTime| {
            let mut seen = Vec::new();
            while let Some(p) = s.next_pending(at, true).unwrap() {
                seen.push(p.row.clone());
                s.mark_published(&p.row, at).unwrap();
            }
            seen
        };
        let first = s.next_pending(t0, true).unwrap().unwrap();
        assert_eq!(first.row, Outbox::Report("r".into(), 1));
        // Refused: set aside for a minute; the loop event and the event go meanwhile.
        assert_eq!(s.set_aside(&first.row, t0, |_| Duration::from_secs(60)).unwrap(), 1);
        let during = kinds(&s, t0 + Duration::from_secs(1));
        assert!(matches!(during.as_slice(), [Outbox::Detector(_), Outbox::Event(_)]), "{during:?}");
        assert_eq!(s.unpublished().unwrap(), 1);
        assert_eq!(kinds(&s, t0 + Duration::from_secs(61)), vec![first.row]);
        assert_eq!(s.unpublished().unwrap(), 0);
    }

    #[test]
    fn size_bound_drops_delivered_then_undelivered_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("j.db")).unwrap();
        let r = |id: &str, hour: u32| {
            let mut r = report(id);
            r.bin_start = format!("2026-11-26T{hour:02}:00:00Z");
            r
        };
        let big: Vec<FlowReport> = (0..24).map(|h| r(&format!("r{h}"), h)).collect();
        s.save("s", "c", &(0..2000).map(|i| event("a", i)).collect::<Vec<_>>(), &big).unwrap();
        for h in 0..12 {
            s.mark_published(&Outbox::Report(format!("r{h}"), 1), SystemTime::now()).unwrap();
        }
        let full = s.used_bytes().unwrap();
        // Room for the undelivered reports but not the events and delivered ones.
        let pruned = s.bound_size(full / 2).unwrap();
        assert_eq!(pruned.undelivered, 0, "{pruned:?}");
        assert!(pruned.events > 0 && s.used_bytes().unwrap() <= full / 2, "{pruned:?}");
        assert_eq!(s.unpublished().unwrap(), 12);
        // Too small for anything: the undelivered go too, oldest first, and are counted.
        let pruned = s.bound_size(1).unwrap();
        assert_eq!(pruned.undelivered, 12, "{pruned:?}");
        assert_eq!(s.report_ids().unwrap().len(), 0);
    }

    fn loop_event(secs: u64, on: bool) -> TrafficEvent {
        TrafficEvent {
            kind: if on { EventKind::LoopOn { channel: 1 } } else { EventKind::LoopOff { channel: 1 } },
            ..event("loop-1", secs)
        }
    }

    #[test]
    fn loop_events_within_a_tenth_have_distinct_ids() {
        // On, off, on within 0.1 s (frames 0.03 s apart): the controller log's tenths cannot tell the
        // two `on` apart, but their message ids must (the centre keeps one row per id).
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("j.db")).unwrap();
        let at = |ms: u64, on: bool| TrafficEvent {
            wall: SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_000 + ms),
            ..loop_event(0, on)
        };
        s.save("s", "c", &[at(0, true), at(30, false), at(60, true)], &[]).unwrap();
        let mut ids = Vec::new();
        while let Some(Pending { row, payload, .. }) = s.next_pending(SystemTime::now(), false).unwrap() {
            assert!(matches!(row, Outbox::Detector(_)), "{row:?}");
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(v["at"].as_str().map(|a| a.len()), Some("2026-09-21T13:46:40.0Z".len()), "tenths: {v}");
            ids.push(v["id"].as_str().unwrap().to_owned());
            s.mark_published(&row, SystemTime::now()).unwrap();
        }
        assert_eq!(ids.len(), 3);
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 3, "{ids:?}");
    }

    #[test]
    fn size_bound_covers_loop_events_and_atspm_files_undelivered_reports_last() {
        let dir = tempfile::tempdir().unwrap();
        let atspm = dir.path().join("atspm");
        let mut s = Store::open(&dir.path().join("j.db")).unwrap().with_atspm_csv(&atspm);
        // Two days of loop events (they land in two daily CSV files), one undelivered report.
        let day = 86_400;
        let loops: Vec<TrafficEvent> = (0..4000).map(|i| loop_event(i * 40, i % 2 == 0)).collect();
        let mut r = report("r");
        r.bin_start = "2026-10-30T00:00:00Z".into();
        s.save("s", "c", &loops, &[r]).unwrap();
        let files = || std::fs::read_dir(&atspm).unwrap().count();
        assert!(files() >= 2, "daily ATSPM files");
        let total = s.total_bytes().unwrap();
        assert!(total > s.used_bytes().unwrap(), "the ATSPM files count towards the bound");
        // The loop events are not delivered yet: the ATSPM files (a local copy) go first, then the
        // undelivered loop events, and the undelivered report only if nothing else is left.
        let pruned = s.bound_size(s.used_bytes().unwrap() / 2).unwrap();
        assert!(pruned.atspm_files >= 1, "{pruned:?}");
        assert!(pruned.undelivered_detector > 0, "{pruned:?}");
        assert_eq!(pruned.undelivered, 0, "{pruned:?}");
        assert_eq!(s.unpublished().unwrap(), 1);
        // Retention: past `days`, delivered data and old ATSPM files go, never an undelivered report.
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + 400 * day);
        s.prune(30, later).unwrap();
        assert_eq!(s.unpublished().unwrap(), 1);
        // A retention of 3650 days (the most a site file may say) cannot underflow the clock.
        s.prune(3650, SystemTime::UNIX_EPOCH + Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
