//! Publishing to a real Mosquitto started by the test on 127.0.0.1, read by a real subscriber
//! (mosquitto_sub).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{assert_schema, clip, free_port, junction, repo, signal, spawn, try_signal, wait_at_most};

fn mosquitto_bin() -> PathBuf {
    // Debian installs it in /usr/sbin, which may not be on PATH.
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("mosquitto is not installed: run scripts/setup.sh")
}

/// A Mosquitto on 127.0.0.1:`port`, stopped (by its PID) when dropped.
pub struct Broker {
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// With more configuration lines (`max_inflight_messages 1000\n`).
    pub fn start_with(dir: &Path, more: &str) -> Self {
        // Persistence, as a traffic centre's broker has: the subscriber's session (and the messages
        // queued for it) survives the outage test's broker restart, so what junction publishes before
        // the subscriber has reconnected is still delivered.
        let persist = format!("allow_anonymous true\npersistence true\npersistence_location {}/\n", dir.display());
        Self::configured(dir, &(persist + more))
    }

    /// On a free port of 127.0.0.1 with these configuration lines, written to `dir`/mosquitto.conf.
    fn configured(dir: &Path, lines: &str) -> Self {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        // `user root`: a broker started as root would otherwise drop to the mosquitto user, who cannot
        // write the test's folder or read its key files (ignored when not root).
        std::fs::write(&conf, format!("user root\nlistener {port} 127.0.0.1\n{lines}")).unwrap();
        let mut b = Self { port, conf, child: None };
        b.up();
        b
    }

