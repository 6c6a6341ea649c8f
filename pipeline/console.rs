//! The operator console: one page at `/` (assets embedded in the binary) with a tile per camera, live
//! counts pushed by server-sent events, the per-vehicle event stream, CSV exports and an editor that
//! writes the camera's calibration file and has the running box apply it without a restart.
//!
//! Security: everything here but the page's static assets needs a session when a password is
//! configured (`[http] password_hash` / `password_file`, an Argon2 hash): the session cookie is
//! HttpOnly and SameSite=Strict, every write must carry the session's CSRF token in `X-CSRF-Token`
//! (a header no cross-site form can set) and, if the browser sends one, an `Origin` of this host;
//! login attempts are limited per client address (below). Without a password the console is served on a
//! loopback address only (the configuration refuses anything else). The password and the session
//! tokens are never logged.
//!
//! Login attempts, the policy: each attempt is counted against its client address *before* the
//! password is checked (so concurrent attempts see each other) and forgiven if it succeeds. Within
//! [`FAILURE_WINDOW`] an address has [`MAX_FAILURES`] attempts; past them, one every
//! [`LOCKED_INTERVAL`], so a user who mistypes behind a shared address (an SSH tunnel makes everyone
//! 127.0.0.1) locks the others out for at most that long, and a guesser gets 2 880 tries a day.
//! At most [`HASHING_AT_ONCE`] passwords are hashed at a time (Argon2: 19 MiB and tens of
//! milliseconds each); an attempt beyond them is answered 503 at once, not counted. At most
//! [`MAX_ADDRESSES`] addresses are remembered; while that many have recent attempts, new addresses
//! are answered 429 (memory stays bounded whatever the number of addresses).
//!
//! The analysis thread tells the console each camera's state ([`Console::frame`],
//! [`Console::camera_state`]); the outputs thread hands it every event and report after the store
//! has them ([`Console::event`], [`Console::report`]), so the live counts are the stored counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aggregate::{ChangeKind, FlowReport, GapReason, RuleChange};
use crate::analytics::{EventKind, TrafficEvent};
use crate::config::Config;
use crate::detect::VehicleClass;
use crate::sink::Live;
pub use junction_schema::rules::RulesDoc;

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");
const FAVICON_SVG: &str = include_str!("console/favicon.svg");

/// A session lasts this long after login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per client address within [`FAILURE_WINDOW`]; past them, 429.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Past [`MAX_FAILURES`], one attempt per address this often.
const LOCKED_INTERVAL: Duration = Duration::from_secs(30);
/// Passwords hashed at once; more attempts meanwhile get 503.
const HASHING_AT_ONCE: usize = 2;
/// Client addresses with recent attempts remembered at most.
const MAX_ADDRESSES: usize = 4096;
/// One-minute bins kept for the console's chart: the last hour.
const HISTORY_BINS: usize = 60;
/// Closed bins listed per camera.
const CLOSED_SHOWN: usize = 5;
/// Messages the live stream buffers per client before a slow one skips ahead.
const LIVE_BUFFER: usize = 4096;
const COOKIE: &str = "junction_session";

/// What the console knows about one camera, for its tile.
#[derive(Debug, Clone, Serialize)]
struct CameraStatus {
    /// `starting`, `up`, `restarting`, `down` or `ended`.
    state: &'static str,
    since: SystemTime,
    frames: u64,
    dropped: u64,
    last_frame: Option<SystemTime>,
    /// Frames analysed per second (exponential mean over about 2 s).
    fps: f64,
    /// The frame's share of the detector's time, milliseconds (exponential mean).
    inference_ms: f64,
    error: Option<String>,
    /// How the model's scale was chosen (crate::scale), in words.
    scale: Option<String>,
}

/// Counts of one bin: line → direction → class → vehicles.
type BinCounts = BTreeMap<String, BTreeMap<&'static str, BTreeMap<VehicleClass, u64>>>;

#[derive(Debug, Clone, Serialize)]
struct ClosedBin {
    bin_start: String,
    revision: u32,
    partial: bool,
    /// Closed by a rules reload: the bin goes on.
    reloaded: bool,
    lines: BinCounts,
}

#[derive(Debug, Default, Serialize)]
struct CameraCounts {
    /// The open bin of the console's bin length, from the events since it opened.
    current: BinCounts,
    /// The last closed bins, newest last.
    closed: VecDeque<ClosedBin>,
    /// Vehicles per line in each closed bin of the last hour (both directions), newest last.
    history: VecDeque<(String, BTreeMap<String, u64>)>,
}

/// The last reload of the rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Reloads applied or refused since start.
    pub generation: u64,
    /// RFC 3339 UTC.
    pub at: Option<String>,
    pub ok: bool,
    /// What happened, in words (the refusal's problems, or "no change").
    pub message: String,
    pub changes: Vec<(String, RuleChange)>,
}

struct Session {
    csrf: String,
    expires: Instant,
}

