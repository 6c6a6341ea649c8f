//! Load generator for the traffic centre's ingester (`scripts/centre_load.sh` runs it; not a
//! criterion bench, and `cargo bench` alone only prints how to run it).
//!
//! Plays BOXES junction boxes × CAMERAS cameras as real MQTT clients (rumqttc, QoS 1, one client per
//! box with its last will, as `junction run` has), in accelerated time: simulated time runs `--speed`
//! times faster than the wall clock. Each camera sees a busy approach at the peak (`--veh-per-hour`,
//! Poisson arrivals, Da Nang's class mix: mostly motorcycles); each vehicle makes the messages a box
//! with per-vehicle and loop events on publishes (a loop on and off, a stop-line crossing with its
//! speed, a turning movement), built by the box's own code (`store::EventRecord`,
//! `store::DetectorRecord`), and the box's real `Aggregator` closes the 1- and 15-minute FlowReports.
//!
//! Delivery is at least once, like the box's outbox: a message is done when the broker acknowledged
//! it. Boxes drop their connection abruptly at random (`--disconnect-every-s`: the broker publishes
//! their will), reconnect with the same client id and publish again everything not acknowledged
//! (redeliveries); a share of messages is also published twice on purpose (`--duplicate-share`), and
//! a share of reports is revised (revision 2, then a stale revision 1 delivered late).
//!
//! When every box has published and been acknowledged, it waits for the database to stop changing,
//! then counts what landed against what was sent and prints one JSON line.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use junction::aggregate::{Aggregator, FlowReport, percentile};
use junction::analytics::{Direction, EventKind, RuleQuality, Speed, TrafficEvent, Turn, ZoneKind, ZoneNow};
use junction::detect::VehicleClass;
use junction::store::Message;
use junction_schema::wire;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};

#[derive(Debug, Clone, clap::Parser)]
struct Args {
    /// The broker the ingester reads, mqtt://127.0.0.1:PORT.
    #[arg(long)]
    mqtt: Option<String>,
    /// The ingester's database (libpq connection string).
    #[arg(long)]
    postgres: Option<String>,
    #[arg(long, default_value_t = 500)]
    boxes: usize,
    #[arg(long, default_value_t = 4)]
    cameras: usize,
    /// Minutes of wall-clock time to publish for.
    #[arg(long, default_value_t = 5.0)]
    minutes: f64,
    /// Simulated seconds per wall-clock second: 1 is the city's peak as estimated in the README, 2 is
    /// twice that.
    #[arg(long, default_value_t = 2.0)]
    speed: f64,
    /// Vehicles per hour each camera sees at the peak.
    #[arg(long, default_value_t = 2880.0)]
    veh_per_hour: f64,
    /// Mean wall-clock seconds between a box's abrupt disconnects (0: never).
    #[arg(long, default_value_t = 120.0)]
    disconnect_every_s: f64,
    /// Share of messages published twice on purpose.
    #[arg(long, default_value_t = 0.01)]
    duplicate_share: f64,
    /// Share of reports revised (published again at revision 2, then a stale revision 1).
    #[arg(long, default_value_t = 0.02)]
    revise_share: f64,
    /// Seconds to wait for the database to stop changing after the last acknowledgement.
    #[arg(long, default_value_t = 600.0)]
    drain_s: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// SplitMix64: reproducible per box, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential with this mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Report,
    Event,
    Detector,
    Status,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Report => "reports",
            Kind::Event => "events",
            Kind::Detector => "detector_events",
            Kind::Status => "box_status",
        }
    }
}

#[derive(Debug, Clone)]
struct Msg {
    kind: Kind,
    topic: String,
    payload: Arc<Vec<u8>>,
    retain: bool,
    /// Id kept for the lag sample (one message in 20 of each kind).
    sample: Option<String>,
    /// Published before (a redelivery or a deliberate duplicate): not in the lag sample.
    again: bool,
    /// When it was first written to the socket (wall clock).
    first_out: Option<SystemTime>,
}

#[derive(Default)]
struct Stats {
    /// Distinct messages, by kind (a report's revisions are one).
    reports: AtomicU64,
    events: AtomicU64,
    detector: AtomicU64,
    /// Reports whose last revision is 2.
    revised: AtomicU64,
    /// Every PUBLISH written, with redeliveries and duplicates.
    published: AtomicU64,
    acked: AtomicU64,
    redelivered: AtomicU64,
    duplicates: AtomicU64,
    disconnects: AtomicU64,
}