    pub fn up(&mut self) {
        // Files named in the configuration are relative to its folder.
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .current_dir(self.conf.parent().unwrap_or(Path::new(".")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker as an operator would (SIGTERM to our own child, by its PID), so it saves its
    /// sessions; SIGKILL only if it has not gone within 10 s.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            try_signal(&c, "TERM");
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

/// mosquitto_sub on every junction topic, collecting "topic payload" lines. Reconnects by itself.
pub struct Subscriber {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Subscriber {
    pub fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// `tls`: extra arguments for both mosquitto_sub and the probe's mosquitto_pub (`--cafile …`).
    pub fn start_with(port: u16, tls: &[&str]) -> Self {
        let port_arg = port.to_string();
        let conn = [&["-h", "127.0.0.1", "-p", port_arg.as_str()][..], tls].concat();
        // stdbuf: line-buffered stdout, or the lines sit in mosquitto_sub's pipe buffer.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(&conn)
            .args(["-t", "junction/#", "-q", "1", "-v", "-c", "-i", &format!("test-subscriber-{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (scripts/setup.sh installs mosquitto-clients)");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        // Subscribed once a probe published after the start comes back (a fixed pause raced on a
        // loaded CI box). The probe's topic matches none of the suffixes the tests read.
        let t = Instant::now();
        while !lines.lock().unwrap().iter().any(|l| l.starts_with("junction/probe ")) {
            assert!(t.elapsed() < Duration::from_secs(20), "mosquitto_sub did not subscribe on {port}");
            let _ = Command::new("mosquitto_pub")
                .args(&conn)
                .args(["-t", "junction/probe", "-m", "{}"])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, lines }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) our own mosquitto_sub, by its PID (stdbuf execs it): a
    /// consumer at the centre that is slower to come back than junction.
    fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// Flow report ids received so far, in order.
    fn report_ids(&self) -> Vec<String> {
        self.messages("/flow").iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
    }

    /// Every "topic payload" line received so far, as mosquitto_sub printed it (payload bytes as sent).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn messages(&self, topic_suffix: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split_once(' '))
            .filter(|(t, _)| t.ends_with(topic_suffix))
            .map(|(_, p)| serde_json::from_str(p).unwrap())
            .collect()
    }

    /// Waits until `want` ids have arrived (or 20 s).
    fn wait_for(&self, want: usize) -> Vec<String> {
        let t = Instant::now();
        loop {
            let ids = self.report_ids();
            let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
            if distinct.len() >= want || t.elapsed() > Duration::from_secs(20) {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stored_ids(db: &Path) -> Vec<(String, bool)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn.prepare("SELECT id, published_at IS NOT NULL FROM reports ORDER BY rowid").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn run_args<'a>(db: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--line",
        "320,60,320,220",
        "--bins",
        "10s",
        "--start",
        "2026-11-26T08:00:00Z",
        "--store",
        db,
        "--mqtt",
        url,
        "--format",
        "json",
    ]
}

/// Distinct ids in order of first arrival; every repeat must be a repeat of an earlier id.
fn distinct_in_order(ids: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for id in ids {
        if !seen.contains(id) {
            seen.push(id.clone());
        }
    }
    seen
}

/// The happy path, over MQTT 5 with the per-vehicle events topic on (the other tests use 3.1.1).
#[test]
fn every_report_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mosquitto.log");
    let broker = broker_with(dir.path(), &format!("allow_anonymous true\nlog_dest file {}\n", log.display()));
    let sub = Subscriber::start(broker.port);
    let db = dir.path().join("j.db");
    let url = broker.url();
    let clip = clip();
    let mut args = run_args(db.to_str().unwrap(), &url);
    args.insert(1, clip.to_str().unwrap());
    args.extend(["--mqtt-protocol", "5", "--mqtt-events"]);
    let out = junction(&args, Duration::from_secs(300));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let stored = stored_ids(&db);
    assert_eq!(stored.len(), 8, "75 s of clip in 10 s bins");
    assert!(stored.iter().all(|(_, published)| *published), "all acknowledged: {stored:?}");
    let got = sub.wait_for(stored.len());
    let want: Vec<String> = stored.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, want, "in order, each once");
    for r in sub.messages("/flow") {
        assert_schema("flow.v1.json", &r);
        assert_eq!(r["site"], "adhoc");
        assert!(r["frames_analysed"].as_u64().unwrap() > 0);
    }
    for s in sub.messages("/status") {
        assert_schema("status.v1.json", &s);
    }
    let status: Vec<String> = sub.messages("/status").iter().map(|s| s["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(status.first().map(String::as_str), Some("online"));
    assert_eq!(status.last().map(String::as_str), Some("offline"));

    // Every stored event arrived once, in order, valid; the crossings are the run's count.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (stored_events, unpublished): (i64, i64) = conn
        .query_row("SELECT COUNT(*), COUNT(*) - COUNT(published_at) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(unpublished, 0, "every event acknowledged");
    let events = sub.messages("/events");
    assert_eq!(events.len() as i64, stored_events, "{events:?}");
    for e in &events {
        assert_schema("event.v1.json", e);
    }
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "ids are distinct");
    let times: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.is_sorted(), "in the order they happened: {times:?}");
    let crossings = events.iter().filter(|e| e["kind"] == "crossing").count();
    let counted = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event" && v["kind"] == "crossing")
        .count();
    assert_eq!(crossings, counted);
    assert!(crossings >= 6, "the clip's vehicles: {crossings}");

    // The broker saw an MQTT 5 client ("p5" in Mosquitto's connection log line).
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.lines().any(|l| l.contains("as junction-adhoc (p5")), "{log}");
}

/// The broker goes down after the second bin and comes back two bins later: nothing is lost. The
/// subscriber stays away until the run has ended, as a slow consumer might.
#[test]
fn broker_outage_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let sub = Subscriber::start(broker.port);
    let db = dir.path().join("j.db");
    let url = broker.url();
    let mut args = run_args(db.to_str().unwrap(), &url);
    let clip = clip();
    args.insert(1, clip.to_str().unwrap());
    let mut child = spawn(&args, "warn");
    let started = Instant::now();
    let mut reports = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "report" {
            reports += 1;
            if reports == 2 {
                sub.signal("STOP");
                broker.down();
            }
            if reports == 4 {
                broker.up();
            }
        }
    }
    let status = wait_at_most(&mut child, started, Duration::from_secs(300));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "stderr:\n{stderr}");
    assert!(reports >= 4, "the run ended before the outage was over");
    // The subscriber reconnects only now, after junction has drained its backlog: the broker kept
    // its session, so every acknowledged report still reaches it.
    sub.signal("CONT");
    let stored: Vec<String> = stored_ids(&db).into_iter().map(|(id, _)| id).collect();
    let got = sub.wait_for(stored.len());
    assert_eq!(distinct_in_order(&got), stored, "every report, in order (repeats only of the same id)");
}

/// junction is SIGKILLed while the broker is down; restarted once the broker is back, it publishes
/// every report closed before the kill.
#[test]
fn crash_while_broker_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let db = dir.path().join("j.db");
    let url = broker.url();
    broker.down();
    let clip = clip();
    let mut args = run_args(db.to_str().unwrap(), &url);
    args.insert(1, clip.to_str().unwrap());
    let mut child = spawn(&args, "warn");
    let mut closed = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "report" {
            closed.push(v["id"].as_str().unwrap().to_owned());
            if closed.len() == 3 {
                // Our own child, by its PID.
                signal(&child, "KILL");
                break;
            }
        }
    }
    let _ = wait_at_most(&mut child, Instant::now(), Duration::from_secs(30));
    assert!(stored_ids(&db).iter().filter(|(_, p)| !p).count() >= 3, "the closed bins wait in the outbox");

    broker.up();
    let sub = Subscriber::start(broker.port);
    // The restart counts the clip an hour later (other ids: were they the same, the restart would
    // make the lost reports again) and first drains what the killed run left.
    let args: Vec<&str> =
        args.iter().map(|a| if *a == "2026-11-26T08:00:00Z" { "2026-11-26T09:00:00Z" } else { a }).collect();
    let out = junction(&args, Duration::from_secs(300));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let got = distinct_in_order(&sub.wait_for(3 + 8));
    assert_eq!(&got[..3], &closed[..], "the reports closed before the kill arrive first, in order");
    assert!(got[3..].iter().all(|id| id.contains("T09:")), "then the second run's: {got:?}");
    assert!(stored_ids(&db).iter().all(|(_, p)| *p));
}

/// The schema check itself must be able to fail: a payload that drifted from the schema is refused.
#[test]
fn flow_schema_refuses_a_drifted_payload() {
    let bad = serde_json::json!({"schema": "junction.flow.v1", "id": "s/c/2026-11-26T08:00:00Z/60", "extra": 1});
    assert!(std::panic::catch_unwind(|| assert_schema("flow.v1.json", &bad)).is_err());
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl").args(args).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(ok.expect("openssl").success(), "openssl {args:?}");
}

/// A CA named `name` (name.pem, name.key) in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let subj = format!("/CN=junction test {name}");
    openssl(
        dir,
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj],
    );
}