/// The console's state, shared by the HTTP server, the analysis and the outputs threads.
pub struct Console {
    site: String,
    cameras: Vec<String>,
    calibrations: HashMap<String, PathBuf>,
    store: PathBuf,
    /// The bin length the live counts and the chart use: the shortest configured, seconds.
    bin_seconds: u64,
    /// Set to ask the analysis loop for a reload of the site configuration's rules (SIGHUP sets it
    /// too).
    reload: Arc<AtomicBool>,
    reloads: Mutex<ReloadStatus>,
    statuses: Mutex<BTreeMap<String, CameraStatus>>,
    counts: Mutex<BTreeMap<String, CameraCounts>>,
    live: tokio::sync::broadcast::Sender<Arc<str>>,
    password_hash: Option<String>,
    /// The browser reaches the console over HTTPS (`tls_cert`, or TLS in front: `plain_http_login`):
    /// the session cookie is `Secure`.
    secure_cookie: bool,
    sessions: Mutex<HashMap<String, Session>>,
    /// Without a password: the one CSRF token every page gets.
    open_csrf: String,
    attempts: Mutex<LoginLimiter>,
    hashing: Arc<tokio::sync::Semaphore>,
    /// One save of a rules file at a time: each reads the file, keeps it as `.prev` and replaces it.
    saving: Mutex<()>,
    /// Snapshot requests answered, for the load figures.
    pub snapshots_served: AtomicU64,
    /// The collection each camera with `collect = true` runs when an operator asks (its folder:
    /// `collect/<camera>` beside the store), and the one running or last run.
    collect_jobs: HashMap<String, crate::collect::Job>,
    collecting: Mutex<Option<Collecting>>,
}

/// Longest collection an operator can start from the console, minutes.
pub const MAX_COLLECT_MINUTES: u32 = 60;

/// A collection started from the console: it runs on its own thread, with its own model session.
#[derive(Debug)]
struct Collecting {
    camera: String,
    started: SystemTime,
    until: SystemTime,
    folder: PathBuf,
    saved: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// `None` while it runs; then how it ended.
    ended: Arc<Mutex<Option<Result<crate::collect::Summary, String>>>>,
}

/// Login attempts per client address, counted before the password is checked (the policy is in the
/// module's documentation). Times are monotonic.
#[derive(Debug, Default)]
struct LoginLimiter {
    /// The last attempts of each address within the window, oldest first (at most MAX_FAILURES).
    by_addr: HashMap<IpAddr, VecDeque<Instant>>,
}

impl LoginLimiter {
    /// The bucket of an address: IPv6 by its /64 (one host is given a whole /64 to rotate through).
    fn bucket(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            other => other,
        }
    }

    /// Counts an attempt from `ip` at `now`, or says how long it must wait.
    fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = Self::bucket(ip);
        let recent = |t: &Instant| now.saturating_duration_since(*t) <= FAILURE_WINDOW;
        if !self.by_addr.contains_key(&ip) && self.by_addr.len() >= MAX_ADDRESSES {
            self.by_addr.retain(|_, q| q.back().is_some_and(recent));
            if self.by_addr.len() >= MAX_ADDRESSES {
                return Err(LOCKED_INTERVAL);
            }
        }
        let q = self.by_addr.entry(ip).or_default();
        while q.front().is_some_and(|t| !recent(t)) {
            q.pop_front();
        }
        if q.len() >= MAX_FAILURES {
            let since = q.back().map_or(LOCKED_INTERVAL, |t| now.saturating_duration_since(*t));
            if since < LOCKED_INTERVAL {
                return Err(LOCKED_INTERVAL - since);
            }
            q.pop_front();
        }
        q.push_back(now);
        Ok(())
    }

    /// The attempt `ip` began at `at` succeeded (or was never made): it is not held against it.
    fn forgive(&mut self, ip: IpAddr, at: Instant) {
        if let Some(q) = self.by_addr.get_mut(&Self::bucket(ip))
            && let Some(k) = q.iter().rposition(|t| *t == at)
        {
            q.remove(k);
        }
    }
}

/// Equal byte strings, in a time that does not depend on where they differ (tokens).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{field}: {message}")]
    Config { field: String, message: String },
    #[error("console: no random numbers from the system: {0}")]
    Random(String),
}

fn token() -> Result<String, ConsoleError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ConsoleError::Random(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// An Argon2id hash of `password` (PHC string) for `[http] password_hash`.
pub fn hash_password(password: &str) -> Result<String, ConsoleError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ConsoleError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ConsoleError::Random(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConsoleError::Config { field: "password".into(), message: e.to_string() })
}

