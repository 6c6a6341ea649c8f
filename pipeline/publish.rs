//! MQTT publisher: drains the store's outbox (reports not yet acknowledged) to the broker, oldest
//! first, QoS 1, one at a time: a report is marked published only on its PUBACK, so a broker outage,
//! a network loss or a crash of this process loses nothing (at worst a report arrives twice, with the
//! same `id`). A retained `status` message says "online"; the last will says "offline".
//!
//! Runs on its own thread with a single-threaded tokio runtime and its own connection to the store;
//! the analysis loop never waits for the network.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport};
use serde::Deserialize;

use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use std::sync::Arc;

/// `[mqtt]` in the site configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: String,
    /// TLS: PEM file of the CA(s) that signed the broker's certificate (default: the system's,
    /// /etc/ssl/certs/ca-certificates.crt).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate and key (PEM), for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    /// The password, read from this file (first line) ...
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// ... or from this environment variable. Never from the configuration itself, never logged.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Default: `junction-<site>`. Must be unique per broker: it names the persistent session.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Seconds between keep-alive pings.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// At shutdown, how long to keep publishing the outbox before leaving it for the next start.
    #[serde(default = "default_drain")]
    pub drain_timeout_s: f64,
}

fn default_keep_alive() -> u64 {
    30
}
fn default_drain() -> f64 {
    10.0
}

/// A broker address, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("mqtt.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{field} {path}: {message}")]
    File { field: &'static str, path: PathBuf, message: String },
    #[error("mqtt.password_env {name}: {message}")]
    Env { name: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `mqtt://host[:port]` or `tcp://…` (port 1883), `mqtts://…` or `ssl://…` (TLS, port 8883).
pub fn parse_broker_url(url: &str) -> Result<Broker, PublishError> {
    let bad = |reason: &str| PublishError::Url { url: url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected mqtt://host[:port]"))?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(bad(&format!("unsupported scheme {other:?} (mqtt, mqtts)"))),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported (they would be logged)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad(&format!("port {p:?} is not a number 1-65535")))?),
        None => (authority, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok(Broker { host: host.to_owned(), port, tls })
}

/// Debian's bundle of the system's trusted CAs.
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, PublishError> {
    std::fs::read(path).map_err(|e| PublishError::File { field, path: path.to_owned(), message: e.to_string() })
}

/// What a connection uses, read and checked from `[mqtt]`.
pub struct Connection {
    pub broker: Broker,
    pub tls: Option<TlsConfiguration>,
    /// Username and password.
    pub credentials: Option<(String, String)>,
}

/// Reads and checks the TLS and credential files of `cfg`.
pub fn connection_settings(cfg: &MqttConfig) -> Result<Connection, PublishError> {
    let broker = parse_broker_url(&cfg.url)?;
    let tls = if broker.tls {
        let ca_path = cfg.ca_file.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_CA));
        let ca = read_file("mqtt.ca_file", &ca_path)?;
        let certs = rustls_pemfile::certs(&mut &ca[..]).filter(Result::is_ok).count();
        if certs == 0 {
            return Err(PublishError::File {
                field: "mqtt.ca_file",
                path: ca_path,
                message: "holds no PEM certificate".into(),
            });
        }
        let client_auth = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((read_file("mqtt.client_cert", c)?, read_file("mqtt.client_key", k)?)),
            (None, None) => None,
            (Some(c), None) | (None, Some(c)) => {
                return Err(PublishError::File {
                    field: "mqtt.client_cert",
                    path: c.clone(),
                    message: "client_cert and client_key go together".into(),
                });
            }
        };
        // rustls needs a process-wide crypto provider: ring (no C toolchain beyond cc).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Some(TlsConfiguration::Simple { ca, alpn: None, client_auth })
    } else {
        if cfg.ca_file.is_some() || cfg.client_cert.is_some() {
            return Err(PublishError::Url { url: cfg.url.clone(), reason: "ca_file/client_cert need mqtts://".into() });
        }
        None
    };
    let credentials = match &cfg.username {
        None => None,
        Some(user) => {
            let password = match (&cfg.password_file, &cfg.password_env) {
                (Some(p), _) => {
                    let text =
                        String::from_utf8(read_file("mqtt.password_file", p)?).map_err(|_| PublishError::File {
                            field: "mqtt.password_file",
                            path: p.clone(),
                            message: "not UTF-8 text".into(),
                        })?;
                    text.lines().next().unwrap_or("").to_owned()
                }
                (None, Some(name)) => {
                    std::env::var(name).map_err(|e| PublishError::Env { name: name.clone(), message: e.to_string() })?
                }
                (None, None) => String::new(),
            };
            Some((user.clone(), password))
        }
    };
    Ok(Connection { broker, tls, credentials })
}

/// What a connection error means for the operator, naming the setting to look at.
fn explain(e: &rumqttc::ConnectionError, cfg_hint: &str) -> String {
    use rumqttc::{ConnectReturnCode, ConnectionError};
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => {
            format!("the broker refused the credentials (mqtt.username, mqtt.password_file / password_env): {e}")
        }
        ConnectionError::Tls(t) => format!("TLS handshake failed (mqtt.ca_file {cfg_hint}): {t}"),
        ConnectionError::Io(io) if io.to_string().contains("certificate") => {
            format!("TLS handshake failed (mqtt.ca_file {cfg_hint}): {io}")
        }
        other => other.to_string(),
    }
}

