//! The centre's ingester against a real Mosquitto and a real PostgreSQL 15, both started here on
//! 127.0.0.1 (PostgreSQL on a temporary data directory as the unprivileged `postgres` user when the
//! tests run as root) and stopped by PID.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Running, command, free_port, repo, signal};
use crate::mqtt::Broker;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// `program` as the `postgres` system user when we are root (initdb and postgres refuse root).
fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", program]);
        c
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL 15 server of our own.
pub struct Postgres {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(|_| Vec::new())
    }

    /// With TLS: a CA and a server certificate for 127.0.0.1 made in its folder (`ssl = on`); returns
    /// the CA file too.
    pub fn start_tls() -> (Self, std::path::PathBuf) {
        let mut ca = std::path::PathBuf::new();
        let pg = Self::start_with(|d| {
            crate::mqtt::make_ca(d, "ca");
            crate::mqtt::make_server_cert(d, "ca");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            ca = d.join("ca.pem");
            let file = |f: &str| d.join(f).display().to_string();
            vec![
                "ssl=on".into(),
                format!("ssl_cert_file={}", file("server.pem")),
                format!("ssl_key_file={}", file("server.key")),
            ]
        });
        (pg, ca)
    }

    /// `prepare` writes what the server needs into its folder and returns more `-c` settings.
    fn start_with(prepare: impl FnOnce(&std::path::Path) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = prepare(dir.path());
        let data = dir.path().join("data");
        if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(chown.success());
        }
        let init = as_postgres(&format!("{PG_BIN}/initdb"))
            .args(["-A", "trust", "-U", "junction", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .expect("initdb (scripts/setup.sh installs postgresql-15)");
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let port = free_port();
        let child = as_postgres(&format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"])
            .arg(dir.path())
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Self { child, port, _dir: dir };
        let t = Instant::now();
        while pg.try_psql("SELECT 1").as_deref() != Some("1") {
            assert!(t.elapsed() < Duration::from_secs(30), "postgres did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=junction dbname=postgres", self.port)
    }

    fn try_psql(&self, sql: &str) -> Option<String> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "junction", "-d", "postgres", "-Atc", sql])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql).unwrap_or_else(|| panic!("psql failed: {sql}"))
    }

    /// Polls `sql` until it answers `want` (or 30 s), returning the last answer.
    pub fn wait_for(&self, sql: &str, want: &str) -> String {
        let t = Instant::now();
        loop {
            let got = self.try_psql(sql).unwrap_or_default();
            if got == want || t.elapsed() > Duration::from_secs(30) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Fast shutdown of our own server, by its PID (setpriv execs postgres).
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ingester(broker: &Broker, pg: &Postgres, client_id: &str, batch: u32) -> Running {
    ingester_with(broker, pg, client_id, batch, 100, Stdio::null(), &[])
}

/// The ingester with its batch wait (ms), where its log goes and more arguments.
fn ingester_with(
    broker: &Broker,
    pg: &Postgres,
    client_id: &str,
    batch: u32,
    wait_ms: u32,
    log: Stdio,
    more: &[&str],
) -> Running {
    let (wait, url, conninfo, batch) = (wait_ms.to_string(), broker.url(), pg.conninfo(), batch.to_string());
    let mut args = vec![
        "centre",
        "--mqtt",
        &url,
        "--postgres",
        &conninfo,
        "--client-id",
        client_id,
        "--batch",
        &batch,
        "--batch-wait-ms",
        &wait,
    ];
    args.extend_from_slice(more);
    Running(command(&args, "info").stdout(Stdio::null()).stderr(log).spawn().unwrap())
}

/// The centre broker's settings that matter to the ingester (deploy/centre/mosquitto.conf): what it
/// sends before an acknowledgement, what it queues.
fn centre_broker(dir: &std::path::Path) -> Broker {
    let conf = std::fs::read_to_string(repo().join("deploy/centre/mosquitto.conf")).unwrap();
    let limits: String = conf.lines().filter(|l| l.starts_with("max_")).map(|l| format!("{l}\n")).collect();
    assert!(limits.contains("max_inflight_messages"), "{conf}");
    Broker::start_with(dir, &limits)
}

/// A broker, a database and one ingester taking messages.
fn setup(client_id: &str, batch: u32) -> (tempfile::TempDir, Broker, Postgres, Running) {
    let dir = tempfile::tempdir().unwrap();
    let broker = centre_broker(dir.path());
    let pg = Postgres::start();
    let centre = ingester(&broker, &pg, client_id, batch);
    wait_ready(&broker, &pg);
    (dir, broker, pg, centre)
}

fn publish(broker: &Broker, topic: &str, payload: &str) {
    let ok = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-t", topic, "-m", payload])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn report(id_minute: u32, revision: u32, vehicles: u64) -> Value {
    let start = format!("2026-11-26T08:{id_minute:02}:00Z");
    json!({
        "schema": "junction.flow.v1", "id": format!("s1/c1/{start}/60"), "revision": revision, "site": "s1",
        "camera": "c1", "bin_start": start, "bin_seconds": 60, "partial": false, "covered_seconds": 60.0,
        "gaps": [], "frames_analysed": 600, "frames_dropped": 0,
        "volumes": [{"counter": "x", "direction": "in", "class": "motorcycle", "vehicles": vehicles, "pcu": 0.3 * vehicles as f64}],
        "flows": [], "zones": [], "speeds": [], "headways": [], "movements": [],
        "quality": {"recrossings_suppressed": 0, "slow_crossings_ignored": 0, "implausible_speeds": 0,
                    "unmatched_movements": 0, "track_fragments": 0}
    })
}

/// Waits until the ingester has its tables and takes messages: a status message lands.
fn wait_ready(broker: &Broker, pg: &Postgres) {
    let t = Instant::now();
    loop {
        let status = json!({"schema": "junction.status.v1", "site": "probe", "state": "online", "version": "0", "at": "2026-11-26T08:00:00Z"});
        publish(broker, "junction/v1/probe/status", &status.to_string());
        if pg.try_psql("SELECT count(*) FROM box_status WHERE site = 'probe'").as_deref() == Some("1") {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the ingester never landed a message");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Duplicates and revisions: the same report twice is one row; revision 2 after 1 replaces it,
/// revision 1 after 2 does not; a payload that fails its schema is one dead letter, nothing else.
/// The ingester's metrics count what it wrote, what it refused and why.
#[test]
fn revisions_duplicates_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let broker = centre_broker(dir.path());
    let pg = Postgres::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _centre = ingester_with(&broker, &pg, "centre-test-1", 50, 100, Stdio::null(), &["--metrics", &addr]);
    wait_ready(&broker, &pg);
    let topic = "junction/v1/s1/c1/flow";
    publish(&broker, topic, &report(0, 1, 5).to_string());
    publish(&broker, topic, &report(0, 1, 5).to_string());
    publish(&broker, topic, &report(1, 2, 7).to_string());
    publish(&broker, topic, &report(1, 1, 3).to_string());
    publish(&broker, topic, &report(2, 1, 4).to_string());
    publish(&broker, topic, &report(2, 2, 9).to_string());
    let mut bad = report(3, 1, 1);
    bad["bin_seconds"] = json!("sixty");
    publish(&broker, topic, &bad.to_string());
    let rows = pg.wait_for("SELECT count(*) FROM reports", "3");
    assert_eq!(rows, "3");
    assert_eq!(pg.wait_for("SELECT count(*) FROM dead_letters", "1"), "1");
    let got = pg.psql(
        "SELECT extract(minute FROM bin_start)::int || ':' || revision || ':' || (payload->'volumes'->0->>'vehicles') \
         FROM reports ORDER BY bin_start",
    );
    assert_eq!(got.lines().collect::<Vec<_>>(), vec!["0:1:5", "1:2:7", "2:2:9"]);
    let why = pg.psql("SELECT topic || ' | ' || error FROM dead_letters");
    assert!(why.starts_with(topic) && why.contains("bin_seconds"), "{why}");
    // Partitioned by day, and the views read it.
    assert_eq!(pg.psql("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = 'reports_20261126'"), "1");
    assert_eq!(pg.psql("SELECT count(*) FROM box_online WHERE online"), "1");
    let (code, body) = crate::common::http_get(port, "/metrics").expect("the ingester's /metrics");
    let text = String::from_utf8(body).unwrap();
    let sample = |s: &str| crate::common::metric_sample(&text, s).unwrap_or_else(|| panic!("{s} in\n{text}"));
    assert_eq!(code, 200);
    // 3 rows first written + 2 replaced at a higher revision; the duplicate, the stale revision 1 and
    // revision 1 behind 2 in one batch (if they were) are stale.
    assert_eq!(
        sample(r#"junction_centre_rows_total{table="reports"}"#) + sample("junction_centre_stale_reports_total"),
        6.0
    );
    assert_eq!(sample("junction_centre_dead_letters_total"), 1.0);
    assert!(sample("junction_centre_messages_total") >= 8.0, "{text}");
    assert_eq!(sample("junction_centre_broker_connected"), 1.0);
    assert_eq!(sample("junction_centre_qos0_messages_total"), 0.0, "every message came at QoS 1");
}

/// The box → broker → ingester → PostgreSQL on the bundled clip: every report the box stored is in
/// PostgreSQL at its highest revision, and every event once.
#[test]
fn box_to_postgres_on_the_bundled_clip() {
    let (dir, broker, pg, _centre) = setup("centre-test-2", 100);
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "site = \"e2e\"\n[detector]\nmodel = \"{}\"\nprovider = \"cpu\"\n[[camera]]\nid = \"street\"\nuri = \"{}\"\n\
             calibration = \"{}\"\ntiles = [1, 1]\n[store]\npath = \"box.db\"\n[mqtt]\nurl = \"{}\"\nevents = true\n",
            repo().join("models/yolox_nano.toml").display(),
            crate::common::clip().display(),
            repo().join("calibration/example-street/street.toml").display(),
            broker.url()
        ),
    )
    .unwrap();
    let out = crate::common::junction(
        &["run", "--config", site.to_str().unwrap(), "--start", "2026-11-26T08:00:00Z"],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let box_reports = out.stdout.matches("── e2e street").count();
    assert!(box_reports >= 3, "{}", out.stdout);
    let stored = pg.wait_for("SELECT count(*) FROM reports WHERE site = 'e2e'", &box_reports.to_string());
    assert_eq!(stored, box_reports.to_string(), "every closed bin the box printed is in PostgreSQL");
    let crossings =
        pg.wait_for("SELECT count(*) FROM events WHERE site = 'e2e' AND kind = 'crossing' AND rule = 'x320'", "7");
    assert_eq!(crossings, "7", "3 in + 4 out on x320, each once");
    let x320: String =
        pg.psql("SELECT coalesce(sum(vehicles), 0) FROM line_volumes_15min WHERE site = 'e2e' AND counter = 'x320'");
    assert_eq!(x320, "7", "the 15-minute view holds the same vehicles");
    assert!(pg.psql("SELECT count(*) FROM detector_events WHERE site = 'e2e'").parse::<u32>().unwrap() > 0);
    assert_eq!(pg.psql("SELECT count(*) FROM dead_letters"), "0");
    city_dashboard_queries_run(&pg);
}

/// Every query of deploy/grafana/centre.json runs against the landed data (Grafana's macros expanded
/// as Grafana would for the clip's day and junction "e2e"), and the volume panel finds the 7 vehicles.
fn city_dashboard_queries_run(pg: &Postgres) {
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/centre.json")).unwrap()).unwrap();
    let mut sqls: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["rawSql"].as_str().unwrap().to_owned()))
        .collect();
    sqls.push(d["templating"]["list"][1]["query"].as_str().unwrap().to_owned());
    assert!(sqls.len() >= 7);
    for sql in &sqls {
        let expanded = sql
            .replace("$__timeFilter(bin_start)", "bin_start BETWEEN '2026-11-26T00:00:00Z' AND '2026-11-27T00:00:00Z'")
            .replace(
                "$__timeFilter(r.bin_start)",
                "r.bin_start BETWEEN '2026-11-26T00:00:00Z' AND '2026-11-27T00:00:00Z'",
            )
            .replace("$site", "'e2e'");
        assert!(!expanded.contains('$'), "a macro left in {expanded}");
        assert!(pg.try_psql(&expanded).is_some(), "the dashboard's query fails: {expanded}");
    }
    let volumes = sqls.iter().find(|s| s.contains("sum(vehicles)")).unwrap();
    let rows = pg.psql(
        &volumes
            .replace("$__timeFilter(bin_start)", "bin_start BETWEEN '2026-11-26T00:00:00Z' AND '2026-11-27T00:00:00Z'")
            .replace("$site", "'e2e'"),
    );
    let total: u64 = rows.lines().filter_map(|l| l.rsplit('|').next()?.parse::<u64>().ok()).sum();
    assert!(total >= 7, "the volume panel sees the clip's vehicles: {rows}");
}

/// SIGKILL mid-batch: messages the killed ingester had not committed come again to its restart
/// (same client id, persistent session), and nothing is doubled. No timing decides what is
/// committed: the 40 reports wait for the ingester as a backlog, it commits whole batches of 15
/// only (a batch waits up to 60 s to fill), so it holds 10 or more, uncommitted, when it is killed.
#[test]
fn ingester_killed_mid_batch_loses_nothing_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = centre_broker(dir.path());
    let pg = Postgres::start();
    // The session exists (the broker queues for it), then the ingester is away while the box reports.
    let first = ingester(&broker, &pg, "centre-test-3", 1000);
    wait_ready(&broker, &pg);
    drop(first);
    let topic = "junction/v1/s1/c1/flow";
    let sent: Vec<Value> = (0..40).map(|m| report(m, 1, u64::from(m) + 1)).collect();
    for r in &sent {
        publish(&broker, topic, &r.to_string());
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let centre = ingester_with(&broker, &pg, "centre-test-3", 15, 60_000, Stdio::null(), &["--metrics", &addr]);
    // All 40 taken (and the probe statuses the first left unacknowledged): two batches of 15
    // committed, the rest held.
    let t = Instant::now();
    while metric(port, "junction_centre_messages_total").is_none_or(|m| m < 40.0)
        || metric(port, "junction_centre_pending").is_none_or(|p| p < 10.0)
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the ingester never took the backlog: {:?} taken, {:?} held",
            metric(port, "junction_centre_messages_total"),
            metric(port, "junction_centre_pending")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&centre.0, "KILL");
    drop(centre);
    let before: u32 = pg.psql("SELECT count(*) FROM reports").parse().unwrap();
    assert!(before <= 30, "{before} reports were committed: more than two batches of 15");
    let _again = ingester(&broker, &pg, "centre-test-3", 1000);
    let stored = pg.wait_for("SELECT count(*) FROM reports", "40");
    assert_eq!(stored, "40", "{before} were committed before the kill");
    let total = pg.psql("SELECT sum((payload->'volumes'->0->>'vehicles')::int) FROM reports");
    assert_eq!(total, (1..=40).sum::<u32>().to_string());
}

/// Two ingesters in one group split the messages (each lands some), and together land every one
/// once.
#[test]
fn two_ingesters_share_the_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let broker = centre_broker(dir.path());
    let pg = Postgres::start();
    let logged = |id: &str| ingester_with(&broker, &pg, id, 20, 50, Stdio::piped(), &[]);
    let mut a = logged("centre-share-a");
    wait_ready(&broker, &pg);
    let mut b = logged("centre-share-b");
    std::thread::sleep(Duration::from_secs(2));
    // 200 reports: 100 cameras x 2 minutes, published by one client.
    let lines: String = (0..200)
        .map(|i| {
            let mut r = report(i % 2, 1, 1);
            let (cam, start) = (format!("c{}", i / 2), r["bin_start"].as_str().unwrap().to_owned());
            r["camera"] = json!(cam);
            r["id"] = json!(format!("s1/{cam}/{start}/60"));
            r.to_string() + "\n"
        })
        .collect();
    let lines: Vec<&str> = lines.lines().collect();
    for chunk in lines.chunks(50) {
        let mut children = Vec::new();
        for l in chunk {
            let cam = serde_json::from_str::<Value>(l).unwrap()["camera"].as_str().unwrap().to_owned();
            children.push(
                Command::new("mosquitto_pub")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &broker.port.to_string(),
                        "-q",
                        "1",
                        "-t",
                        &format!("junction/v1/s1/{cam}/flow"),
                        "-m",
                        l,
                    ])
                    .spawn()
                    .unwrap(),
            );
        }
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    let got = pg.wait_for("SELECT count(*) FROM reports", "200");
    assert_eq!(
        got,
        "200",
        "dead letters: {}",
        pg.psql("SELECT count(*) || ' ' || coalesce(min(error), '') FROM dead_letters")
    );
    let landed = |r: &mut Running| {
        signal(&r.0, "TERM");
        let mut err = String::new();
        std::io::Read::read_to_string(r.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        let line = err.lines().rfind(|l| l.contains("centre: stopped")).unwrap_or_else(|| panic!("{err}")).to_owned();
        let n =
            line.split("reports=").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse::<u64>().ok());
        n.unwrap_or_else(|| panic!("{line}"))
    };
    let (na, nb) = (landed(&mut a), landed(&mut b));
    assert!(na > 0 && nb > 0, "both ingesters landed reports: {na} + {nb}");
    assert_eq!(na + nb, 200);
}

