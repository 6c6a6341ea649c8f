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

use junction_common::mqtt::{SYSTEM_CA, explain, explain_v5};
use rumqttc::{Outgoing, QoS, Transport};

use crate::store::{Outbox, Pending, Store, StoreError};
use crate::telemetry::Metrics;
use std::sync::Arc;

pub use junction_common::mqtt::{Connection, SettingsError, connection_settings};
pub use junction_schema::site::{Broker, MqttConfig, Protocol, parse_broker_url};
pub use junction_schema::wire::{MAX_PACKET_BYTES, detector_topic, events_topic, flow_topic, status_topic};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the MQTT session panicked: {0}")]
    Panic(String),
}

fn status_payload(site: &str, state: &str, at: SystemTime) -> Vec<u8> {
    junction_schema::wire::to_json(&junction_schema::wire::Status::new(site, state, env!("CARGO_PKG_VERSION"), at))
        .into_bytes()
}

/// The last will of a connection made at `at`: "offline", dated as that connection's "online" (the
/// centre keeps a status no older than the one it has, so a will dated before the online of a
/// reconnection would leave a dead box online).
fn will_v311(site: &str, at: SystemTime) -> rumqttc::LastWill {
    rumqttc::LastWill::new(status_topic(site), status_payload(site, "offline", at), QoS::AtLeastOnce, true)
}

fn will_v5(site: &str, at: SystemTime) -> rumqttc::v5::mqttbytes::v5::LastWill {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let props = LastWillProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        delay_interval: None,
        message_expiry_interval: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    };
    LastWill::new(
        status_topic(site),
        status_payload(site, "offline", at),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        true,
        Some(props),
    )
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
        let conn = connection_settings(cfg)?;
        // Fail now if the store cannot be opened, not in the thread.
        Store::open(store_path)?;
        let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("junction-{site}"));
        let ca_hint = cfg.ca_file.as_ref().map_or_else(|| SYSTEM_CA.to_owned(), |p| p.display().to_string());
        let (tx, rx) = mpsc::channel();
        let shown = format!(
            "{}://{}:{} (MQTT {})",
            if conn.broker.tls { "mqtts" } else { "mqtt" },
            conn.broker.host,
            conn.broker.port,
            match cfg.protocol {
                Protocol::V311 => "3.1.1",
                Protocol::V5 => "5",
            }
        );
        let settings = LoopSettings {
            site: site.to_owned(),
            store_path: store_path.to_owned(),
            drain: Duration::from_secs_f64(cfg.drain_timeout_s.max(0.0)),
            shown,
            events: cfg.events,
        };
        let options = ClientOptions {
            protocol: cfg.protocol,
            client_id,
            conn,
            keep_alive: Duration::from_secs(cfg.keep_alive_s.max(5)),
            site: site.to_owned(),
            ca_hint,
        };
        let thread = std::thread::Builder::new()
            .name("junction-mqtt".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "mqtt: cannot start the runtime"),
                };
                // A store error (database busy, disk trouble) ends one session of the loop, never the
                // publisher: it starts again with backoff, the outbox untouched.
                let mut attempt = 0;
                loop {
                    metrics.publisher_up.set(1);
                    // A panic (a library's assertion) ends this session like a store error does, never
                    // the publisher: the outbox waits, /metrics says so, and it starts again.
                    let session = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        rt.block_on(publish_loop(options.clone(), settings.clone(), &rx, &metrics))
                    }));
                    metrics.mqtt_connected.set(0);
                    let result = session.unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(PublishError::Panic(what))
                    });
                    match result {
                        Ok(()) => break,
                        Err(e) => {
                            metrics.publisher_up.set(0);
                            let wait = backoff(attempt);
                            attempt += 1;
                            let kind = if matches!(e, PublishError::Panic(_)) { "panic" } else { "store" };
                            metrics
                                .errors
                                .get_or_create(&vec![("stage".into(), "publish".into()), ("kind".into(), kind.into())])
                                .inc();
                            tracing::error!(error = %e, retry_in_s = format!("{:.1}", wait.as_secs_f64()), "mqtt publisher: session failed; starting again");
                            std::thread::sleep(wait);
                        }
                    }
                }
                metrics.publisher_up.set(0);
            })
            .map_err(|e| PublishError::Panic(format!("cannot start the MQTT thread: {e}")))?;
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
    crate::retry::backoff(attempt, Duration::from_millis(500), Duration::from_secs(30))
}