/// server.pem / server.key for 127.0.0.1, signed by `ca`.
pub fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    );
}

/// A broker with the given extra configuration lines (TLS, passwords), on a free port.
pub fn broker_with(dir: &Path, extra: &str) -> Broker {
    Broker::configured(dir, &format!("persistence false\n{extra}"))
}

/// A site file publishing to `url` with the given extra [mqtt] lines.
fn mqtt_site(dir: &Path, url: &str, mqtt_extra: &str) -> PathBuf {
    let model = repo().join("models/yolox_nano.toml");
    let path = dir.join("site.toml");
    std::fs::write(
        &path,
        format!(
            "site = \"tls-test\"\n[detector]\nmodel = {model:?}\n\n[[camera]]\nid = \"street\"\nuri = {:?}\n\n\
             [aggregate]\nbins = [\"10s\"]\n\n[store]\npath = \"j.db\"\nretention_days = 1\n\n\
             [mqtt]\nurl = \"{url}\"\ndrain_timeout_s = 3\n{mqtt_extra}\n",
            clip().to_str().unwrap()
        ),
    )
    .unwrap();
    path
}

#[test]
fn tls_publishes_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    make_server_cert(d, "ca");
    let broker = broker_with(d, "cafile ca.pem\ncertfile server.pem\nkeyfile server.key\nallow_anonymous true\n");
    let url = format!("mqtts://127.0.0.1:{}", broker.port);

    // The right CA: every report arrives over TLS.
    let good = d.join("good");
    std::fs::create_dir(&good).unwrap();
    let site = mqtt_site(&good, &url, &format!("ca_file = {:?}", d.join("ca.pem").to_str().unwrap()));
    let ca = d.join("ca.pem");
    let sub = Subscriber::start_with(broker.port, &["--cafile", ca.to_str().unwrap()]);
    let out = junction(
        &["run", "--config", site.to_str().unwrap(), "--start", "2026-11-26T08:00:00Z"],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let stored = stored_ids(&good.join("j.db"));
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().all(|(_, p)| *p), "all acknowledged over TLS: {stored:?}");
    let want: Vec<String> = stored.into_iter().map(|(id, _)| id).collect();
    assert_eq!(sub.wait_for(want.len()), want, "a TLS subscriber received every report, in order");
    drop(sub);

    // Another CA: refused with an error naming the setting; nothing lost, the reports wait.
    let bad = d.join("bad");
    std::fs::create_dir(&bad).unwrap();
    let site = mqtt_site(&bad, &url, &format!("ca_file = {:?}", d.join("other-ca.pem").to_str().unwrap()));
    let out = junction(
        &["run", "--config", site.to_str().unwrap(), "--start", "2026-11-26T08:00:00Z"],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("TLS handshake failed (mqtt.ca_file"), "stderr:\n{}", out.stderr);
    let stored = stored_ids(&bad.join("j.db"));
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().all(|(_, p)| !*p), "kept in the outbox: {stored:?}");
}