fn event(site: &str, at: &str) -> Value {
    json!({
        "schema": "junction.event.v1", "id": format!("{site}/c1/x/1/crossing/{at}"), "site": site, "camera": "c1",
        "rule": "x", "kind": "crossing", "direction": "in", "class": "motorcycle", "track": 1, "pts_s": 1.0, "at": at
    })
}

/// Poison among good messages: a schema-valid report dated 9999-12-31 (it crashed the ingester in the
/// day computation, then again at each redelivery), a text field holding U+0000 and a revision past
/// PostgreSQL's int4 (both refused by PostgreSQL, so the whole batch was retried for ever) each go to
/// dead letters alone, saying why; so does a message only the database refuses (a CHECK constraint the
/// ingester knows nothing of: its batch is split and written a message at a time); everything else
/// lands, and the ingester keeps running.
#[test]
fn poison_messages_go_to_dead_letters_alone_and_the_rest_lands() {
    let (_dir, broker, pg, mut centre) = setup("centre-test-poison", 50);
    pg.psql("ALTER TABLE events ADD CONSTRAINT test_refuses CHECK (rule <> 'refused-by-db')");
    let flow = "junction/v1/s1/c1/flow";
    let events = "junction/v1/s1/c1/events";
    publish(&broker, flow, &report(0, 1, 5).to_string());
    let mut future = report(0, 1, 1);
    future["bin_start"] = json!("9999-12-31T23:59:00Z");
    future["id"] = json!("s1/c1/9999-12-31T23:59:00Z/60");
    publish(&broker, flow, &future.to_string());
    let mut nul = event("s1", "2026-11-26T08:00:02.000Z");
    nul["rule"] = json!("x\u{0}y");
    publish(&broker, events, &nul.to_string());
    publish(&broker, flow, &report(1, 3_000_000_000, 7).to_string());
    publish(&broker, events, &event("s1", "2026-11-26T08:00:01.000Z").to_string());
    let mut refused = event("s1", "2026-11-26T08:00:03.000Z");
    refused["rule"] = json!("refused-by-db");
    publish(&broker, events, &refused.to_string());
    publish(&broker, events, &event("s1", "2026-11-26T08:00:04.000Z").to_string());
    publish(&broker, flow, &report(2, 1, 9).to_string());
    let landed = "SELECT (SELECT count(*) FROM reports) || ' ' || (SELECT count(*) FROM events) || ' ' || \
                  (SELECT count(*) FROM dead_letters)";
    assert_eq!(pg.wait_for(landed, "2 2 4"), "2 2 4", "the good ones land, each poison one is a dead letter");
    let why = pg.psql("SELECT error FROM dead_letters ORDER BY seq");
    assert!(why.contains("bin_start") && why.contains("9999"), "{why}");
    assert!(why.contains("rule") && why.contains("U+0000"), "{why}");
    assert!(why.contains("revision") && why.contains("3000000000"), "{why}");
    assert!(why.contains("refused by PostgreSQL") && why.contains("test_refuses"), "{why}");
    assert!(centre.0.try_wait().unwrap().is_none(), "the ingester is still running");
    // And keeps landing.
    publish(&broker, flow, &report(3, 1, 2).to_string());
    assert_eq!(pg.wait_for("SELECT count(*) FROM reports", "3"), "3");
    // A day's partition dropped behind the ingester's back (as retention does) while it believes the
    // day is there: a late report for that day is refused ("no partition"), the batch split, the day
    // made again, and the report lands (it was retried for ever).
    pg.psql("DROP TABLE reports_20261126");
    publish(&broker, flow, &report(4, 1, 3).to_string());
    assert_eq!(pg.wait_for("SELECT count(*) FROM reports", "1"), "1", "the late report landed");
    assert_eq!(pg.psql("SELECT count(*) FROM dead_letters"), "4", "and is no dead letter");
}