struct Camera {
    site: String,
    id: String,
    agg: Aggregator,
    stop_line: Arc<str>,
    approach: Arc<str>,
    exits: [Arc<str>; 3],
    loops: [Arc<str>; 3],
    /// Simulated seconds at which each lane's loop is free again (a loop is off between vehicles).
    loop_free: [f64; 3],
    /// Simulated seconds since the start: the next vehicle's arrival and the next frame.
    next_arrival: f64,
    next_frame: u64,
    track: u64,
}

/// Da Nang's mix (mostly motorcycles) and free speeds at a stop line, km/h.
fn draw_class(r: &mut Rng) -> (VehicleClass, f64) {
    let u = r.unit();
    if u < 0.82 {
        (VehicleClass::Motorcycle, 28.0)
    } else if u < 0.94 {
        (VehicleClass::Car, 32.0)
    } else if u < 0.96 {
        (VehicleClass::Bicycle, 14.0)
    } else if u < 0.97 {
        (VehicleClass::Bus, 25.0)
    } else {
        (VehicleClass::Truck, 27.0)
    }
}

impl Camera {
    fn new(site: &str, n: usize, r: &mut Rng, mean_gap_s: f64) -> Self {
        let id = format!("cam{n}");
        let approach: Arc<str> = format!("approach-{n}").into();
        let exits = [1, 2, 3].map(|k| Arc::from(format!("exit-{}", (n + k) % 4).as_str()));
        let loops = [1, 2, 3].map(|l| Arc::from(format!("loop-{n}-{l}").as_str()));
        let stop_line: Arc<str> = format!("stop-{n}").into();
        let agg = Aggregator::new(
            site,
            &id,
            vec![stop_line.clone()],
            vec![(format!("queue-{n}").into(), ZoneKind::Queue)],
            &[Duration::from_secs(60), Duration::from_secs(900)],
        );
        Self {
            site: site.to_owned(),
            id,
            agg,
            stop_line,
            approach,
            exits,
            loops,
            loop_free: [0.0; 3],
            next_arrival: r.exp(mean_gap_s),
            next_frame: 0,
            track: 0,
        }
    }

    /// Advances to `until` (simulated seconds since `t0`): a frame each simulated second, the
    /// vehicles arriving in it, and the reports of the bins it closes.
    fn advance(&mut self, t0: SystemTime, until: f64, mean_gap_s: f64, r: &mut Rng, out: &mut Vec<Msg>) {
        let mut reports = Vec::new();
        while (self.next_frame as f64) <= until {
            let s = self.next_frame;
            let queued = (r.unit() * 6.0) as u32;
            let zone = ZoneNow { vehicles: queued + 1, queued, queue_m: Some(queued as f32 * 2.5) };
            self.agg.frame(t0 + Duration::from_secs(s), 0, &[zone], RuleQuality::default(), &mut reports);
            while self.next_arrival < (s + 1) as f64 {
                let at = self.next_arrival;
                self.next_arrival += r.exp(mean_gap_s);
                self.track += 1;
                self.vehicle(t0, at, r, out);
            }
            self.next_frame += 1;
        }
        for rep in reports {
            out.push(self.report_msg(&rep));
        }
    }