/// How long a message the broker refused for the `n`-th time waits before it is offered again: 1
/// minute, doubling, at most an hour (an ACL or quota is fixed by a person, not in seconds).
fn aside(n: u32) -> Duration {
    Duration::from_secs(60u64.saturating_mul(1 << n.saturating_sub(1).min(6)).min(3600))
}

/// Everything the publishing loop needs besides the client and its channels.
#[derive(Clone)]
struct LoopSettings {
    site: String,
    store_path: PathBuf,
    /// How long to keep publishing after `Drain`.
    drain: Duration,
    /// The broker address for logs.
    shown: String,
    /// Publish per-vehicle events too.
    events: bool,
}

/// What the client is built from, for either protocol version.
#[derive(Clone)]
struct ClientOptions {
    protocol: Protocol,
    client_id: String,
    conn: Connection,
    keep_alive: Duration,
    /// The site, for the last will (made anew at each connect).
    site: String,
    /// The CA file in use, for TLS error messages.
    ca_hint: String,
}

/// What the loop needs to know of the protocol's events, the same for 3.1.1 and 5.
enum Ev {
    /// Connected, with the time its last will carries.
    ConnAck(SystemTime),
    /// A PUBLISH left with this packet id.
    Sent(u16),
    /// PUBACK for a packet id; MQTT 5 may carry a refusal (reason code ≥ 0x80).
    Acked {
        pkid: u16,
        refused: Option<String>,
    },
    Other,
}

/// An MQTT event loop of either protocol, reduced to what the publisher needs.
trait EventSource: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Result<Ev, String>> + Send + '_;
    /// The last will of the next connection, dated `at`.
    fn set_will(&mut self, at: SystemTime);
}

struct V311Loop {
    eventloop: rumqttc::EventLoop,
    /// The CA file in use, for TLS error messages.
    ca_hint: String,
    site: String,
    /// The time in the will of the connection being made (its online carries the same).
    will_at: SystemTime,
}

impl EventSource for V311Loop {
    async fn next(&mut self) -> Result<Ev, String> {
        use rumqttc::{Event, Incoming};
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => Ok(Ev::ConnAck(self.will_at)),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Ev::Sent(pkid)),
            Ok(Event::Incoming(Incoming::PubAck(a))) => Ok(Ev::Acked { pkid: a.pkid, refused: None }),
            Ok(_) => Ok(Ev::Other),
            Err(e) => Err(explain(&e, &self.ca_hint)),
        }
    }

    fn set_will(&mut self, at: SystemTime) {
        self.will_at = at;
        self.eventloop.mqtt_options.set_last_will(will_v311(&self.site, at));
    }
}

struct V5Loop {
    eventloop: rumqttc::v5::EventLoop,
    ca_hint: String,
    site: String,
    will_at: SystemTime,
}

impl EventSource for V5Loop {
    async fn next(&mut self) -> Result<Ev, String> {
        use rumqttc::v5::Event;
        use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Ok(Ev::ConnAck(self.will_at)),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Ok(Ev::Sent(pkid)),
            Ok(Event::Incoming(Packet::PubAck(a))) => Ok(Ev::Acked {
                pkid: a.pkid,
                refused: match a.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                    other => Some(format!("{other:?}")),
                },
            }),
            Ok(_) => Ok(Ev::Other),
            Err(e) => Err(explain_v5(&e, &self.ca_hint)),
        }
    }

    fn set_will(&mut self, at: SystemTime) {
        self.will_at = at;
        self.eventloop.options.set_last_will(will_v5(&self.site, at));
    }
}

/// Drives an event loop (rumqttc reconnects on the next poll after an error, here after a backoff)
/// and forwards what happens to the publisher, until the publisher is gone.
async fn pump<S: EventSource>(mut source: S, tx: tokio::sync::mpsc::UnboundedSender<Result<Ev, String>>) {
    let mut attempt = 0u32;
    // rumqttc connects on the first poll and reconnects on the poll after an error: each connection
    // gets a will dated when it is made.
    source.set_will(SystemTime::now());
    loop {
        let ev = source.next().await;
        if matches!(ev, Ok(Ev::ConnAck(_))) {
            attempt = 0;
        }
        let failed = ev.is_err();
        if tx.send(ev).is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            source.set_will(SystemTime::now());
        }
    }
}

