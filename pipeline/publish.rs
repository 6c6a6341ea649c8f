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

use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS};
use serde::Deserialize;

use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use std::sync::Arc;

/// `[mqtt]` in the site configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (TLS, `mqtts://`, is not available yet).
    pub url: String,
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
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("mqtt.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `mqtt://host[:port]` or `tcp://…` (port 1883 by default).
pub fn parse_broker_url(url: &str) -> Result<Broker, PublishError> {
    let bad = |reason: &str| PublishError::Url { url: url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected mqtt://host[:port]"))?;
    match scheme {
        "mqtt" | "tcp" => {}
        "mqtts" | "ssl" => return Err(bad("TLS is not available in this build yet: use mqtt://")),
        other => return Err(bad(&format!("unsupported scheme {other:?} (mqtt)"))),
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported (they would be logged)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad(&format!("port {p:?} is not a number 1-65535")))?),
        None => (authority, 1883),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok(Broker { host: host.to_owned(), port })
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
        let broker = parse_broker_url(&cfg.url)?;
        // Fail now if the store cannot be opened, not in the thread.
        Store::open(store_path)?;
        let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("junction-{site}"));
        let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
        opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(1)));
        // The outbox, not the broker session, is what survives: a clean session on every connect, and
        // the report in flight is sent again after a reconnect (same id: receivers drop duplicates).
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(status_topic(site), status_payload(site, "offline"), QoS::AtLeastOnce, true));
        let (tx, rx) = mpsc::channel();
        let site = site.to_owned();
        let store_path = store_path.to_owned();
        let drain = Duration::from_secs_f64(cfg.drain_timeout_s.max(0.0));
        let shown = format!("mqtt://{}:{}", broker.host, broker.port);
        let thread = std::thread::Builder::new()
            .name("junction-mqtt".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "mqtt: cannot start the runtime"),
                };
                if let Err(e) = rt.block_on(publish_loop(opts, site, store_path, rx, drain, shown, metrics)) {
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

async fn publish_loop(
    opts: MqttOptions,
    site: String,
    store_path: PathBuf,
    rx: mpsc::Receiver<Command>,
    drain: Duration,
    shown: String,
    metrics: Arc<Metrics>,
) -> Result<(), PublishError> {
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
                    if ev_tx.send(Err(e.to_string())).is_err() {
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
        assert_eq!(parse_broker_url("mqtt://127.0.0.1:1884").unwrap(), Broker { host: "127.0.0.1".into(), port: 1884 });
        assert_eq!(parse_broker_url("tcp://broker").unwrap().port, 1883);
        for bad in ["127.0.0.1:1883", "http://x", "mqtt://", "mqtt://h:99999", "mqtt://u:p@h", "mqtts://h"] {
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