    fn vehicle(&mut self, t0: SystemTime, at: f64, r: &mut Rng, out: &mut Vec<Msg>) {
        let (class, free_kmh) = draw_class(r);
        // A lane whose loop is off (0.1 s after its last vehicle); none: the vehicle passes between
        // the loops (no loop events).
        let first = (r.next() % 3) as usize;
        let lane = (0..3).map(|k| (first + k) % 3).find(|&l| self.loop_free[l] + 0.1 <= at);
        let exit = (r.next() % 3) as usize;
        let turn = [Turn::Left, Turn::Through, Turn::Right][exit];
        let occupancy = 0.25 + r.unit() * 0.4;
        let kmh = (free_kmh * (0.7 + r.unit() * 0.6)) as f32;
        let ev = |rule: &Arc<str>, kind: EventKind, dt: f64, speed: Option<Speed>| TrafficEvent {
            rule: rule.clone(),
            kind,
            track: self.track,
            class,
            class_share: 1.0,
            pts: Duration::from_secs_f64(at + dt),
            wall: t0 + Duration::from_secs_f64(at + dt),
            speed,
        };
        let mut events = vec![
            ev(
                &self.stop_line,
                EventKind::Crossing { direction: Direction::In },
                0.1,
                Some(Speed { kmh, plausible: true }),
            ),
            ev(&self.approach, EventKind::Movement { to: self.exits[exit].clone(), turn }, 1.5, None),
        ];
        if let Some(lane) = lane {
            let channel = (lane + 1) as u16;
            events.push(ev(&self.loops[lane], EventKind::LoopOn { channel }, 0.0, None));
            events.push(ev(&self.loops[lane], EventKind::LoopOff { channel }, occupancy, None));
            self.loop_free[lane] = at + occupancy;
        }
        for e in &events {
            self.agg.event(e);
            let Some(m) = Message::of(&self.site, &self.id, e) else { continue };
            let (kind, topic) = match &m {
                Message::Detector(_) => (Kind::Detector, wire::detector_topic(&self.site, &self.id)),
                Message::Event(_) => (Kind::Event, wire::events_topic(&self.site, &self.id)),
            };
            let payload = serde_json::to_value(&m).unwrap_or_default();
            out.push(msg(kind, topic, &payload));
        }
    }

    fn report_msg(&self, rep: &FlowReport) -> Msg {
        let v = serde_json::to_value(rep).unwrap_or_default();
        msg(Kind::Report, wire::flow_topic(&self.site, &self.id), &v)
    }
}

fn msg(kind: Kind, topic: String, v: &serde_json::Value) -> Msg {
    let id = v["id"].as_str().map(str::to_owned);
    Msg {
        kind,
        topic,
        payload: Arc::new(v.to_string().into_bytes()),
        retain: false,
        sample: id,
        again: false,
        first_out: None,
    }
}

fn status(site: &str, state: &str) -> Vec<u8> {
    serde_json::json!({
        "schema": "junction.status.v1", "site": site, "state": state, "version": "load",
        "at": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
    })
    .to_string()
    .into_bytes()
}