/// rumqttc's two clients behind one face.
enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    /// Creates the client and spawns its event loop, which reconnects with backoff and sends what
    /// happens, or the explained error, to the returned channel (which `select!` can wait on safely).
    fn spawn(
        o: ClientOptions,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<Result<Ev, String>>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Ev, String>>();
        let ClientOptions { protocol, client_id, conn, keep_alive, site, ca_hint } = o;
        let Connection { broker, tls, credentials } = conn;
        let transport = tls.map(Transport::tls_with_config);
        // The outbox, not the broker session, is what survives: a clean session on every connect, and
        // the message in flight is sent again after a reconnect (same id: receivers drop duplicates).
        match protocol {
            Protocol::V311 => {
                let mut opts = rumqttc::MqttOptions::new(client_id, broker.host, broker.port);
                opts.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
                opts.set_keep_alive(keep_alive).set_clean_session(true);
                if let Some(t) = transport {
                    opts.set_transport(t);
                }
                if let Some((user, password)) = credentials {
                    opts.set_credentials(user, password);
                }
                let (client, eventloop) = rumqttc::AsyncClient::new(opts, 32);
                let task =
                    tokio::spawn(pump(V311Loop { eventloop, ca_hint, site, will_at: SystemTime::UNIX_EPOCH }, tx));
                (Self::V311(client), rx, task)
            }
            Protocol::V5 => {
                let mut opts = rumqttc::v5::MqttOptions::new(client_id, broker.host, broker.port);
                // Outgoing, v5 is bounded by the broker's CONNACK only; this is what it takes in.
                opts.set_max_packet_size(Some(MAX_PACKET_BYTES as u32));
                opts.set_keep_alive(keep_alive).set_clean_start(true);
                if let Some(t) = transport {
                    opts.set_transport(t);
                }
                if let Some((user, password)) = credentials {
                    opts.set_credentials(user, password);
                }
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(opts, 32);
                let task = tokio::spawn(pump(V5Loop { eventloop, ca_hint, site, will_at: SystemTime::UNIX_EPOCH }, tx));
                (Self::V5(client), rx, task)
            }
        }
    }

    /// Queues a QoS 1 publish (JSON payload).
    async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) {
        match self {
            Self::V311(c) => {
                let _ = c.publish(topic, QoS::AtLeastOnce, retain, payload).await;
            }
            Self::V5(c) => {
                let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    payload_format_indicator: Some(1),
                    content_type: Some("application/json".into()),
                    ..Default::default()
                };
                let _ = c
                    .publish_with_properties(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, retain, payload, props)
                    .await;
            }
        }
    }

    async fn disconnect(&self) {
        match self {
            Self::V311(c) => {
                let _ = c.disconnect().await;
            }
            Self::V5(c) => {
                let _ = c.disconnect().await;
            }
        }
    }
}

/// What the publishing loop knows between two happenings: the connection, the row in flight and the
/// pause after a refusal. No I/O and no clock of its own (`now` is passed in), so it is tested without
/// a broker; [`publish_loop`] does the talking and the store's writes.
#[derive(Debug, Default)]
struct LoopState {
    connected: bool,
    /// The row awaiting its PUBACK and, once the client sent it, its packet id.
    inflight: Option<(Outbox, Option<u16>)>,
    /// Publishes in the order they were handed to the client: the row, or `None` for a status message.
    sent: VecDeque<Option<Outbox>>,
    /// When the broker was lost (for the log on reconnection).
    down_since: Option<Instant>,
    /// After the broker refused a message: nothing is offered before this.
    hold_until: Option<Instant>,
    /// Refusals in a row (any message): the pause grows with them.
    refusals: u32,
}

/// A PUBACK for the row in flight.
#[derive(Debug, PartialEq)]
enum Acked {
    Published(Outbox),
    /// Refused by the broker (MQTT 5 reason), to be set aside.
    Refused(Outbox, String),
}