/// Retention: restarted with `--retain-events-days 2`, the ingester drops the day partitions of
/// events and loop events older than that, whole, keeps today's, and keeps reports (kept for ever
/// unless `--retain-reports-days` says otherwise); dead letters older than 30 days go.
#[test]
fn retention_drops_old_event_days_and_keeps_reports() {
    let (_dir, broker, pg, centre) = setup("centre-test-4", 50);
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    publish(&broker, "junction/v1/s1/c1/flow", &report(0, 1, 5).to_string());
    publish(&broker, "junction/v1/s1/c1/events", &event("s1", "2026-11-26T08:00:01.000Z").to_string());
    publish(&broker, "junction/v1/s1/c1/events", &event("s1", &now).to_string());
    let det = json!({"schema": "junction.detector.v1", "id": "s1/c1/loop-1/82/2026-11-26T08:00:01.0Z", "site": "s1",
        "camera": "c1", "detector": "loop-1", "channel": 1, "event_code": 82, "at": "2026-11-26T08:00:01.0Z"});
    publish(&broker, "junction/v1/s1/c1/detector", &det.to_string());
    let landed = "SELECT (SELECT count(*) FROM reports) || ' ' || (SELECT count(*) FROM events) || ' ' || \
                  (SELECT count(*) FROM detector_events)";
    assert_eq!(pg.wait_for(landed, "1 2 1"), "1 2 1");
    // Dead letters: one received 40 days ago, one now; kept 30 days by default.
    pg.psql(
        "INSERT INTO dead_letters (received_at, topic, error, payload) VALUES \
         (now() - interval '40 days', 'junction/v1/s1/c1/flow', 'old', '\\x7b7d'), (now(), 'junction/v1/s1/c1/flow', 'new', '\\x7b7d')",
    );
    signal(&centre.0, "TERM");
    drop(centre);
    let _again = ingester_with(&broker, &pg, "centre-test-4", 50, 100, Stdio::null(), &["--retain-events-days", "2"]);
    let old = "SELECT count(*) FROM pg_class WHERE relname IN ('events_20261126', 'detector_events_20261126')";
    assert_eq!(pg.wait_for(old, "0"), "0", "the old days' partitions are dropped");
    assert_eq!(pg.psql(landed), "1 1 0", "today's event and the report stay");
    assert_eq!(pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'reports_20261126'"), "1");
    assert_eq!(
        pg.wait_for("SELECT string_agg(error, ',') FROM dead_letters", "new"),
        "new",
        "dead letters past 30 days go"
    );
}

/// One sample of the ingester's /metrics on `port` (none while it does not answer).
fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = crate::common::http_get(port, "/metrics")?;
    crate::common::metric_sample(&String::from_utf8(body).ok()?, name)
}