struct Shared {
    args: Args,
    host: String,
    port: u16,
    t0: SystemTime,
    start: Instant,
    stats: Stats,
    /// (table, id, first written) of sampled messages acknowledged once.
    samples: Mutex<Vec<(Kind, String, SystemTime)>>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// One box: its cameras, its outbox, its connection.
async fn run_box(b: usize, sh: Arc<Shared>) {
    let a = &sh.args;
    let site = format!("load-{b:04}");
    let mut rng = Rng(a.seed.wrapping_mul(1_000_003).wrapping_add(b as u64));
    let mean_gap_s = 3600.0 / a.veh_per_hour;
    let mut cams: Vec<Camera> = (0..a.cameras).map(|n| Camera::new(&site, n, &mut rng, mean_gap_s)).collect();
    let sim_end = a.minutes * 60.0 * a.speed;
    let mut outbox: VecDeque<Msg> = VecDeque::new();
    let mut revisions: Vec<(Instant, Msg)> = Vec::new();
    let mut generated = Vec::new();
    let window = 64usize;
    let mut finished = false;
    loop {
        let mut opts = MqttOptions::new(format!("junction-{site}"), &sh.host, sh.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(false);
        opts.set_last_will(LastWill::new(
            format!("junction/v1/{site}/status"),
            status(&site, "offline"),
            QoS::AtLeastOnce,
            true,
        ));
        opts.set_inflight(window as u16);
        let (client, mut el) = AsyncClient::new(opts, window * 2);
        // The event loop in its own task: `poll` is not cancelled half-way by the select below (a
        // cancelled poll can lose a PUBACK). Aborting the task drops the socket without DISCONNECT.
        let (etx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                let ev = el.poll().await;
                let end = ev.is_err();
                if etx.send(ev).is_err() || end {
                    break;
                }
            }
        });
        let online = Msg {
            kind: Kind::Status,
            topic: format!("junction/v1/{site}/status"),
            payload: Arc::new(status(&site, "online")),
            retain: true,
            sample: None,
            again: false,
            first_out: None,
        };
        outbox.push_front(online);
        let mut handed: VecDeque<Msg> = VecDeque::new();
        let mut inflight: HashMap<u16, Msg> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let drop_at = (a.disconnect_every_s > 0.0)
            .then(|| Instant::now() + Duration::from_secs_f64(rng.exp(a.disconnect_every_s)));
        let clean = 'conn: loop {
            tokio::select! {
                Some(ev) = events.recv() => match ev {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(mut m) = handed.pop_front() {
                            m.first_out.get_or_insert_with(SystemTime::now);
                            sh.stats.published.fetch_add(1, Ordering::Relaxed);
                            inflight.insert(pkid, m);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(m) = inflight.remove(&ack.pkid) {
                            sh.stats.acked.fetch_add(1, Ordering::Relaxed);
                            if let (Some(id), false, Some(t)) = (m.sample, m.again, m.first_out)
                                && let Ok(mut s) = sh.samples.lock()
                            {
                                s.push((m.kind, id, t));
                            }
                        }
                        hand(&client, &mut outbox, &mut handed, inflight.len(), window);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{site}: connection error: {e}");
                        break 'conn false;
                    }
                },
                _ = tick.tick() => {
                    let sim_now = (sh.start.elapsed().as_secs_f64() * a.speed).min(sim_end);
                    if !finished {
                        for c in &mut cams {
                            c.advance(sh.t0, sim_now - 1.0, mean_gap_s, &mut rng, &mut generated);
                        }
                        for mut m in generated.drain(..) {
                            if rng.unit() >= 0.05 {
                                m.sample = None;
                            }
                            match m.kind {
                                Kind::Report => {
                                    sh.stats.reports.fetch_add(1, Ordering::Relaxed);
                                    if rng.unit() < a.revise_share {
                                        // Revised a few seconds later (a restarted box continuing
                                        // the bin), then the old revision delivered late.
                                        m.sample = None;
                                        if let Some(rev2) = revise(&m) {
                                            let late = Instant::now() + Duration::from_secs(2);
                                            revisions.push((late, rev2));
                                            let mut stale = m.clone();
                                            stale.again = true;
                                            revisions.push((late + Duration::from_secs(2), stale));
                                            sh.stats.revised.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                }
                                Kind::Event => { sh.stats.events.fetch_add(1, Ordering::Relaxed); }
                                Kind::Detector => { sh.stats.detector.fetch_add(1, Ordering::Relaxed); }
                                Kind::Status => {}
                            }
                            if rng.unit() < a.duplicate_share {
                                let mut d = m.clone();
                                d.again = true;
                                sh.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                                outbox.push_back(m);
                                outbox.push_back(d);
                            } else {
                                outbox.push_back(m);
                            }
                        }
                        finished = sim_now >= sim_end;
                    }
                    let now = Instant::now();
                    let (due, later): (Vec<_>, Vec<_>) = revisions.drain(..).partition(|(t, _)| *t <= now || finished);
                    revisions = later;
                    outbox.extend(due.into_iter().map(|(_, m)| m));
                    hand(&client, &mut outbox, &mut handed, inflight.len(), window);
                    if finished && outbox.is_empty() && handed.is_empty() && inflight.is_empty() && revisions.is_empty() {
                        break 'conn true;
                    }
                    if !finished && drop_at.is_some_and(|t| now >= t) {
                        break 'conn false;
                    }
                }
            }
        };
        if clean {
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(ev) = events.recv().await {
                    if matches!(ev, Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {
                        break;
                    }
                }
            })
            .await;
            poller.abort();
            return;
        }
        // Dropped without a DISCONNECT (the broker publishes the will). What was not acknowledged
        // goes out again, in its order, ahead of the rest.
        sh.stats.disconnects.fetch_add(1, Ordering::Relaxed);
        poller.abort();
        let _ = poller.await;
        drop(client);
        let mut again: Vec<(u16, Msg)> = inflight.into_iter().collect();
        again.sort_by_key(|(_, m)| m.first_out);
        let resend: Vec<Msg> =
            again.into_iter().map(|(_, m)| m).chain(handed).filter(|m| m.kind != Kind::Status).collect();
        sh.stats.redelivered.fetch_add(resend.len() as u64, Ordering::Relaxed);
        for mut m in resend.into_iter().rev() {
            m.again = true;
            outbox.push_front(m);
        }
        tokio::time::sleep(Duration::from_secs_f64(0.5 + rng.unit() * 1.5)).await;
    }
}