impl LoopState {
    /// A new (clean) session: what was in flight is gone from the client and is offered again from the
    /// outbox; the status message is the first publish. Returns how long the broker was away.
    fn connected(&mut self, now: Instant) -> Option<Duration> {
        self.connected = true;
        self.inflight = None;
        self.sent.clear();
        self.sent.push_back(None);
        self.down_since.take().map(|t| now.saturating_duration_since(t))
    }

    /// The client sent its oldest publish as packet `pkid`.
    fn sent(&mut self, pkid: u16) {
        if let Some(Some(row)) = self.sent.pop_front()
            && let Some((want, slot)) = self.inflight.as_mut()
            && *want == row
        {
            *slot = Some(pkid);
        }
    }

    /// A PUBACK for `pkid`: the row in flight when it is that packet, else nothing (a status message, or
    /// an old session's packet).
    fn acked(&mut self, pkid: u16, refused: Option<String>, now: Instant) -> Option<Acked> {
        match &self.inflight {
            Some((_, Some(p))) if *p == pkid => {}
            _ => return None,
        }
        let (row, _) = self.inflight.take()?;
        Some(match refused {
            Some(reason) => {
                // A pause that grows while every message is refused keeps the broker from being hammered.
                self.hold_until = Some(now + backoff(self.refusals));
                self.refusals = self.refusals.saturating_add(1);
                Acked::Refused(row, reason)
            }
            None => {
                self.refusals = 0;
                Acked::Published(row)
            }
        })
    }

    /// The connection failed; true when this is news (to be logged once per outage).
    fn lost(&mut self, now: Instant) -> bool {
        let news = self.connected || self.down_since.is_none();
        if news {
            self.down_since.get_or_insert(now);
        }
        self.connected = false;
        news
    }

    /// Whether the next row may be offered.
    fn ready(&self, now: Instant) -> bool {
        self.connected && self.inflight.is_none() && self.hold_until.is_none_or(|t| now >= t)
    }

    /// `row` is handed to the client.
    fn offer(&mut self, row: Outbox) {
        self.sent.push_back(Some(row.clone()));
        self.inflight = Some((row, None));
    }
}