/// `n` events of site s1, one per millisecond from 08:00, published at QoS 1 by one mosquitto_pub.
fn publish_events(broker: &Broker, n: u32) {
    let lines: String = (0..n)
        .map(|i| {
            let at = format!("2026-11-26T08:{:02}:{:02}.{:03}Z", i / 60_000, (i / 1000) % 60, i % 1000);
            event("s1", &at).to_string() + "\n"
        })
        .collect();
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1", "-t", "junction/v1/s1/c1/events", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(publisher.stdin.as_mut().unwrap(), lines.as_bytes()).unwrap();
    drop(publisher.stdin.take());
    assert!(publisher.wait().unwrap().success());
}

/// A burst far bigger than a batch, from a broker that sends up to 1000 messages before an
/// acknowledgement (the centre's setting): every message lands. (The ingester once deadlocked here:
/// its MQTT event loop waited for room in the batch channel while the batch loop waited for the
/// event loop to take its acknowledgements; 436 of 386 913 landed in the first load test.)
#[test]
fn a_burst_of_many_batches_lands_whole() {
    let (_dir, broker, pg, _centre) = setup("centre-test-5", 50);
    let n = 3000;
    publish_events(&broker, n);
    let got = pg.wait_for("SELECT count(*) FROM events", &n.to_string());
    assert_eq!(got, n.to_string());
}