fn verify(hash: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::PasswordHash::new(hash)
        .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

impl Console {
    /// The console of this site, or `None` when `[http] console = false` (or no `[http]`).
    pub fn new(cfg: &Config, reload: Arc<AtomicBool>) -> Result<Option<Arc<Self>>, ConsoleError> {
        let Some(http) = cfg.http.as_ref().filter(|h| h.console) else { return Ok(None) };
        let password_hash =
            crate::config::http_credential(http).map_err(|(field, message)| ConsoleError::Config { field, message })?;
        let now = SystemTime::now();
        let statuses = cfg
            .cameras
            .iter()
            .map(|c| {
                let s = CameraStatus {
                    state: "starting",
                    since: now,
                    frames: 0,
                    dropped: 0,
                    last_frame: None,
                    fps: 0.0,
                    inference_ms: 0.0,
                    error: None,
                    scale: None,
                };
                (c.id.clone(), s)
            })
            .collect();
        Ok(Some(Arc::new(Self {
            site: cfg.site.clone(),
            cameras: cfg.cameras.iter().map(|c| c.id.clone()).collect(),
            calibrations: cfg.cameras.iter().filter_map(|c| Some((c.id.clone(), c.calibration.clone()?))).collect(),
            store: cfg.store.path.clone(),
            bin_seconds: cfg.bins.iter().min().map_or(60, Duration::as_secs),
            reload,
            reloads: Mutex::new(ReloadStatus::default()),
            statuses: Mutex::new(statuses),
            counts: Mutex::new(BTreeMap::new()),
            live: tokio::sync::broadcast::channel(LIVE_BUFFER).0,
            password_hash,
            secure_cookie: http.tls_cert.is_some() || http.plain_http_login,
            sessions: Mutex::new(HashMap::new()),
            open_csrf: token()?,
            attempts: Mutex::new(LoginLimiter::default()),
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_AT_ONCE)),
            saving: Mutex::new(()),
            snapshots_served: AtomicU64::new(0),
            collect_jobs: collect_jobs(cfg),
            collecting: Mutex::new(None),
        })))
    }

    /// The collection running or last run, for the page.
    fn collecting_json(&self) -> serde_json::Value {
        let Ok(c) = self.collecting.lock() else { return serde_json::Value::Null };
        let Some(c) = c.as_ref() else { return serde_json::Value::Null };
        let ended = c.ended.lock().ok().and_then(|e| e.clone());
        json!({
            "camera": c.camera,
            "running": ended.is_none(),
            "saved": c.saved.load(Ordering::Relaxed),
            "started": humantime::format_rfc3339_seconds(c.started).to_string(),
            "until": humantime::format_rfc3339_seconds(c.until).to_string(),
            "folder": c.folder.display().to_string(),
            "total": ended.as_ref().and_then(|e| e.as_ref().ok()).map(|s| s.total),
            "full": ended.as_ref().and_then(|e| e.as_ref().ok()).is_some_and(|s| s.already_full),
            "error": ended.and_then(|e| e.err()),
        })
    }

    /// Starts a collection of `minutes` on `camera` (one at a time).
    fn start_collect(&self, camera: &str, minutes: u32) -> Result<serde_json::Value, Refused> {
        let Some(job) = self.collect_jobs.get(camera) else {
            return Err(if self.cameras.iter().any(|c| c == camera) {
                Refused(StatusCode::FORBIDDEN, "collect is off for this camera: set collect = true in its [[camera]]")
            } else {
                Refused(StatusCode::NOT_FOUND, "no such camera")
            });
        };
        if !(1..=MAX_COLLECT_MINUTES).contains(&minutes) {
            return Err(Refused(StatusCode::UNPROCESSABLE_ENTITY, "minutes: 1 to 60"));
        }
        let mut slot = self.collecting.lock().map_err(|_| Refused(StatusCode::INTERNAL_SERVER_ERROR, "unavailable"))?;
        if slot.as_ref().is_some_and(|c| c.ended.lock().map(|e| e.is_none()).unwrap_or(false)) {
            return Err(Refused(StatusCode::CONFLICT, "a collection is running: one at a time"));
        }
        let length = Duration::from_secs(u64::from(minutes) * 60);
        let job = crate::collect::Job { until: Some(std::time::Instant::now() + length), ..job.clone() };
        let now = SystemTime::now();
        let run = Collecting {
            camera: camera.to_owned(),
            started: now,
            until: now + length,
            folder: job.out.clone(),
            saved: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            ended: Arc::new(Mutex::new(None)),
        };
        let (saved, stop, ended) = (run.saved.clone(), run.stop.clone(), run.ended.clone());
        let spawned = std::thread::Builder::new().name("collect".into()).spawn(move || {
            tracing::info!(camera = %job.camera, folder = %job.out.display(), "collection started from the console");
            let r = crate::collect::run(&job, &stop, |n| saved.store(n as u64, Ordering::Relaxed));
            match &r {
                Ok(s) => tracing::info!(camera = %job.camera, saved = s.saved, total = s.total, "collection ended"),
                Err(e) => tracing::warn!(camera = %job.camera, error = %e, "collection failed"),
            }
            if let Ok(mut e) = ended.lock() {
                *e = Some(r.map_err(|e| e.to_string()));
            }
        });
        if spawned.is_err() {
            return Err(Refused(StatusCode::INTERNAL_SERVER_ERROR, "could not start the collection"));
        }
        *slot = Some(run);
        drop(slot);
        Ok(self.collecting_json())
    }

    /// Asks a running collection to stop (at its next frame).
    pub fn stop_collect(&self) {
        if let Ok(Some(c)) = self.collecting.lock().as_deref() {
            c.stop.store(true, Ordering::Relaxed);
        }
    }

    fn push(&self, msg: serde_json::Value) {
        // No receiver (no page open) is not an error.
        let _ = self.live.send(Arc::from(msg.to_string()));
    }

    /// The cameras' live state, from the outputs thread (the analysis thread sends it there).
    pub fn live(&self, update: &Live) {
        match update {
            Live::Frame { camera, dropped, detect, at } => self.frame(camera, *dropped, *detect, *at),
            Live::State { camera, state, error, at } => self.camera_state(camera, state, error.clone(), *at),
            Live::Scale { camera, text } => self.scale(camera, text.clone()),
            Live::Reloaded { ok, message, changes, at } => self.reloaded(*ok, message.clone(), changes.clone(), *at),
        }
    }

    /// A frame of `camera` was analysed at `now`. Rates and ages are on this box's clock (a file's
    /// frames carry their own wall clock).
    fn frame(&self, camera: &str, dropped: u64, detect: Duration, now: SystemTime) {
        let Ok(mut all) = self.statuses.lock() else { return };
        let Some(s) = all.get_mut(camera) else { return };
        let was_up = s.state == "up";
        if !was_up {
            s.state = "up";
            s.since = now;
            s.error = None;
        }
        // The rate is over frames of one stretch up: not across an outage.
        if let Some(dt) =
            s.last_frame.filter(|_| was_up).and_then(|l| now.duration_since(l).ok()).map(|d| d.as_secs_f64())
            && dt > 0.0
        {
            // About 2 s of memory whatever the frame rate; the first interval sets it.
            let a = if s.fps == 0.0 { 1.0 } else { (dt / 2.0).min(1.0) };
            s.fps = s.fps * (1.0 - a) + a / dt;
        }
        if !detect.is_zero() {
            s.inference_ms = s.inference_ms * 0.9 + detect.as_secs_f64() * 1000.0 * 0.1;
        }
        s.frames += 1;
        s.dropped += dropped;
        s.last_frame = Some(now);
    }

    /// `camera` went down, is restarting or ended, at `now`.
    fn camera_state(&self, camera: &str, state: &'static str, error: Option<String>, now: SystemTime) {
        if let Ok(mut all) = self.statuses.lock()
            && let Some(s) = all.get_mut(camera)
            && (s.state != state || error.is_some())
        {
            if s.state != state {
                s.since = now;
            }
            s.state = state;
            s.error = error;
            s.fps = 0.0;
        }
    }

    /// The camera's scale was chosen, or a warm-up began.
    fn scale(&self, camera: &str, text: String) {
        if let Ok(mut all) = self.statuses.lock()
            && let Some(s) = all.get_mut(camera)
        {
            s.scale = Some(text);
        }
    }

    /// A reload of the rules was applied or refused at `at`.
    fn reloaded(&self, ok: bool, message: String, changes: Vec<(String, RuleChange)>, at: SystemTime) {
        let status = {
            let Ok(mut r) = self.reloads.lock() else { return };
            r.generation += 1;
            r.at = Some(humantime::format_rfc3339_seconds(at).to_string());
            r.ok = ok;
            r.message = message;
            r.changes = changes;
            r.clone()
        };
        self.push(json!({"type": "reload", "reload": status}));
    }

    /// An event, after the store has it (outputs thread).
    pub fn event(&self, camera: &str, e: &TrafficEvent) {
        // The object the MQTT topics carry (crate::store::Message), with its "type".
        let Some(msg) = crate::store::Message::of(&self.site, camera, e) else { return };
        if let EventKind::Crossing { direction } = &e.kind
            && let Ok(mut all) = self.counts.lock()
        {
            *all.entry(camera.to_owned())
                .or_default()
                .current
                .entry(e.rule.to_string())
                .or_default()
                .entry(direction.as_str())
                .or_default()
                .entry(e.class)
                .or_insert(0) += 1;
        }
        self.push(msg.typed());
    }

    /// A closed bin, after the store has it (outputs thread).
    pub fn report(&self, r: &FlowReport) {
        if r.bin_seconds != self.bin_seconds {
            return;
        }
        let mut lines: BinCounts = BTreeMap::new();
        for v in &r.volumes {
            *lines
                .entry(v.counter.clone())
                .or_default()
                .entry(v.direction.as_str())
                .or_default()
                .entry(v.class)
                .or_insert(0) += v.vehicles;
        }
        let totals: BTreeMap<String, u64> =
            lines.iter().map(|(l, d)| (l.clone(), d.values().flat_map(|c| c.values()).sum())).collect();
        // A report closed by a reload: the bin goes on; only its changed lines start again.
        let reloaded = r.gaps.last().is_some_and(|g| g.reason == GapReason::RulesChanged);
        let closed =
            ClosedBin { bin_start: r.bin_start.clone(), revision: r.revision, partial: r.partial, reloaded, lines };
        if let Ok(mut all) = self.counts.lock() {
            let c = all.entry(r.camera.clone()).or_default();
            if reloaded {
                for ch in r.rule_changes.iter().filter(|ch| ch.kind == "line" && ch.change != ChangeKind::Added) {
                    c.current.remove(&ch.id);
                }
            } else {
                c.current.clear();
            }
            c.closed.retain(|b| b.bin_start != r.bin_start);
            c.closed.push_back(closed.clone());
            while c.closed.len() > CLOSED_SHOWN {
                c.closed.pop_front();
            }
            c.history.retain(|(start, _)| *start != r.bin_start);
            c.history.push_back((r.bin_start.clone(), totals));
            while c.history.len() > HISTORY_BINS {
                c.history.pop_front();
            }
        }
        self.push(json!({
            "type": "report", "camera": r.camera, "bin": closed, "reloaded": reloaded, "changes": r.rule_changes,
        }));
    }

    fn state_json(&self) -> serde_json::Value {
        let now = SystemTime::now();
        let statuses = self.statuses.lock().map(|s| s.clone()).unwrap_or_default();
        let counts = self.counts.lock().map(|c| serde_json::to_value(&*c).unwrap_or_default()).unwrap_or_default();
        let cameras: Vec<_> = self
            .cameras
            .iter()
            .map(|id| {
                let s = statuses.get(id);
                json!({
                    "id": id,
                    "status": s.map(|s| json!({
                        "state": s.state,
                        "since": humantime::format_rfc3339_seconds(s.since).to_string(),
                        "frames": s.frames,
                        "dropped": s.dropped,
                        "age_s": s.last_frame.and_then(|l| now.duration_since(l).ok()).map(|d| d.as_secs_f64()),
                        "fps": (s.fps * 10.0).round() / 10.0,
                        "inference_ms": (s.inference_ms * 10.0).round() / 10.0,
                        "error": s.error,
                        "scale": s.scale,
                    })),
                    "editable": self.calibrations.contains_key(id),
                    "collect": self.collect_jobs.contains_key(id),
                })
            })
            .collect();
        let reload = self.reloads.lock().map(|r| r.clone()).unwrap_or_default();
        json!({
            "site": self.site,
            "bin_seconds": self.bin_seconds,
            "cameras": cameras,
            "counts": counts,
            "reload": reload,
            "collecting": self.collecting_json(),
            "now": humantime::format_rfc3339_millis(now).to_string(),
        })
    }

    /// The session behind a request, or the answer refusing it. Writes also need the CSRF token.
    pub fn authorize(&self, headers: &HeaderMap, write: bool) -> Result<String, Refused> {
        let csrf = match &self.password_hash {
            None => self.open_csrf.clone(),
            Some(_) => {
                let cookie = headers
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|kv| kv.trim().split_once('='))
                    .find(|(k, _)| *k == COOKIE)
                    .map(|(_, v)| v.to_owned());
                let Ok(mut sessions) = self.sessions.lock() else {
                    return Err(Refused(StatusCode::INTERNAL_SERVER_ERROR, "sessions unavailable"));
                };
                sessions.retain(|_, s| s.expires > Instant::now());
                match cookie.as_deref().and_then(|c| sessions.get(c)) {
                    Some(s) => s.csrf.clone(),
                    None => return Err(Refused(StatusCode::UNAUTHORIZED, "log in first")),
                }
            }
        };
        if write {
            let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|s| same_secret(s.as_bytes(), csrf.as_bytes())) {
                return Err(Refused(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token"));
            }
            if !same_origin(headers) {
                return Err(Refused(StatusCode::FORBIDDEN, "cross-site request refused"));
            }
        }
        Ok(csrf)
    }
}