pub fn flow_topic(site: &str, camera: &str) -> String {
    format!("junction/v1/{site}/{camera}/flow")
}

pub fn status_topic(site: &str) -> String {
    format!("junction/v1/{site}/status")
}

fn status_payload(site: &str, state: &str) -> Vec<u8> {
    serde_json::json!({
        "schema": "junction.status.v1",
        "site": site,
        "state": state,
        "version": env!("CARGO_PKG_VERSION"),
        "at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    })
    .to_string()
    .into_bytes()
}

/// Messages from the analysis loop.
enum Command {
    /// New rows may be in the outbox.
    Wake,
    /// Publish what is left (up to the drain timeout), say "offline", disconnect.
    Drain,
}

/// Handle on the publisher thread.
pub struct Publisher {
    tx: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    /// Starts the publisher thread. Errors only for a bad URL; a broker that is down is retried.
    pub fn start(cfg: &MqttConfig, site: &str, store_path: &Path, metrics: Arc<Metrics>) -> Result<Self, PublishError> {
        let Connection { broker, tls, credentials } = connection_settings(cfg)?;
        // Fail now if the store cannot be opened, not in the thread.
        Store::open(store_path)?;
        let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("junction-{site}"));
        let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
        opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(1)));
        // The outbox, not the broker session, is what survives: a clean session on every connect, and
        // the report in flight is sent again after a reconnect (same id: receivers drop duplicates).
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(status_topic(site), status_payload(site, "offline"), QoS::AtLeastOnce, true));
        if let Some(tls) = tls {
            opts.set_transport(Transport::tls_with_config(tls));
        }
        if let Some((user, password)) = credentials {
            opts.set_credentials(user, password);
        }
        let ca_hint = cfg.ca_file.as_ref().map_or_else(|| SYSTEM_CA.to_owned(), |p| p.display().to_string());
        let (tx, rx) = mpsc::channel();
        let site = site.to_owned();
        let store_path = store_path.to_owned();
        let drain = Duration::from_secs_f64(cfg.drain_timeout_s.max(0.0));
        let shown = format!("{}://{}:{}", if broker.tls { "mqtts" } else { "mqtt" }, broker.host, broker.port);
        let thread = std::thread::Builder::new()
            .name("junction-mqtt".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "mqtt: cannot start the runtime"),
                };
                let settings = LoopSettings { site, store_path, drain, shown, ca_hint };
                if let Err(e) = rt.block_on(publish_loop(opts, settings, rx, metrics)) {
                    tracing::error!(error = %e, "mqtt publisher stopped");
                }
            })
            .map_err(|e| PublishError::Url { url: cfg.url.clone(), reason: format!("cannot start thread: {e}") })?;
        Ok(Self { tx, thread: Some(thread) })
    }

    /// Tells the publisher that new reports were stored.
    pub fn wake(&self) {
        let _ = self.tx.send(Command::Wake);
    }

    /// Publishes what is left (within the drain timeout) and stops.
    pub fn drain(mut self) {
        let _ = self.tx.send(Command::Drain);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reconnect delay: 0.5 s doubling to 30 s, ±25 % jitter.
fn backoff(attempt: u32) -> Duration {
    crate::runtime::backoff(attempt, Duration::from_millis(500), Duration::from_secs(30))
}

/// Everything the publishing loop needs besides the client options and its channels.
struct LoopSettings {
    site: String,
    store_path: PathBuf,
    /// How long to keep publishing after `Drain`.
    drain: Duration,
    /// The broker address for logs.
    shown: String,
    /// The CA file in use, for TLS error messages.
    ca_hint: String,
}

async fn publish_loop(
    opts: MqttOptions,
    settings: LoopSettings,
    rx: mpsc::Receiver<Command>,
    metrics: Arc<Metrics>,
) -> Result<(), PublishError> {
    let LoopSettings { site, store_path, drain, shown, ca_hint } = settings;
    let store = Store::open(&store_path)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 32);
    // The event loop runs in its own task (rumqttc reconnects on the next poll after an error); its
    // events come here over a channel, which `select!` can wait on safely.
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<Result<Event, String>>();
    let events = tokio::spawn(async move {
        let mut attempt = 0u32;
        loop {
            match eventloop.poll().await {
                Ok(ev) => {
                    if matches!(ev, Event::Incoming(Incoming::ConnAck(_))) {
                        attempt = 0;
                    }
                    if ev_tx.send(Ok(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if ev_tx.send(Err(explain(&e, &ca_hint))).is_err() {
                        return;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    });

    let mut connected = false;
    // The report awaiting its PUBACK: id and, once sent, its packet id.
    let mut inflight: Option<(String, Option<u16>)> = None;
    // Publishes in the order they were handed to the client: report id, or None for a status message.
    let mut sent: VecDeque<Option<String>> = VecDeque::new();
    let mut draining: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut down_since: Option<Instant> = None;
    loop {
        tokio::select! {
            ev = ev_rx.recv() => match ev {
                None => break,
                Some(Ok(Event::Incoming(Incoming::ConnAck(ack)))) => {
                    connected = true;
                    metrics.mqtt_connected.set(1);
                    if let Some(since) = down_since.take() {
                        tracing::info!(broker = %shown, after_s = since.elapsed().as_secs(), "mqtt: reconnected");
                    } else {
                        tracing::info!(broker = %shown, "mqtt: connected");
                    }
                    // A clean session: rumqttc dropped what was in flight; it is sent again from the outbox.
                    let _ = ack;
                    inflight = None;
                    sent.clear();
                    sent.push_back(None);
                    let _ = client.publish(status_topic(&site), QoS::AtLeastOnce, true, status_payload(&site, "online")).await;
                }
                Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(Some(id)) = sent.pop_front()
                        && let Some((want, slot)) = inflight.as_mut()
                        && *want == id
                    {
                        *slot = Some(pkid);
                    }
                }
                Some(Ok(Event::Incoming(Incoming::PubAck(ack)))) => {
                    if let Some((id, Some(pkid))) = &inflight
                        && *pkid == ack.pkid
                    {
                        store.mark_published(id, SystemTime::now())?;
                        inflight = None;
                        metrics.outbox_pending.set(store.unpublished()? as i64);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if connected || down_since.is_none() {
                        tracing::warn!(broker = %shown, error = %e, pending = store.unpublished().unwrap_or(0), "mqtt: broker unreachable; reports stay in the outbox");
                        down_since.get_or_insert_with(Instant::now);
                    }
                    connected = false;
                    metrics.mqtt_connected.set(0);
                }
            },
            _ = tick.tick() => {
                loop {
                    match rx.try_recv() {
                        Ok(Command::Wake) => {
                            metrics.outbox_pending.set(store.unpublished()? as i64);
                        }
                        Ok(Command::Drain) | Err(mpsc::TryRecvError::Disconnected) => {
                            draining.get_or_insert_with(Instant::now);
                            break;
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                    }
                }
            }
        }
        if connected && inflight.is_none() {
            if let Some((id, camera, payload)) = store.next_unpublished()? {
                sent.push_back(Some(id.clone()));
                inflight = Some((id, None));
                let _ = client.publish(flow_topic(&site, &camera), QoS::AtLeastOnce, false, payload).await;
            } else if draining.is_some() {
                break;
            }
        }
        if draining.is_some_and(|t| t.elapsed() > drain) {
            let left = store.unpublished()?;
            tracing::warn!(reports = left, "mqtt: drain timeout; reports stay in the outbox for the next start");
            break;
        }
    }
    if connected {
        let _ = client.publish(status_topic(&site), QoS::AtLeastOnce, true, status_payload(&site, "offline")).await;
        // Give the event loop a moment to send it, then disconnect.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    events.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884").unwrap(),
            Broker { host: "127.0.0.1".into(), port: 1884, tls: false }
        );
        assert_eq!(parse_broker_url("tcp://broker").unwrap().port, 1883);
        assert_eq!(
            parse_broker_url("mqtts://broker").unwrap(),
            Broker { host: "broker".into(), port: 8883, tls: true }
        );
        for bad in ["127.0.0.1:1883", "http://x", "mqtt://", "mqtt://h:99999", "mqtt://u:p@h"] {
            let e = parse_broker_url(bad).unwrap_err().to_string();
            assert!(e.starts_with("mqtt.url"), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(3) > Duration::from_secs(2));
        assert!(backoff(50) <= Duration::from_secs_f64(37.5));
    }
}