#[test]
fn rejected_credentials_are_named_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c", "pw.txt", "junction", "right-secret"])
        .current_dir(d)
        .status();
    assert!(made.expect("mosquitto_passwd").success());
    let broker = broker_with(d, "allow_anonymous false\npassword_file pw.txt\n");
    std::fs::write(d.join("secret"), "hunter2-wrong\n").unwrap();
    let site = mqtt_site(d, &broker.url(), "username = \"junction\"\npassword_file = \"secret\"");
    let out = junction(
        &["run", "--config", site.to_str().unwrap(), "--start", "2026-11-26T08:00:00Z"],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("refused the credentials (mqtt.username"), "stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "the password leaked into the log");
    let stored = stored_ids(&d.join("j.db"));
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().all(|(_, p)| !*p), "kept in the outbox: {stored:?}");

    // The right password from the environment: the backlog goes out. The second run is an hour later
    // (other ids), so the first run's reports reach the broker only if the outbox kept them.
    let sub = Subscriber::start_with(broker.port, &["-u", "junction", "-P", "right-secret"]);
    let site = mqtt_site(d, &broker.url(), "username = \"junction\"\npassword_env = \"JUNCTION_TEST_MQTT_PASSWORD\"");
    let out = crate::common::junction_env(
        &["run", "--config", site.to_str().unwrap(), "--start", "2026-11-26T09:00:00Z"],
        &[("JUNCTION_TEST_MQTT_PASSWORD", "right-secret")],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let all = stored_ids(&d.join("j.db"));
    assert_eq!(all.len(), 16);
    assert!(all.iter().all(|(_, p)| *p), "published once the credentials are right");
    let got = distinct_in_order(&sub.wait_for(16));
    let first: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(&got[..8], &first[..], "the first run's reports, from the outbox, first");
}