/// A busy junction's 15-minute report: 8 lines, every class both ways, 4 approaches' movements,
/// closed by the box's own `Aggregator`.
pub fn busy_report() -> junction::aggregate::FlowReport {
    use junction::analytics::{Direction, EventKind, RuleQuality, Speed, TrafficEvent, Turn};
    use junction::detect::VehicleClass;
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;
    let t0 = UNIX_EPOCH + Duration::from_secs(1_795_000_500 / 900 * 900);
    let lines: Vec<Arc<str>> = (0..8).map(|i| Arc::from(format!("line-{i}").as_str())).collect();
    let mut agg = junction::aggregate::Aggregator::new("big", "c1", lines.clone(), vec![], &[Duration::from_secs(900)]);
    let mut out = Vec::new();
    let classes =
        [VehicleClass::Motorcycle, VehicleClass::Car, VehicleClass::Bus, VehicleClass::Truck, VehicleClass::Bicycle];
    for s in 0..900u64 {
        let wall = t0 + Duration::from_secs(s);
        agg.frame(wall, 0, &[], RuleQuality::default(), &mut out);
        let class = classes[(s % 5) as usize];
        let e = |rule: Arc<str>, kind| TrafficEvent {
            rule,
            kind,
            track: s,
            class,
            class_share: 1.0,
            pts: Duration::from_secs(s),
            wall,
            speed: Some(Speed { kmh: 20.0 + (s % 17) as f32, plausible: true }),
        };
        let direction = if s % 2 == 0 { Direction::In } else { Direction::Out };
        agg.event(&e(lines[(s / 5 % 8) as usize].clone(), EventKind::Crossing { direction }));
        let (from, to) = (s / 40 % 4, (s / 40 % 4 + 1 + s / 160 % 3) % 4);
        let turn = [Turn::Left, Turn::Through, Turn::Right][(s / 160 % 3) as usize];
        agg.event(&e(
            format!("approach-{from}").into(),
            EventKind::Movement { to: format!("approach-{to}").into(), turn },
        ));
    }
    agg.tick(t0 + Duration::from_secs(905), Duration::ZERO, &mut out);
    out.pop().expect("the 15-minute bin closed")
}