/// The same report at revision 2 (one more frame analysed, so the payload differs).
fn revise(m: &Msg) -> Option<Msg> {
    let mut v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
    v["revision"] = 2.into();
    v["frames_analysed"] = (v["frames_analysed"].as_u64()? + 1).into();
    Some(Msg { payload: Arc::new(v.to_string().into_bytes()), sample: None, ..m.clone() })
}

/// Hands messages to the client up to `window` unacknowledged.
fn hand(client: &AsyncClient, outbox: &mut VecDeque<Msg>, handed: &mut VecDeque<Msg>, inflight: usize, window: usize) {
    while handed.len() + inflight < window {
        let Some(m) = outbox.front() else { break };
        if client.try_publish(m.topic.clone(), QoS::AtLeastOnce, m.retain, m.payload.to_vec()).is_err() {
            break;
        }
        if let Some(m) = outbox.pop_front() {
            handed.push_back(m);
        }
    }
}

/// CPU seconds (user + system) this process used, from /proc (clock ticks of 1/100 s on Linux).
fn self_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    match db.query_one(sql, &[]).await {
        Ok(r) => r.get::<_, i64>(0),
        Err(e) => {
            eprintln!("{sql}: {e}");
            -1
        }
    }
}

fn main() {
    let args = Args::parse();
    let (Some(mqtt), Some(postgres)) = (args.mqtt.clone(), args.postgres.clone()) else {
        eprintln!(
            "centre_load: run scripts/centre_load.sh BOXES CAMERAS MINUTES (it starts a broker, a database and the ingester)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(run(args, mqtt, postgres));
}

async fn run(args: Args, mqtt: String, postgres: String) {
    let broker = junction::publish::parse_broker_url(&mqtt).expect("--mqtt mqtt://host:port");
    let (db, conn) = tokio_postgres::connect(&postgres, tokio_postgres::NoTls).await.expect("--postgres");
    tokio::spawn(conn);
    // Simulated time starts at the last whole hour (bins align to it).
    let now = SystemTime::now();
    let t0 = UNIX_EPOCH + Duration::from_secs(ms(now) / 1000 / 3600 * 3600);
    let sh = Arc::new(Shared {
        args: args.clone(),
        host: broker.host.clone(),
        port: broker.port,
        t0,
        start: Instant::now(),
        stats: Stats::default(),
        samples: Mutex::new(Vec::new()),
    });
    let mut boxes = Vec::new();
    for b in 0..args.boxes {
        boxes.push(tokio::spawn(run_box(b, sh.clone())));
        // Boxes come up over the first seconds, not all in one instant.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut progress = tokio::time::interval(Duration::from_secs(30));
    progress.tick().await;
    let all = futures_util::future::join_all(boxes);
    tokio::pin!(all);
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = progress.tick() => {
                let s = &sh.stats;
                let landed = count(&db, "SELECT (SELECT count(*) FROM reports) + (SELECT count(*) FROM events) + (SELECT count(*) FROM detector_events)").await;
                eprintln!(
                    "{:>5.0} s: published {} acked {} landed {} disconnects {}",
                    sh.start.elapsed().as_secs_f64(),
                    s.published.load(Ordering::Relaxed),
                    s.acked.load(Ordering::Relaxed),
                    landed,
                    s.disconnects.load(Ordering::Relaxed)
                );
            }
        }
    }
    let publishing_s = sh.start.elapsed().as_secs_f64();
    let s = &sh.stats;
    let sent =
        s.reports.load(Ordering::Relaxed) + s.events.load(Ordering::Relaxed) + s.detector.load(Ordering::Relaxed);
    // Drain: until the counts reach what was sent, or stop changing for 30 s.
    let total_sql = "SELECT (SELECT count(*) FROM reports WHERE site LIKE 'load-%') + (SELECT count(*) FROM events WHERE site LIKE 'load-%') \
                     + (SELECT count(*) FROM detector_events WHERE site LIKE 'load-%')";
    let (mut last, mut since) = (-1i64, Instant::now());
    let drained = Instant::now();
    loop {
        let n = count(&db, total_sql).await;
        if n != last {
            (last, since) = (n, Instant::now());
        }
        if n >= sent as i64
            || since.elapsed() > Duration::from_secs(30)
            || drained.elapsed().as_secs_f64() > args.drain_s
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few seconds more: redeliveries of what already landed must not add rows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lost = 0i64;
    let mut duplicated = 0i64;
    let mut stored = 0i64;
    let mut per = serde_json::Map::new();
    for (kind, want) in [
        (Kind::Report, s.reports.load(Ordering::Relaxed)),
        (Kind::Event, s.events.load(Ordering::Relaxed)),
        (Kind::Detector, s.detector.load(Ordering::Relaxed)),
    ] {
        let t = kind.table();
        let rows = count(&db, &format!("SELECT count(*) FROM {t} WHERE site LIKE 'load-%'")).await;
        let distinct = count(&db, &format!("SELECT count(DISTINCT id) FROM {t} WHERE site LIKE 'load-%'")).await;
        lost += (want as i64 - distinct).max(0);
        duplicated += (rows - distinct) + (distinct - want as i64).max(0);
        stored += rows;
        per.insert(t.into(), serde_json::json!({"sent": want, "stored": rows, "distinct": distinct}));
    }
    let revised = s.revised.load(Ordering::Relaxed) as i64;
    let at_rev2 = count(&db, "SELECT count(*) FROM reports WHERE site LIKE 'load-%' AND revision = 2").await;
    let dead = count(&db, "SELECT count(*) FROM dead_letters").await;
    let boxes_seen = count(&db, "SELECT count(*) FROM box_status WHERE site LIKE 'load-%'").await;
    // Sustained rate: rows landed over the time they took to land.
    let span = db
        .query_one(
            "SELECT extract(epoch FROM max(t) - min(t))::float8 FROM (
                 SELECT received_at t FROM reports UNION ALL SELECT received_at FROM events
                 UNION ALL SELECT received_at FROM detector_events) x",
            &[],
        )
        .await
        .ok()
        .and_then(|r| r.get::<_, Option<f64>>(0))
        .unwrap_or(f64::NAN);
    // Lag: received_at (the row written) minus the moment the box first wrote the message to its
    // socket, for one message in 20 (of those published once).
    let samples = std::mem::take(&mut *sh.samples.lock().expect("samples"));
    let mut lags = Vec::new();
    for kind in [Kind::Report, Kind::Event, Kind::Detector] {
        let mine: HashMap<&str, SystemTime> =
            samples.iter().filter(|(k, _, _)| *k == kind).map(|(_, id, t)| (id.as_str(), *t)).collect();
        let ids: Vec<&str> = mine.keys().copied().collect();
        let rows = db
            .query(
                &format!("SELECT id, extract(epoch FROM received_at)::float8 FROM {} WHERE id = ANY($1)", kind.table()),
                &[&ids],
            )
            .await
            .unwrap_or_default();
        for r in rows {
            let (id, at): (String, f64) = (r.get(0), r.get(1));
            if let Some(t) = mine.get(id.as_str()) {
                lags.push(at - t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
            }
        }
    }
    let published = s.published.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "boxes": args.boxes,
        "cameras": args.cameras,
        "minutes": args.minutes,
        "speed": args.speed,
        "veh_per_hour_per_camera": args.veh_per_hour,
        "sent": sent,
        "published": published,
        "stored": stored,
        "lost": lost,
        "duplicated": duplicated,
        "revised_reports": revised,
        "stored_at_revision_2": at_rev2,
        // Every revised report stored at its revision 2, none held back by the stale revision 1.
        "revisions_ok": at_rev2 == revised,
        "dead_letters": dead,
        "boxes_with_status": boxes_seen,
        "disconnects": s.disconnects.load(Ordering::Relaxed),
        "redelivered": s.redelivered.load(Ordering::Relaxed),
        "duplicates_published": s.duplicates.load(Ordering::Relaxed),
        "offered_msgs_per_s": published as f64 / publishing_s,
        "msgs_per_s": published as f64 / span,
        "rows_per_s": stored as f64 / span,
        "landing_span_s": span,
        "publishing_s": publishing_s,
        "lag_samples": lags.len(),
        "lag_p50_s": percentile(&lags, 0.50),
        "lag_p99_s": percentile(&lags, 0.99),
        "lag_max_s": percentile(&lags, 1.0),
        "tables": per,
        "generator_cpu_s": self_cpu_s(),
    });
    println!("{out}");
}