/// The last will is made at each connect: a box that reconnected (the broker restarted) and then died
/// is reported offline. The centre keeps only a newer status, so a will dated when the publisher first
/// started (before the "online" of the reconnection) left a dead box online for ever.
#[test]
fn the_last_will_is_fresh_at_each_connect() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let sub = Subscriber::start(broker.port);
    let model = repo().join("models/yolox_nano.toml");
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "site = \"will-test\"\n[detector]\nmodel = {model:?}\n\n[[camera]]\nid = \"live\"\nuri = \"test://ball?fps=10\"\n\n\
             [store]\npath = \"j.db\"\n\n[mqtt]\nurl = \"{}\"\n",
            broker.url()
        ),
    )
    .unwrap();
    let mut child = crate::common::Running(spawn(&["run", "--config", site.to_str().unwrap()], "warn"));
    let at = |m: &Value| humantime::parse_rfc3339_weak(m["at"].as_str().unwrap().trim_end_matches('Z')).unwrap();
    let onlines =
        || -> Vec<Value> { sub.messages("/will-test/status").into_iter().filter(|m| m["state"] == "online").collect() };
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !cond() {
            assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the box online", &|| !onlines().is_empty());
    let first = at(&onlines()[0]);
    // The broker restarts; the box reconnects (the status is retained: the subscriber gets it again).
    broker.down();
    std::thread::sleep(Duration::from_secs(2));
    broker.up();
    wait("the box online again, after its first connection", &|| onlines().iter().any(|m| at(m) > first));
    let last_online = onlines().iter().map(at).max().unwrap();
    // The box dies: the broker publishes its will as the socket closes.
    signal(&child.0, "KILL");
    let _ = child.0.wait();
    // (The broker going down published the first connection's will already: the newest message counts.)
    let newest = || sub.messages("/will-test/status").pop().unwrap();
    wait("the last will", &|| newest()["state"] == "offline");
    let will = newest();
    assert_schema("status.v1.json", &will);
    assert!(
        at(&will) >= last_online,
        "the will {will} is older than the last online: the centre would keep the box online; all: {:?}",
        sub.messages("/will-test/status")
    );
}

/// A report the broker refuses (MQTT 5 "not authorized": the ACL lets this box write camera `ok`'s
/// topic, not camera `denied`'s) is set aside, counted and kept; every report of the other camera
/// flows past it (a refused report used to block every later report of every camera).
#[test]
fn a_refused_report_goes_aside_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = Command::new("mosquitto_passwd").args(["-b", "-c", "pw.txt", "box", "pw"]).current_dir(d).status();
    assert!(made.expect("mosquitto_passwd").success());
    std::fs::write(d.join("box.secret"), "pw\n").unwrap();
    std::fs::write(
        d.join("acl"),
        "topic read junction/#\ntopic write junction/probe\n\nuser box\ntopic write junction/v1/refuse/ok/#\ntopic write junction/v1/refuse/status\n",
    )
    .unwrap();
    let broker = broker_with(d, "allow_anonymous true\npassword_file pw.txt\nacl_file acl\n");
    let sub = Subscriber::start(broker.port);
    let site = d.join("site.toml");
    let clip = clip();
    std::fs::write(
        &site,
        format!(
            "site = \"refuse\"\n[detector]\nmodel = {:?}\n\n[aggregate]\nbins = [\"10s\"]\n\n\
             [[camera]]\nid = \"ok\"\nuri = {clip:?}\n\n[[camera]]\nid = \"denied\"\nuri = {clip:?}\n\n\
             [store]\npath = \"j.db\"\n\n[mqtt]\nurl = \"{}\"\nprotocol = \"5\"\nusername = \"box\"\n\
             password_file = \"box.secret\"\ndrain_timeout_s = 30\n",
            repo().join("models/yolox_nano.toml"),
            broker.url()
        ),
    )
    .unwrap();
    let out = junction(
        &["run", "--config", site.to_str().unwrap(), "--start", "2026-11-26T08:00:00Z", "--format", "json"],
        Duration::from_secs(400),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let conn = rusqlite::Connection::open(d.join("j.db")).unwrap();
    let ids = |camera: &str, published: bool| -> Vec<String> {
        let sql = format!(
            "SELECT id FROM reports WHERE camera = '{camera}' AND published_at IS {} NULL ORDER BY rowid",
            if published { "NOT" } else { "" }
        );
        let mut st = conn.prepare(&sql).unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let ok = ids("ok", true);
    assert!(ok.len() >= 7 && ids("ok", false).is_empty(), "every report of camera ok delivered: {ok:?}");
    let got = sub.wait_for(ok.len());
    for id in &ok {
        assert!(got.contains(id), "{id} not at the subscriber");
    }
    let denied = ids("denied", false);
    assert_eq!(denied.len(), ok.len(), "camera denied's reports all kept in the outbox");
    let refusals: i64 =
        conn.query_row("SELECT min(refusals) FROM reports WHERE camera = 'denied'", [], |r| r.get(0)).unwrap();
    assert!(refusals >= 1, "each refused at least once");
    assert!(out.stderr.contains("refused a message; set aside"), "{}", out.stderr);
}