/// A browser says where a request comes from (`Origin`); a write must come from this console's page.
/// No `Origin` (curl, scripts on the box) passes: the CSRF token still has to match.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.split_once("://").map_or(origin, |(_, rest)| rest) == host
}

/// A request refused by [`Console::authorize`]: its status and why.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub StatusCode, pub &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn text(code: StatusCode, msg: &str) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{msg}\n")).into_response()
}

fn problem(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

/// The console's routes, on its own state.
pub fn router(console: Arc<Console>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route(
            "/console/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }),
        )
        .route("/console/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS) }))
        .route("/favicon.svg", get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON_SVG) }))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/state", get(state))
        .route("/api/live", get(live))
        .route("/api/cameras/{camera}/rules", get(get_rules).post(post_rules))
        .route("/api/cameras/{camera}/collect", post(post_collect))
        .route("/api/export/{file}", get(export))
        .with_state(console)
}

async fn session(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match c.authorize(&headers, false) {
        Ok(csrf) => Json(json!({"csrf": csrf, "login": c.password_hash.is_some(), "site": c.site})).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct Login {
    password: String,
}

async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> Response {
    let Some(hash) = c.password_hash.clone() else {
        return Json(json!({"csrf": c.open_csrf, "login": false})).into_response();
    };
    if !same_origin(&headers) {
        return text(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    let ip = peer.ip();
    // Hashing is bounded first: an attempt that cannot be hashed now is not counted.
    let Ok(permit) = c.hashing.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "busy checking other logins: try again in a second\n",
        )
            .into_response();
    };
    let now = Instant::now();
    let counted = match c.attempts.lock() {
        Ok(mut a) => a.begin(ip, now),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "unavailable"),
    };
    if let Err(wait) = counted {
        let secs = wait.as_secs_f64().ceil().max(1.0);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, format!("{secs}"))],
            format!("too many failed logins from {ip}: try again in {secs} s\n"),
        )
            .into_response();
    }
    // Argon2 takes tens of milliseconds and 19 MiB: off the async task, the permit held until done
    // (also when the client goes away meanwhile).
    let ok = tokio::task::spawn_blocking(move || {
        let ok = verify(&hash, &body.password);
        drop(permit);
        ok
    })
    .await
    .unwrap_or(false);
    if !ok {
        tracing::warn!(client = %ip, "console: login refused (wrong password)");
        return text(StatusCode::UNAUTHORIZED, "wrong password");
    }
    if let Ok(mut a) = c.attempts.lock() {
        a.forgive(ip, now);
    }
    let (Ok(id), Ok(csrf)) = (token(), token()) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no random numbers");
    };
    if let Ok(mut s) = c.sessions.lock() {
        s.insert(id.clone(), Session { csrf: csrf.clone(), expires: now + SESSION_TTL });
    }
    tracing::info!(client = %ip, "console: logged in");
    let secure = if c.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_TTL.as_secs());
    ([(header::SET_COOKIE, cookie)], Json(json!({"csrf": csrf, "login": true}))).into_response()
}