/// A busy junction's 15-minute report is bigger than rumqttc's default packet limit (10 KiB): the
/// box publishes it (MQTT 3.1.1 and 5) and the ingester takes it.
#[test]
fn a_busy_junctions_report_is_published_and_landed() {
    let (dir, broker, pg, _centre) = setup("centre-test-6", 50);
    let mut report = busy_report();
    let size = serde_json::to_vec(&report).unwrap().len();
    assert!(size > 16 * 1024, "the report is {size} bytes: not big enough to test the limit");
    for (site, protocol) in [("big3", "3.1.1"), ("big5", "5")] {
        report.site = site.into();
        report.id = report.id.replacen("big", site, 1);
        let store = dir.path().join(format!("{site}.db"));
        junction::store::Store::open(&store).unwrap().save(site, "c1", &[], std::slice::from_ref(&report)).unwrap();
        let cfg = format!("url = \"{}\"\nprotocol = \"{protocol}\"", broker.url());
        let cfg: junction::publish::MqttConfig = toml::from_str(&cfg).unwrap();
        let metrics = std::sync::Arc::new(junction::telemetry::Metrics::new(&[]));
        let publisher = junction::publish::Publisher::start(&cfg, site, &store, metrics).unwrap();
        let got = pg.wait_for(&format!("SELECT count(*) FROM reports WHERE site = '{site}'"), "1");
        publisher.drain();
        let dead = pg.psql("SELECT count(*) FROM dead_letters");
        assert_eq!(got, "1", "a {size}-byte report over MQTT {protocol}; dead letters: {dead}");
        let volumes =
            pg.psql(&format!("SELECT jsonb_array_length(payload->'volumes') FROM reports WHERE site = '{site}'"));
        assert_eq!(volumes, report.volumes.len().to_string());
    }
}

/// The centre's PostgreSQL over TLS: `sslmode=require` in the connection string and the server's CA
/// given (`--postgres-ca-file`): the ingester's connection is encrypted (pg_stat_ssl) and lands; a CA
/// that did not sign the server's certificate is refused at start.
#[test]
fn the_ingester_writes_to_postgres_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = centre_broker(dir.path());
    let (pg, ca) = Postgres::start_tls();
    let conninfo = format!("{} sslmode=require", pg.conninfo());
    let ca = ca.display().to_string();
    let (url, _) = (broker.url(), ());
    let args =
        ["centre", "--mqtt", &url, "--postgres", &conninfo, "--client-id", "centre-pg-tls", "--postgres-ca-file", &ca];
    let _centre = Running(command(&args, "info").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait_ready(&broker, &pg);
    let encrypted = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.usename = 'junction' \
         AND a.pid <> pg_backend_pid() AND a.application_name <> 'psql'",
    );
    assert!(encrypted.parse::<u32>().unwrap() >= 1, "the ingester's connection is not encrypted");
    // Another CA: the server is not who it says; refused at start, naming the setting.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    crate::mqtt::make_ca(&other, "other");
    let wrong = other.join("other.pem").display().to_string();
    let args = [
        "centre",
        "--mqtt",
        &url,
        "--postgres",
        &conninfo,
        "--client-id",
        "centre-pg-tls-2",
        "--postgres-ca-file",
        &wrong,
    ];
    let out = crate::common::junction(&args, Duration::from_secs(60));
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--postgres") && out.stderr.to_lowercase().contains("certificate"), "{}", out.stderr);
}