async fn publish_loop(
    options: ClientOptions,
    settings: LoopSettings,
    rx: &mpsc::Receiver<Command>,
    metrics: &Metrics,
) -> Result<(), PublishError> {
    let LoopSettings { site, store_path, drain, shown, events } = settings;
    let store = Store::open(&store_path)?;
    let (client, mut ev_rx, event_task) = Client::spawn(options);

    let mut state = LoopState::default();
    let mut draining: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            ev = ev_rx.recv() => match ev {
                None => break,
                Some(Ok(Ev::ConnAck(will_at))) => {
                    metrics.mqtt_connected.set(1);
                    match state.connected(Instant::now()) {
                        Some(after) => tracing::info!(broker = %shown, after_s = after.as_secs(), "mqtt: reconnected"),
                        None => tracing::info!(broker = %shown, "mqtt: connected"),
                    }
                    // Dated as this connection's will, so the will (if it comes) is never older.
                    client.publish(status_topic(&site), true, status_payload(&site, "online", will_at)).await;
                }
                Some(Ok(Ev::Sent(pkid))) => state.sent(pkid),
                Some(Ok(Ev::Acked { pkid, refused })) => {
                    if let Some(acked) = state.acked(pkid, refused, Instant::now()) {
                        match acked {
                            Acked::Published(row) => {
                                store.mark_published(&row, SystemTime::now())?;
                                if let Outbox::Report(..) = row {
                                    metrics.reports_published.inc();
                                }
                            }
                            Acked::Refused(row, reason) => {
                                // Set aside, not dropped: a broker that refuses (quota, ACL) may accept
                                // it later. The rest of the outbox flows past it meanwhile.
                                let times = store.set_aside(&row, SystemTime::now(), aside)?;
                                metrics.mqtt_refused.inc();
                                tracing::error!(broker = %shown, item = ?row, reason, refusals = times, retry_in_s = aside(times).as_secs(), "mqtt: the broker refused a message; set aside for a retry, the rest flows");
                            }
                        }
                        metrics.outbox_pending.set(store.unpublished()? as i64);
                        metrics.outbox_refused.set(store.refused()? as i64);
                    }
                }
                Some(Ok(Ev::Other)) => {}
                Some(Err(e)) => {
                    if state.lost(Instant::now()) {
                        tracing::warn!(broker = %shown, error = %e, pending = store.unpublished().unwrap_or(0), "mqtt: broker unreachable; reports stay in the outbox");
                    }
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
        if state.ready(Instant::now()) {
            match store.next_pending(SystemTime::now(), events)? {
                Some(Pending { row, camera, payload }) => {
                    let topic = match row {
                        Outbox::Report(..) => flow_topic(&site, &camera),
                        Outbox::Detector(_) => detector_topic(&site, &camera),
                        Outbox::Event(_) => events_topic(&site, &camera),
                    };
                    state.offer(row);
                    client.publish(topic, false, payload.into_bytes()).await;
                }
                None if draining.is_some() => break,
                None => {}
            }
        }
        if draining.is_some_and(|t| t.elapsed() > drain) {
            let left = store.unpublished()?;
            tracing::warn!(reports = left, "mqtt: drain timeout; reports stay in the outbox for the next start");
            break;
        }
    }
    if state.connected {
        client.publish(status_topic(&site), true, status_payload(&site, "offline", SystemTime::now())).await;
        // Give the event loop a moment to send it, then disconnect.
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    event_task.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_message_waits_a_minute_doubling_to_an_hour() {
        assert_eq!(aside(1), Duration::from_secs(60));
        assert_eq!(aside(2), Duration::from_secs(120));
        assert_eq!(aside(7), Duration::from_secs(3600));
        assert_eq!(aside(u32::MAX), Duration::from_secs(3600));
    }

    /// The loop's bookkeeping, happening by happening: a row is marked only by the PUBACK of its own
    /// packet, a reconnection offers it again, a refusal pauses the outbox and a success ends the pause.
    #[test]
    fn the_loop_marks_a_row_only_on_its_own_puback() {
        let t0 = Instant::now();
        let mut st = LoopState::default();
        assert!(!st.ready(t0), "not before the broker answered");
        assert!(st.lost(t0), "the first failure is news");
        assert!(!st.lost(t0), "the second is not");
        assert_eq!(st.connected(t0 + Duration::from_secs(5)), Some(Duration::from_secs(5)));
        assert!(st.ready(t0));
        let r = Outbox::Report("r".into(), 1);
        st.offer(r.clone());
        assert!(!st.ready(t0), "one at a time");
        st.sent(1); // the status message ("online") went first
        assert_eq!(st.acked(1, None, t0), None, "the status message's PUBACK is not the report's");
        st.sent(2);
        assert_eq!(st.acked(3, None, t0), None, "another packet");
        assert_eq!(st.acked(2, None, t0), Some(Acked::Published(r.clone())));
        assert!(st.ready(t0));

        // Lost before its PUBACK: the new session offers it again from the outbox.
        st.offer(r.clone());
        st.sent(4);
        assert!(st.lost(t0) && !st.ready(t0));
        assert_eq!(st.connected(t0), Some(Duration::ZERO));
        assert!(st.ready(t0), "offered again");
        assert_eq!(st.acked(4, None, t0), None, "the old session's packet id means nothing now");

        // Refused twice: a pause that grows; a success resets it.
        let e = Outbox::Event(7);
        st.sent(5); // status
        st.offer(e.clone());
        st.sent(6);
        assert_eq!(st.acked(6, Some("quota".into()), t0), Some(Acked::Refused(e.clone(), "quota".into())));
        assert!(!st.ready(t0) && st.ready(t0 + Duration::from_secs(1)), "held for backoff(0) < 1 s");
        st.offer(e.clone());
        st.sent(7);
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(st.acked(7, Some("quota".into()), t1), Some(Acked::Refused(..))));
        assert!(!st.ready(t1 + Duration::from_millis(600)), "backoff(1) is at least 0.75 s");
        let t2 = t1 + Duration::from_secs(2);
        assert!(st.ready(t2));
        st.offer(e.clone());
        st.sent(8);
        assert_eq!(st.acked(8, None, t2), Some(Acked::Published(e)));
        assert_eq!(st.refusals, 0);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(3) > Duration::from_secs(2));
        assert!(backoff(50) <= Duration::from_secs_f64(37.5));
    }
}