async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, true) {
        return r.into_response();
    }
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if let Ok(mut s) = c.sessions.lock() {
        s.retain(|_, v| v.csrf != csrf);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], "logged out\n").into_response()
}

async fn state(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    Json(c.state_json()).into_response()
}

async fn live(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let rx = c.live.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = match rx.recv().await {
            Ok(msg) => Event::default().data(&*msg),
            // A page that fell behind skips ahead and says so.
            Err(RecvError::Lagged(n)) => Event::default().data(json!({"type": "lagged", "skipped": n}).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// The problems of a would-be calibration file, each with the shape it belongs to (`line`, 1).
fn problems_json(e: &crate::config::ConfigError) -> serde_json::Value {
    let items: Vec<_> = e
        .problems
        .iter()
        .map(|p| {
            // "line[1] (x100).points" → ("line", 1)
            let shape = p.field.split_once('[').and_then(|(kind, rest)| {
                let index: usize = rest.split(']').next()?.parse().ok()?;
                Some(json!({"kind": kind, "index": index}))
            });
            json!({"field": p.field, "message": p.message, "shape": shape})
        })
        .collect();
    json!({"error": "the rules were not saved", "problems": items})
}

async fn get_rules(State(c): State<Arc<Console>>, headers: HeaderMap, UrlPath(camera): UrlPath<String>) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let Some(path) = c.calibrations.get(&camera).cloned() else {
        return problem(StatusCode::NOT_FOUND, format!("camera {camera:?} has no calibration file to edit"));
    };
    match tokio::task::spawn_blocking(move || crate::config::load_calibration_file(&path)).await {
        Ok(Ok(cam)) => Json(cam.rules()).into_response(),
        Ok(Err(e)) => (StatusCode::CONFLICT, Json(problems_json(&e))).into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct SaveQuery {
    /// Check only: nothing is written.
    #[serde(default)]
    check: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectRequest {
    /// How long to collect, minutes (1 to [`MAX_COLLECT_MINUTES`]).
    minutes: u32,
}

async fn post_collect(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    UrlPath(camera): UrlPath<String>,
    Json(req): Json<CollectRequest>,
) -> Response {
    if let Err(r) = c.authorize(&headers, true) {
        return r.into_response();
    }
    match c.start_collect(&camera, req.minutes) {
        Ok(state) => (StatusCode::ACCEPTED, Json(state)).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn post_rules(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    UrlPath(camera): UrlPath<String>,
    Query(q): Query<SaveQuery>,
    Json(doc): Json<RulesDoc>,
) -> Response {
    if let Err(r) = c.authorize(&headers, true) {
        return r.into_response();
    }
    let Some(path) = c.calibrations.get(&camera).cloned() else {
        return problem(StatusCode::NOT_FOUND, format!("camera {camera:?} has no calibration file to edit"));
    };
    let console = c.clone();
    let done = tokio::task::spawn_blocking(move || save_rules(&console, &camera, &path, &doc, q.check)).await;
    match done {
        Ok(r) => r,
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Checks the rules with the configuration's own code; unless `check`, keeps the file as it was at
/// `<file>.prev`, writes the new one (atomically) and asks the running box to reload.
fn save_rules(c: &Console, camera: &str, path: &Path, doc: &RulesDoc, check: bool) -> Response {
    // Saves one at a time (two at once shared one temporary file: one of them failed, or was lost).
    let _saving = c.saving.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", path.display())),
    };
    let new = match doc.apply_to(&old) {
        Ok(t) => t,
        Err(e) => return problem(StatusCode::CONFLICT, format!("{}: cannot be edited: {e}", path.display())),
    };
    if let Err(e) = crate::config::check_calibration_text(path, &new) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(problems_json(&e))).into_response();
    }
    if check {
        return Json(json!({"ok": true, "checked": true})).into_response();
    }
    let mut prev = path.as_os_str().to_owned();
    prev.push(".prev");
    let prev = PathBuf::from(prev);
    // A temporary file of this process's own, created new (never someone else's), synced, then renamed
    // over the file: a reader sees the old rules or the new, whole.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".new.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let write_new = || -> std::io::Result<()> {
        use std::io::Write;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let written = std::fs::write(&prev, &old).and_then(|()| write_new());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        if matches!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied) {
            // The shipped systemd unit keeps everything but its state directory read-only.
            return problem(
                StatusCode::CONFLICT,
                format!(
                    "{}: not saved: its folder is read-only to junction ({e}); keep the calibration files \
                     the console edits where the service may write: /var/lib/junction/calibration/ under \
                     the shipped systemd unit (README, Deployment)",
                    path.display()
                ),
            );
        }
        return problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: not saved: {e}", path.display()));
    }
    let generation = c.reloads.lock().map(|r| r.generation).unwrap_or(0);
    c.reload.store(true, Ordering::Relaxed);
    tracing::info!(camera, file = %path.display(), previous = %prev.display(), "console: rules saved; reloading");
    Json(json!({"ok": true, "file": path, "previous": prev, "generation": generation})).into_response()
}

#[derive(Deserialize)]
struct ExportQuery {
    from: String,
    to: String,
    /// Bin length, e.g. 15m (default: 15 minutes).
    interval: Option<String>,
}

/// `tmc.csv` or `coverage.csv` of the store's reports in [from, to), the same code as `junction report`.
async fn export(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    UrlPath(file): UrlPath<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    if let Err(r) = c.authorize(&headers, false) {
        return r.into_response();
    }
    let parse = |s: &str, what: &str| {
        humantime::parse_rfc3339_weak(s).map_err(|e| format!("{what} {s:?}: {e} (e.g. 2026-11-30T07:00:00Z)"))
    };
    let (from, to) = match (parse(q.from.trim_end_matches('Z'), "from"), parse(q.to.trim_end_matches('Z'), "to")) {
        (Ok(f), Ok(t)) if t > f => (f, t),
        (Ok(_), Ok(_)) => return problem(StatusCode::BAD_REQUEST, "to must be after from"),
        (Err(e), _) | (_, Err(e)) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let interval = match q.interval.as_deref().map(crate::config::parse_bin) {
        None => 900,
        Some(Ok(d)) => d.as_secs(),
        Some(Err(e)) => return problem(StatusCode::BAD_REQUEST, format!("interval: {e}")),
    };
    let (store, site) = (c.store.clone(), c.site.clone());
    let answer = tokio::task::spawn_blocking(move || {
        let s = crate::store::Store::open(&store).map_err(|e| e.to_string())?;
        let secs = |t| humantime::format_rfc3339_seconds(t).to_string();
        let reports = s.reports(Some(&site), interval, &secs(from), &secs(to)).map_err(|e| e.to_string())?;
        Ok::<_, String>(match file.as_str() {
            "tmc.csv" => Some(crate::report::tmc_csv(&crate::report::tmc(&reports))),
            "coverage.csv" => Some(crate::report::coverage_csv(&reports)),
            _ => None,
        })
    })
    .await;
    match answer {
        Ok(Ok(Some(csv))) => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response(),
        Ok(Ok(None)) => problem(StatusCode::NOT_FOUND, "ask for /api/export/tmc.csv or /api/export/coverage.csv"),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Hands the outputs thread's events and reports to the console as well as to `inner`.
pub struct Tee<'a> {
    pub inner: &'a mut (dyn crate::sink::Observer + Send),
    pub console: Option<Arc<Console>>,
}

/// The outputs thread's observer: the console first, then the printer (or whoever runs the box).
impl crate::sink::Observer for Tee<'_> {
    fn live(&mut self, update: &Live) {
        if let Some(c) = &self.console {
            c.live(update);
        }
        self.inner.live(update);
    }

    fn event(&mut self, camera: &str, event: &TrafficEvent) {
        if let Some(c) = &self.console {
            c.event(camera, event);
        }
        self.inner.event(camera, event);
    }

    fn report(&mut self, report: &FlowReport) {
        if let Some(c) = &self.console {
            c.report(report);
        }
        self.inner.report(report);
    }
}

/// The collection of each camera whose `[[camera]]` has `collect = true`: its folder beside the
/// store (`collect/<camera>`), the site's model and rules; one ONNX Runtime thread and every 5th frame,
/// so that the running analysis keeps most of the box.
fn collect_jobs(cfg: &Config) -> HashMap<String, crate::collect::Job> {
    let folder = cfg.store.path.parent().map_or_else(|| PathBuf::from("collect"), |p| p.join("collect"));
    cfg.cameras
        .iter()
        .filter(|c| c.collect)
        .map(|c| {
            let live = crate::source::SourceUri::parse(&c.uri).is_ok_and(|u| u.is_live());
            let job = crate::collect::Job {
                camera: c.id.clone(),
                uri: c.uri.clone(),
                card: cfg.model_card.clone(),
                detector: crate::detect::DetectorOptions { intra_threads: 1, parallel: 1, ..cfg.detector.clone() },
                two_wheelers: cfg.two_wheelers.clone(),
                tracker: cfg.tracker.clone(),
                params: crate::collect::CollectParams { hour_quota: live, ..crate::collect::CollectParams::default() },
                out: folder.join(crate::collect::sanitise(&c.id)),
                decoder: c.decoder.clone(),
                every: 5,
                frames: 0,
                until: None,
            };
            (c.id.clone(), job)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CameraConfig;
    use junction_schema::rules::{Anchor, LineDoc, Side};

    #[test]
    fn login_attempts_are_counted_before_checking_and_trickle_when_locked() {
        let mut l = LoginLimiter::default();
        let (ip, other) = ("127.0.0.1".parse().unwrap(), "10.0.0.9".parse().unwrap());
        let t0 = Instant::now();
        // Five attempts begun at once (none finished): the sixth waits.
        for _ in 0..MAX_FAILURES {
            assert!(l.begin(ip, t0).is_ok());
        }
        assert_eq!(l.begin(ip, t0), Err(LOCKED_INTERVAL));
        assert!(l.begin(other, t0).is_ok(), "other addresses are not touched");
        // One IPv6 host rotating through its /64 is one bucket.
        for k in 0..MAX_FAILURES as u16 {
            assert!(l.begin(IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, k + 1)), t0).is_ok());
        }
        assert!(l.begin("2001:db8:0:1::99".parse().unwrap(), t0).is_err(), "the /64 is locked");
        // Locked: one attempt every LOCKED_INTERVAL, not five minutes of nothing.
        assert_eq!(l.begin(ip, t0 + Duration::from_secs(10)), Err(Duration::from_secs(20)));
        let t1 = t0 + LOCKED_INTERVAL;
        assert!(l.begin(ip, t1).is_ok());
        assert!(l.begin(ip, t1 + Duration::from_secs(1)).is_err());
        // That one succeeded: forgiven, so the next may go at once.
        l.forgive(ip, t1);
        assert!(l.begin(ip, t1 + Duration::from_secs(1)).is_ok());
        // After the window, a fresh start.
        let t2 = t1 + FAILURE_WINDOW + Duration::from_secs(2);
        for _ in 0..MAX_FAILURES {
            assert!(l.begin(ip, t2).is_ok());
        }
    }

    #[test]
    fn login_addresses_remembered_are_bounded() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for k in 0..MAX_ADDRESSES as u32 {
            assert!(l.begin(IpAddr::from(k.to_be_bytes()), t0).is_ok());
        }
        let new: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.begin(new, t0).is_err(), "full of recent addresses");
        assert!(l.begin(new, t0 + FAILURE_WINDOW + Duration::from_secs(1)).is_ok(), "the old ones aged out");
        assert!(l.by_addr.len() <= MAX_ADDRESSES);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abcd", b"abcd"));
        assert!(!same_secret(b"abcd", b"abce") && !same_secret(b"abc", b"abcd") && !same_secret(b"", b"a"));
    }

    fn street() -> (PathBuf, String) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/example-street/street.toml");
        let text = std::fs::read_to_string(&path).expect("example calibration");
        (path, text)
    }

    #[test]
    fn unchanged_rules_leave_the_file_as_it_was() {
        let (path, text) = street();
        let cam = crate::config::load_calibration_file(&path).expect("valid");
        let doc = cam.rules();
        assert_eq!(doc.apply_to(&text).expect("editable"), text);
    }

    #[test]
    fn an_added_line_and_a_moved_point_are_written_and_checked() {
        let (path, text) = street();
        let mut doc = crate::config::load_calibration_file(&path).expect("valid").rules();
        doc.lines[0].points[1] = [321.0, 230.5];
        doc.lines.push(LineDoc {
            id: "x200".into(),
            points: vec![[200.0, 60.0], [200.0, 220.0]],
            in_side: Side::Right,
            anchor: Anchor::Centre,
            lane: None,
            classes: Some(vec![VehicleClass::Motorcycle]),
        });
        doc.loops.pop();
        let new = doc.apply_to(&text).expect("editable");
        // Comments of the rules that stay, and the ground points, are kept.
        assert!(new.contains("# seen from straight above"), "{new}");
        assert!(new.contains("[[ground_points]]"), "{new}");
        let cam = crate::config::check_calibration_text(&path, &new).expect("valid");
        assert_eq!((cam.lines[0].b.x, cam.lines[0].b.y), (321.0, 230.5));
        assert_eq!(&*cam.lines[1].id, "x200");
        assert_eq!(cam.lines[1].in_side, Side::Right);
        assert_eq!(cam.lines[1].classes, Some(vec![VehicleClass::Motorcycle]));
        assert_eq!(cam.loops.len(), 1);
        assert!(cam.ground.is_some());
    }

    #[test]
    fn a_shape_outside_the_frame_is_refused_naming_it() {
        let (path, text) = street();
        let mut doc = crate::config::load_calibration_file(&path).expect("valid").rules();
        doc.zones[0].polygon[1] = [900.0, 60.0];
        let new = doc.apply_to(&text).expect("editable");
        let e = crate::config::check_calibration_text(&path, &new).expect_err("outside");
        let j = problems_json(&e);
        assert_eq!(j["problems"][0]["shape"], json!({"kind": "zone", "index": 0}), "{j}");
        assert!(j["problems"][0]["message"].as_str().unwrap_or("").contains("900"), "{j}");
    }

    /// Two saves at once (two operators, or a double click): each is written whole, none fails on the
    /// other's temporary file, and the file ends as one of them.
    #[test]
    fn saves_at_once_do_not_share_a_temporary_file() {
        let (example, text) = street();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("street.toml");
        std::fs::write(&path, &text).expect("copy");
        let c = console();
        let doc = crate::config::load_calibration_file(&example).expect("valid").rules();
        let docs: Vec<RulesDoc> = (0..2)
            .map(|k| {
                let mut d = doc.clone();
                d.lines[0].points[1] = [321.0 + k as f32, 230.0];
                d
            })
            .collect();
        let codes: Vec<StatusCode> = std::thread::scope(|s| {
            let handles: Vec<_> = docs
                .iter()
                .map(|d| {
                    s.spawn(|| (0..40).map(|_| save_rules(&c, "cam", &path, d, false).status()).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        });
        assert!(codes.iter().all(|c| *c == StatusCode::OK), "{codes:?}");
        let end = crate::config::load_calibration_file(&path).expect("a whole file");
        assert!([321.0, 322.0].contains(&end.lines[0].b.x));
    }

    fn console() -> Arc<Console> {
        let mut cfg = Config::adhoc(PathBuf::from("model.toml"), CameraConfig::new("cam", "test://".into()));
        cfg.http = Some(crate::http::HttpConfig::new("127.0.0.1:0".parse().expect("address")));
        Console::new(&cfg, Arc::new(AtomicBool::new(false))).expect("console").expect("on")
    }

    /// A tile's state: starting, up with a rate, down with the error and since when, up again; fed as
    /// the outputs thread feeds it, at the times the analysis thread stamped (no clock read here).
    #[test]
    fn camera_states_for_the_tiles() {
        let c = console();
        let state = |c: &Console| c.state_json()["cameras"][0]["status"].clone();
        assert_eq!(state(&c)["state"], "starting");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let frame = |i: u32, dropped: u64, detect: Duration| Live::Frame {
            camera: "cam".into(),
            dropped,
            detect,
            at: t0 + Duration::from_millis(50) * i,
        };
        for i in 0..5 {
            c.live(&frame(i, 1, Duration::from_millis(20)));
        }
        let s = state(&c);
        assert_eq!((s["state"].as_str(), s["frames"].as_u64(), s["dropped"].as_u64()), (Some("up"), Some(5), Some(5)));
        assert!(s["fps"].as_f64().is_some_and(|f| (f - 20.0).abs() < 1e-6), "a frame every 50 ms: {s}");
        assert!(s["inference_ms"].as_f64().is_some_and(|m| m > 0.0), "{s}");
        let down_at = t0 + Duration::from_secs(1);
        let down = Some("connection refused".to_owned());
        c.live(&Live::State { camera: "cam".into(), state: "down", error: down, at: down_at });
        let s = state(&c);
        assert_eq!(
            (s["state"].as_str(), s["error"].as_str(), s["fps"].as_f64()),
            (Some("down"), Some("connection refused"), Some(0.0))
        );
        assert_eq!(s["since"].as_str(), Some(humantime::format_rfc3339_seconds(down_at).to_string().as_str()));
        c.live(&Live::State { camera: "cam".into(), state: "restarting", error: None, at: down_at });
        assert_eq!(state(&c)["state"], "restarting");
        c.live(&frame(40, 0, Duration::ZERO));
        assert_eq!(state(&c)["state"], "up");
        assert!(state(&c)["error"].is_null());
    }

    /// Without a password every read passes; a write still needs the page's CSRF token.
    #[test]
    fn loopback_console_still_needs_the_csrf_token_to_write() {
        let c = console();
        let mut h = HeaderMap::new();
        assert!(c.authorize(&h, false).is_ok());
        assert_eq!(c.authorize(&h, true).map_err(|r| r.0), Err(StatusCode::FORBIDDEN));
        h.insert("x-csrf-token", c.open_csrf.parse().expect("header"));
        assert!(c.authorize(&h, true).is_ok());
        h.insert(header::HOST, "127.0.0.1:9464".parse().expect("header"));
        h.insert(header::ORIGIN, "http://elsewhere.example".parse().expect("header"));
        assert_eq!(c.authorize(&h, true).map_err(|r| r.0), Err(StatusCode::FORBIDDEN));
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse battery"));
        assert!(!verify(&h, "correct horse batterY"));
        assert!(!verify("not a hash", "correct horse battery"));
    }
}