/// The centre's broker over TLS with a password (as deploy/centre/mosquitto.conf asks): the
/// ingester connects with --ca-file, --username and --password-file and lands what a box sends; a CA
/// file holding no certificate is refused at start, naming the file.
#[test]
fn the_ingester_reads_a_tls_broker_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::mqtt::make_ca(d, "ca");
    crate::mqtt::make_server_cert(d, "ca");
    let made =
        Command::new("mosquitto_passwd").args(["-b", "-c", "pw.txt", "centre", "s3cret"]).current_dir(d).status();
    assert!(made.expect("mosquitto_passwd").success());
    std::fs::write(d.join("centre.secret"), "s3cret\n").unwrap();
    let broker = crate::mqtt::broker_with(
        d,
        "cafile ca.pem\ncertfile server.pem\nkeyfile server.key\nallow_anonymous false\npassword_file pw.txt\nmax_inflight_messages 1000\n",
    );
    let pg = Postgres::start();
    let (url, conninfo, ca, secret) = (
        format!("mqtts://127.0.0.1:{}", broker.port),
        pg.conninfo(),
        d.join("ca.pem").display().to_string(),
        d.join("centre.secret").display().to_string(),
    );
    let args = ["centre", "--mqtt", &url, "--postgres", &conninfo, "--client-id", "centre-tls", "--ca-file", &ca];
    let auth = ["--username", "centre", "--password-file", &secret];
    let _centre = Running(command(&[&args[..], &auth[..]].concat(), "info").stdout(Stdio::null()).spawn().unwrap());
    let status = json!({"schema": "junction.status.v1", "site": "tls", "state": "online", "version": "0", "at": "2026-11-26T08:00:00Z"});
    let t = Instant::now();
    while pg.try_psql("SELECT count(*) FROM box_status WHERE site = 'tls'").as_deref() != Some("1") {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "--cafile", &ca, "-u", "centre", "-P", "s3cret"])
            .args(["-q", "1", "-t", "junction/v1/tls/status", "-m", &status.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        assert!(t.elapsed() < Duration::from_secs(30), "nothing landed over TLS");
        std::thread::sleep(Duration::from_millis(300));
    }
    // A CA file with no certificate in it: refused before anything starts, naming the file.
    std::fs::write(d.join("empty.pem"), "not a certificate\n").unwrap();
    let empty = d.join("empty.pem").display().to_string();
    let out = crate::common::junction(
        &["centre", "--mqtt", &url, "--postgres", &conninfo, "--client-id", "centre-tls-2", "--ca-file", &empty],
        Duration::from_secs(30),
    );
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("empty.pem") && out.stderr.contains("no PEM certificate"), "{}", out.stderr);
}

/// A backlog (messages queued at the broker while the ingester was away) drains with the
/// acknowledgements keeping up with the reads: the broker delivers faster than batches commit
/// (Mosquitto 2.0.11 does not hold to its in-flight window), and every committed message's
/// acknowledgement must still go out with the next batch, not queue behind the reads (before, about
/// one acknowledgement went out per ten messages read: thousands queued, the keepalive missed, the
/// connection dropped and landing stalled).
/// A broker, a database, and `n` events queued at the broker for the ingester `client_id`, whose
/// persistent session (its subscriptions) was made by running it once; it is not running now.
fn backlog(client_id: &str, batch: u32, n: u32) -> (tempfile::TempDir, Broker, Postgres) {
    let dir = tempfile::tempdir().unwrap();
    let broker = centre_broker(dir.path());
    let pg = Postgres::start();
    let first = ingester(&broker, &pg, client_id, batch);
    wait_ready(&broker, &pg);
    drop(first);
    publish_events(&broker, n);
    (dir, broker, pg)
}

#[test]
fn a_backlog_drains_with_acknowledgements_keeping_up() {
    let (batch, n) = (100, 20_000);
    let (_dir, broker, pg) = backlog("centre-test-9", batch, n);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _centre = ingester_with(&broker, &pg, "centre-test-9", batch, 100, Stdio::null(), &["--metrics", &addr]);
    // The most acknowledgements the ingester held back (committed, not yet sent) while it drained.
    let (mut most_unacked, mut scrapes, mut stored) = (0.0f64, 0, String::new());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(180) {
        if let Some(u) = metric(port, "junction_centre_unacked") {
            most_unacked = most_unacked.max(u);
            scrapes += 1;
        }
        if scrapes % 10 == 0 {
            stored = pg.psql("SELECT count(*) FROM events");
            if stored == n.to_string() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(scrapes > 10, "the metrics were read {scrapes} times: nothing was measured");
    assert_eq!(
        stored,
        n.to_string(),
        "a backlog of {n} did not land ({most_unacked} acknowledgements held back at most)"
    );
    assert_eq!(pg.psql("SELECT count(DISTINCT id) FROM events"), n.to_string());
    // Committed batches' acknowledgements go out with the next turn: at most the intake's four
    // batches are ever waiting.
    assert!(
        most_unacked <= f64::from(4 * batch),
        "{most_unacked} acknowledgements were held back while the backlog drained (batch {batch})"
    );
    let (_, body) = crate::common::http_get(port, "/metrics").expect("the ingester's /metrics");
    let text = String::from_utf8(body).unwrap();
    let connections = crate::common::metric_sample(&text, "junction_centre_connections_total");
    assert_eq!(connections, Some(1.0), "the ingester reconnected while it drained the backlog:\n{text}");
}

/// The broker restarts (SIGTERM: it saves its sessions) while the ingester drains a backlog: the
/// ingester reconnects, the acknowledgements meant for the first connection are not sent on the
/// second (the broker delivers those messages again), and every message lands once.
#[test]
fn the_broker_restarting_mid_backlog_loses_nothing_doubles_nothing() {
    let (batch, n) = (100, 20_000);
    let (_dir, mut broker, pg) = backlog("centre-test-10", batch, n);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _centre = ingester_with(&broker, &pg, "centre-test-10", batch, 100, Stdio::null(), &["--metrics", &addr]);
    let t = Instant::now();
    let mut before = 0u32;
    while before == 0 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
        before = pg.psql("SELECT count(*) FROM events").parse().unwrap();
    }
    broker.down();
    let at_restart: u32 = pg.psql("SELECT count(*) FROM events").parse().unwrap();
    broker.up();
    assert!(before > 0 && at_restart < n, "{at_restart} of {n} landed before the restart: nothing was tested");
    let stored = pg.wait_for("SELECT count(*) FROM events", &n.to_string());
    assert_eq!(stored, n.to_string(), "{at_restart} had landed when the broker restarted");
    assert_eq!(pg.psql("SELECT count(DISTINCT id) FROM events"), n.to_string());
    let (_, body) = crate::common::http_get(port, "/metrics").expect("the ingester's /metrics");
    let text = String::from_utf8(body).unwrap();
    let connections = crate::common::metric_sample(&text, "junction_centre_connections_total").unwrap_or(0.0);
    assert!(connections >= 2.0, "the ingester never reconnected:\n{text}");
}

/// SIGTERM: the ingester commits what it holds and acknowledges it before it leaves, so the broker
/// has nothing to deliver again to the same client id (a restarted ingester receives only what is new).
#[test]
fn a_stopped_ingester_lands_and_acknowledges_what_it_held() {
    let n = 120;
    let (_dir, broker, pg) = backlog("centre-test-11", 50, n);
    // A batch that waits a minute to fill: the backlog is held, uncommitted, when SIGTERM comes.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut centre = ingester_with(&broker, &pg, "centre-test-11", 1000, 60_000, Stdio::null(), &["--metrics", &addr]);
    let t = Instant::now();
    // (n events, and maybe a probe status from making the session.)
    while metric(port, "junction_centre_pending").is_none_or(|p| p < f64::from(n)) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the ingester never held the backlog: {:?}",
            metric(port, "junction_centre_pending")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "0", "the batch was committed before SIGTERM");
    signal(&centre.0, "TERM");
    let t = Instant::now();
    while centre.0.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "the ingester did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pg.psql("SELECT count(*) FROM events"), n.to_string(), "what it held was not landed at the stop");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _again = ingester_with(&broker, &pg, "centre-test-11", 50, 100, Stdio::null(), &["--metrics", &addr]);
    // New statuses until one lands: the session is back, and the broker sends what it still held
    // for it before them.
    let (mut probes, t) = (0u32, Instant::now());
    while pg.try_psql("SELECT count(*) FROM box_status WHERE site = 'after'").as_deref() != Some("1") {
        assert!(t.elapsed() < Duration::from_secs(30), "the restarted ingester never landed a message");
        probes += 1;
        let status = json!({"schema": "junction.status.v1", "site": "after", "state": "online", "version": "0",
                            "at": format!("2026-11-26T09:{:02}:{:02}Z", probes / 60 % 60, probes % 60)});
        publish(&broker, "junction/v1/after/status", &status.to_string());
        std::thread::sleep(Duration::from_millis(300));
    }
    let taken = metric(port, "junction_centre_messages_total").unwrap_or(-1.0);
    assert!(
        taken >= 1.0 && taken <= f64::from(probes),
        "the restarted ingester took {taken} messages for {probes} new ones: the broker delivered again what the first had landed"
    );
}

/// The centre's broker as shipped lets each box write only its own site's topics (its username is its
/// site id; deploy/centre/junction.acl), and the ingester read them all: a box publishing under
/// another site's name is dropped by the broker.
#[test]
fn the_shipped_broker_acl_keeps_each_box_to_its_own_site() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = std::fs::read_to_string(repo().join("deploy/centre/mosquitto.conf")).unwrap();
    let acl_line =
        conf.lines().find(|l| l.starts_with("acl_file ")).expect("deploy/centre/mosquitto.conf names an acl_file");
    let acl_name = std::path::Path::new(acl_line.trim_start_matches("acl_file ").trim()).file_name().unwrap();
    std::fs::copy(repo().join("deploy/centre").join(acl_name), d.join("junction.acl")).unwrap();
    for (k, user) in ["site-a", "site-b", "junction-centre"].iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.args(if k == 0 { vec!["-b", "-c"] } else { vec!["-b"] }).args(["pw.txt", user, "pw"]).current_dir(d);
        assert!(cmd.status().expect("mosquitto_passwd").success());
    }
    let broker = crate::mqtt::broker_with(d, "allow_anonymous false\npassword_file pw.txt\nacl_file junction.acl\n");
    let port = broker.port.to_string();
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &port, "-u", "junction-centre", "-P", "pw"])
        .args(["-t", "junction/v1/#", "-q", "1", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (out, sink) = (sub.stdout.take().unwrap(), lines.clone());
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let publish_as = |user: &str, topic: &str, msg: &str| {
        let _ = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", "pw", "-q", "1", "-t", topic, "-m", msg])
            .stderr(Stdio::null())
            .status();
    };
    let t = Instant::now();
    // Until the subscriber is in: the box's own topic, after the spoofed one each round.
    while !lines.lock().unwrap().iter().any(|l| l.starts_with("junction/v1/site-a/c1/flow ")) {
        assert!(t.elapsed() < Duration::from_secs(30), "nothing arrived: {:?}", lines.lock().unwrap());
        publish_as("site-a", "junction/v1/site-b/c1/flow", "spoofed");
        publish_as("site-a", "junction/v1/site-a/c1/flow", "own");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Subscribed for sure now: once more, a spoofed message, then the box's own as a marker.
    publish_as("site-a", "junction/v1/site-b/c1/flow", "spoofed");
    publish_as("site-a", "junction/v1/site-a/c1/flow", "marker");
    while !lines.lock().unwrap().iter().any(|l| l.ends_with(" marker")) {
        assert!(t.elapsed() < Duration::from_secs(30), "the marker never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = lines.lock().unwrap().clone();
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(got.iter().all(|l| !l.contains("spoofed")), "a box wrote another site's topic: {got:?}");
}
