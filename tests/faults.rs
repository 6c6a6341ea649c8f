//! Counts the traffic centre can trust through restarts, outages and faults: a restart inside a bin
//! (SIGTERM and SIGKILL), a camera outage, one faulty camera beside a healthy one. Real processes,
//! a real Mosquitto, a real RTSP server, all on 127.0.0.1.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::common::{Running, command, free_port, http_get, metric_sample, repo, signal, wait_at_most};

/// Frames the camera has analysed, from the running process's /metrics (0 until it listens).
fn frames(port: u16, camera: &str) -> f64 {
    let body = http_get(port, "/metrics").map(|(_, b)| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    metric_sample(&body, &format!("junction_frames_analysed_total{{camera=\"{camera}\"}}")).unwrap_or(0.0)
}

fn wait_until(what: &str, secs: u64, cond: &mut dyn FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds into the current UTC minute.
fn second_of_minute() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() % 60
}

/// Waits for the start of a minute's first quarter, so that two short runs fit in one 1-minute bin.
fn wait_for_early_minute() {
    while !(1..=12).contains(&second_of_minute()) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `junction run URI` with one line, 1-minute bins (`extra` may add others), the store `db` and
/// /metrics on `port`; output discarded.
fn spawn_run(uri: &str, db: &Path, port: u16, extra: &[&str]) -> Running {
    let http = format!("127.0.0.1:{port}");
    let mut args = vec!["run", uri, "--line", "320,60,320,220", "--bins", "1m", "--store", db.to_str().unwrap()];
    args.extend(["--http", &http]);
    args.extend(extra);
    Running(command(&args, "warn").stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("junction"))
}

/// A live test camera (videotestsrc, 10 frames/s) with totals written to `summary` at the end.
fn live_run(db: &Path, port: u16, summary: &Path, extra: &[&str]) -> Running {
    let summary = summary.to_str().unwrap();
    spawn_run("test://ball?fps=10", db, port, &[&["--summary", summary, "--format", "json"], extra].concat())
}

fn summary_frames(path: &Path) -> u64 {
    let s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s["frames"].as_u64().unwrap()
}

/// Every stored report of `bin_seconds`: (id, revision, payload).
fn stored(db: &Path, bin_seconds: u64) -> Vec<(String, u32, Value)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st =
        conn.prepare("SELECT id, revision, payload FROM reports WHERE bin_seconds = ?1 ORDER BY bin_start").unwrap();
    st.query_map([bin_seconds as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))
        .unwrap()
        .map(|r| {
            let (id, rev, p) = r.unwrap();
            (id, rev, serde_json::from_str(&p).unwrap())
        })
        .collect()
}

fn stop(mut child: Running) {
    signal(&child.0, "TERM");
    let status = wait_at_most(&mut child.0, Instant::now(), Duration::from_secs(60));
    assert!(status.success(), "junction did not exit cleanly on SIGTERM: {status:?}");
}

/// A restart inside a bin (SIGTERM, then the box started again within the same minute) gives that
/// bin's report at revision 2 with the frames and coverage of both runs; a subscriber keeping the
/// highest revision per id sees what the store holds.
#[test]
fn restart_inside_a_bin_is_revision_2_of_both_runs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::mqtt::Broker::start(dir.path());
    let sub = crate::mqtt::Subscriber::start(broker.port);
    let url = broker.url();
    let db = dir.path().join("j.db");
    let (s1, s2) = (dir.path().join("s1.json"), dir.path().join("s2.json"));
    let port = free_port();
    wait_for_early_minute();
    let first = live_run(&db, port, &s1, &["--mqtt", &url]);
    wait_until("the first run's frames", 60, &mut || frames(port, "camera") >= 40.0);
    stop(first);
    let after_first = stored(&db, 60);
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    let (id, rev, r1) = after_first[0].clone();
    assert_eq!(rev, 1);
    assert_eq!(r1["frames_analysed"].as_u64(), Some(summary_frames(&s1)));
    assert_eq!(r1["partial"], true);

    let second = live_run(&db, port, &s2, &["--mqtt", &url]);
    wait_until("the second run's frames", 60, &mut || frames(port, "camera") >= 40.0);
    stop(second);
    assert!(second_of_minute() >= 2, "both runs must fit in one minute; the machine is too slow for this test");
    let after = stored(&db, 60);
    assert_eq!(after.len(), 1, "one row per bin: {after:?}");
    let (id2, rev2, r2) = after[0].clone();
    assert_eq!((id2.as_str(), rev2), (id.as_str(), 2));
    assert_eq!(r2["revision"], 2);
    let (f1, f2) = (summary_frames(&s1), summary_frames(&s2));
    assert_eq!(r2["frames_analysed"].as_u64(), Some(f1 + f2), "frames of both runs");
    // Coverage: the first run's, plus the second's frames 0.1 s apart (the first of them opens it).
    let c1 = r1["covered_seconds"].as_f64().unwrap();
    let c2 = r2["covered_seconds"].as_f64().unwrap();
    let second_run = (f2 - 1) as f64 / 10.0;
    assert!((c2 - c1 - second_run).abs() < 1.0, "covered {c2} s = {c1} s + about {second_run} s");
    let gaps = r2["gaps"].as_array().unwrap();
    assert!(gaps.iter().any(|g| g["reason"] == "box_not_running"), "the stretch between the runs: {gaps:?}");
    crate::common::assert_schema("flow.v1.json", &r2);

    // The consumer rule (per id, the highest revision) gives the store's report.
    let mut kept: std::collections::BTreeMap<String, Value> = Default::default();
    wait_until("revision 2 at the subscriber", 30, &mut || sub.messages("/flow").iter().any(|m| m["revision"] == 2));
    for m in sub.messages("/flow") {
        let id = m["id"].as_str().unwrap().to_owned();
        if kept.get(&id).is_none_or(|k| k["revision"].as_u64() < m["revision"].as_u64()) {
            kept.insert(id, m);
        }
    }
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[&id], r2, "the subscriber's view equals the store");
}

/// SIGKILL inside a bin: the restarted box continues the bin from its last checkpoint (every 2 s
/// here): what is lost is at most the frames since, and the report holds the rest of both runs.
#[test]
fn sigkill_loses_at_most_the_checkpoint_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let (s1, s2) = (dir.path().join("s1.json"), dir.path().join("s2.json"));
    let port = free_port();
    wait_for_early_minute();
    let mut first = live_run(&db, port, &s1, &["--checkpoint-s", "2"]);
    wait_until("the first run's frames", 60, &mut || frames(port, "camera") >= 50.0);
    let at_kill = frames(port, "camera") as u64;
    signal(&first.0, "KILL");
    let _ = wait_at_most(&mut first.0, Instant::now(), Duration::from_secs(30));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (reported, state): (bool, String) = conn
        .query_row("SELECT reported, state FROM bin_states WHERE bin_seconds = 60", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("a checkpoint of the open bin");
    assert!(!reported);
    let saved = serde_json::from_str::<Value>(&state).unwrap()["frames_analysed"].as_u64().unwrap();
    // 2 s of checkpoint interval at 10 frames/s, plus the frames between reading /metrics and the kill.
    assert!(at_kill >= saved && at_kill - saved <= 2 * 10 + 5, "{at_kill} frames analysed, {saved} checkpointed");
    assert!(stored(&db, 60).is_empty(), "nothing reported before the kill");

    let second = live_run(&db, port, &s2, &[]);
    wait_until("the second run's frames", 60, &mut || frames(port, "camera") >= 30.0);
    stop(second);
    assert!(second_of_minute() >= 2, "both runs must fit in one minute; the machine is too slow for this test");
    let after = stored(&db, 60);
    assert_eq!(after.len(), 1, "{after:?}");
    let (_, rev, r) = &after[0];
    assert_eq!(*rev, 1, "never reported before: its first report");
    assert_eq!(r["frames_analysed"].as_u64(), Some(saved + summary_frames(&s2)), "checkpoint + second run");
}

/// An RTSP camera stopped for 3 minutes mid-run: the reports show it, bins without a single frame
/// included, in their coverage and gaps.
#[test]
fn camera_outage_shows_in_coverage_and_gaps() {
    let server = crate::rtsp::RtspServer::start(&crate::common::clip());
    let rtsp_port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let port = free_port();
    let url = server.url();
    let mut child = spawn_run(&url, &db, port, &[]);
    wait_until("frames from the RTSP camera", 60, &mut || frames(port, "camera") >= 50.0);
    drop(server);
    let down_at = SystemTime::now();
    std::thread::sleep(Duration::from_secs(180));
    let _server = crate::rtsp::RtspServer::start_on(&crate::common::clip(), rtsp_port);
    let up_at = SystemTime::now();
    let before = frames(port, "camera");
    // The outage itself is the 3-minute pause above; from here on, readiness: the restart backoff
    // has grown to up to a minute by now.
    wait_until("the camera to come back", 150, &mut || frames(port, "camera") >= before + 50.0);
    stop_child(&mut child.0);

    let reports = stored(&db, 60);
    let empty: Vec<&Value> = reports.iter().map(|r| &r.2).filter(|r| r["frames_analysed"] == 0).collect();
    assert!(empty.len() >= 2, "a 3-minute outage leaves whole 1-minute bins without frames: {reports:#?}");
    for r in &empty {
        assert_eq!((r["covered_seconds"].as_f64(), &r["partial"]), (Some(0.0), &Value::Bool(true)));
        let gaps = r["gaps"].as_array().unwrap();
        assert!((gaps.iter().map(|g| g["seconds"].as_f64().unwrap()).sum::<f64>() - 60.0).abs() < 0.01, "{r}");
        assert!(gaps.iter().all(|g| g["reason"] == "camera_down" || g["reason"] == "camera_restarting"), "{r}");
    }
    // The gaps of the camera being down or restarting after the 50 frames before the outage (5 s of
    // stream: the camera's start-up gap, however long a loaded machine made it, ends before) start at
    // the last frame before the server went and end with the first after it came back (the restart
    // backoff has grown to up to a minute by then); together they cover the outage.
    let t = |s: &str| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).unwrap();
    let mut down = 0.0;
    for (_, _, r) in &reports {
        crate::common::assert_schema("flow.v1.json", r);
        for g in r["gaps"].as_array().unwrap() {
            let (from, to) = (t(g["from"].as_str().unwrap()), t(g["to"].as_str().unwrap()));
            if (g["reason"] == "camera_down" || g["reason"] == "camera_restarting")
                && to > down_at - Duration::from_secs(4)
            {
                assert!(from + Duration::from_secs(2) >= down_at, "{g}");
                assert!(to <= up_at + Duration::from_secs(150), "{g}");
                down += g["seconds"].as_f64().unwrap();
            }
        }
    }
    // From the last frame before the server went (within a second of `down_at`) to the first after it
    // came back (after `up_at`), the camera was down: all of it, its first seconds too (they were "no
    // frames" until the stall timeout said otherwise, 172.5 s of 180 on a busy machine).
    let outage = up_at.duration_since(down_at).unwrap().as_secs_f64();
    assert!(down >= outage - 1.0, "gaps cover the {outage:.1} s outage: {down} s");
    let covered: f64 = reports.iter().map(|r| r.2["covered_seconds"].as_f64().unwrap()).sum();
    // 50 frames before and after at 10 frames/s.
    assert!(covered > 8.0, "the frames before and after are covered: {covered} s");
}

fn stop_child(child: &mut Child) {
    signal(child, "TERM");
    let status = wait_at_most(child, Instant::now(), Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
}

/// Makes an H.264 MPEG-TS clip whose frame size changes mid-stream (a camera rebooting into another
/// mode): 4 s at 640×360, then 4 s at 320×240.
fn size_changing_clip(dir: &Path) -> std::path::PathBuf {
    let part = |w: u32, h: u32, name: &str| {
        let out = dir.join(name);
        let ok = std::process::Command::new("gst-launch-1.0")
            .args(["-q", "videotestsrc", "num-buffers=40", "pattern=ball", "!"])
            .arg(format!("video/x-raw,width={w},height={h},framerate=10/1"))
            .args(["!", "x264enc", "!", "h264parse", "!", "mpegtsmux", "!", "filesink"])
            .arg(format!("location={}", out.display()))
            .status()
            .expect("gst-launch-1.0 (scripts/setup.sh installs gstreamer1.0-tools)");
        assert!(ok.success());
        std::fs::read(out).unwrap()
    };
    let path = dir.join("size-change.ts");
    std::fs::write(&path, [part(640, 360, "a.ts"), part(320, 240, "b.ts")].concat()).unwrap();
    path
}

/// Two cameras, one of which changes its frame size mid-stream: that camera alone stops (its error
/// named), and the healthy camera counts exactly what it counts alone.
#[test]
fn a_faulty_camera_does_not_touch_the_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = size_changing_clip(dir.path());
    let root = repo();
    let camera = |id: &str, uri: &Path| {
        format!(
            "[[camera]]\nid = \"{id}\"\nuri = \"{}\"\ncalibration = \"{}\"\non_inference_busy = \"block\"\n\n",
            uri.display(),
            root.join("calibration/example-street/street.toml").display()
        )
    };
    let site = |name: &str, cams: &[(&str, &Path)]| {
        let path = dir.path().join(name);
        let mut text = format!(
            "site = \"isolation\"\n[detector]\nmodel = \"{}\"\nthreads = 2\n\n[store]\npath = \"{name}.db\"\n\n",
            root.join("models/yolox_nano.toml").display()
        );
        for (id, uri) in cams {
            text.push_str(&camera(id, uri));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let clip = crate::common::clip();
    let run = |cfg: &Path, summary: &Path| {
        let out = crate::common::junction(
            &[
                "run",
                "--config",
                cfg.to_str().unwrap(),
                "--start",
                "2026-11-26T08:00:00Z",
                "--format",
                "json",
                "--summary",
                summary.to_str().unwrap(),
            ],
            Duration::from_secs(400),
        );
        let s: Value = serde_json::from_str(&std::fs::read_to_string(summary).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", out.stderr));
        (out, s)
    };
    let (alone_out, alone) = run(&site("alone.toml", &[("street", &clip)]), &dir.path().join("alone.json"));
    assert_eq!(alone_out.code, Some(0), "{}", alone_out.stderr);
    let (out, both) = run(&site("both.toml", &[("street", &clip), ("rebooted", &bad)]), &dir.path().join("both.json"));
    assert_eq!(out.code, Some(0), "one faulty camera of two does not fail the run:\n{}", out.stderr);
    let lines = |s: &Value| -> Vec<Value> {
        s["lines"].as_array().unwrap().iter().filter(|l| l["camera"] == "street").cloned().collect()
    };
    assert!(!lines(&alone).is_empty());
    assert_eq!(lines(&both), lines(&alone), "the healthy camera's counts");
    let cams = both["cameras"].as_array().unwrap();
    let street = cams.iter().find(|c| c["id"] == "street").unwrap();
    assert_eq!((street["frames"].as_u64(), street["faults"].as_u64()), (alone["frames"].as_u64(), Some(0)));
    let rebooted = cams.iter().find(|c| c["id"] == "rebooted").unwrap();
    assert_eq!(rebooted["faults"], 1, "{rebooted}");
    let err = rebooted["error"].as_str().unwrap_or_default();
    assert!(err.contains("frame_size") && err.contains("320x240"), "{err}");
    assert!(rebooted["frames"].as_u64().unwrap() >= 30, "it counted until the change: {rebooted}");
    // Its bins up to the change are closed as partial and stored.
    let conn = rusqlite::Connection::open(dir.path().join("both.toml.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM reports WHERE camera = 'rebooted' AND partial = 1", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 1);
}

/// The disk fills up under a running box (a real, full tmpfs in a private mount namespace): counting
/// goes on, /readyz fails and the held outputs show in /metrics; when space returns every bin closed
/// meanwhile is written: the store ends with every 10-second bin, none missing.
#[test]
fn disk_full_holds_closed_bins_and_writes_them_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let mnt = t.join("store");
    std::fs::create_dir(&mnt).unwrap();
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    // Inside: a tmpfs for the store, junction on it, the disk filled and freed when the test says so
    // (files in `t`), the store copied out at the end (the mount goes with the namespace).
    let script = r#"
        D="$1"; T="$2"; shift 2
        mount -t tmpfs -o size=8m tmpfs "$D" || exit 90
        "$@" 2> "$T/stderr" &
        J=$!
        echo $J > "$T/pid"
        while [ ! -e "$T/fill" ]; do sleep 0.1; done
        dd if=/dev/zero of="$D/filler" bs=4k 2>/dev/null
        touch "$T/filled"
        while [ ! -e "$T/release" ]; do sleep 0.1; done
        rm -f "$D/filler"
        wait $J; rc=$?
        cp "$D"/j.db* "$T/"
        exit $rc
    "#;
    let db = mnt.join("j.db");
    let exe = env!("CARGO_BIN_EXE_junction");
    let mut child = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh"])
        .args([mnt.to_str().unwrap(), t.to_str().unwrap(), exe])
        .args(["run", "test://ball?fps=10", "--line", "320,60,320,220", "--bins", "10s"])
        .args(["--store", db.to_str().unwrap(), "--http", &http])
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("unshare (util-linux)");
    // A failed assertion must not leave junction running: it is ended by its PID on the way out, and
    // the script let through to its end.
    struct EndOnDrop(std::path::PathBuf);
    impl Drop for EndOnDrop {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("pid")) {
                let _ = std::process::Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
            for f in ["fill", "release"] {
                let _ = std::fs::write(self.0.join(f), "");
            }
        }
    }
    let _guard = EndOnDrop(t.to_owned());
    let ready = || http_get(port, "/readyz").map(|(code, _)| code);
    let held = || {
        let body =
            http_get(port, "/metrics").map(|(_, b)| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        metric_sample(&body, "junction_outputs_held").unwrap_or(-1.0)
    };
    wait_until("frames", 60, &mut || frames(port, "camera") >= 20.0);
    wait_until("ready", 30, &mut || ready() == Some(200));
    std::fs::write(t.join("fill"), "").unwrap();
    wait_until("the disk to fill", 30, &mut || t.join("filled").exists());
    let filled_at = SystemTime::now();
    wait_until("/readyz to fail on the full store", 40, &mut || ready() == Some(503));
    // Two more bins close while the disk is full (25 s of frames at 10/s): held in memory, counting
    // goes on.
    let frames_full = frames(port, "camera");
    wait_until("frames while full", 60, &mut || frames(port, "camera") > frames_full + 250.0);
    assert!(held() >= 2.0, "closed bins held in memory");
    assert_eq!(ready(), Some(503));
    let released_at = SystemTime::now();
    std::fs::write(t.join("release"), "").unwrap();
    wait_until("the held bins to be written", 30, &mut || held() == 0.0);
    wait_until("ready again", 30, &mut || ready() == Some(200));
    let pid: String = std::fs::read_to_string(t.join("pid")).unwrap();
    let killed = std::process::Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap();
    assert!(killed.success());
    let status = wait_at_most(&mut child, Instant::now(), Duration::from_secs(60));
    // Ended: its PID may be reused, so the guard must not signal it.
    let _ = std::fs::remove_file(t.join("pid"));
    let stderr = std::fs::read_to_string(t.join("stderr")).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("cannot write"), "the log says so:\n{stderr}");

    let reports = stored(&t.join("j.db"), 10);
    let starts: Vec<SystemTime> = reports
        .iter()
        .map(|r| humantime::parse_rfc3339_weak(r.2["bin_start"].as_str().unwrap().trim_end_matches('Z')).unwrap())
        .collect();
    assert!(starts.len() >= 4, "{starts:?}");
    let during = starts.iter().filter(|s| **s >= filled_at && **s + Duration::from_secs(10) <= released_at).count();
    assert!(during >= 1, "bins that opened and closed while the disk was full were written: {starts:?}");
    for w in starts.windows(2) {
        assert_eq!(w[1].duration_since(w[0]).unwrap(), Duration::from_secs(10), "a bin is missing: {starts:?}");
    }
}

/// The publisher survives a store error: the database held locked by another process while a report
/// is acknowledged makes marking it fail (busy past 5 s); the publisher starts its loop again with
/// backoff, /metrics shows it, and once the lock goes every report is delivered.
#[test]
fn the_publisher_survives_a_store_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = crate::mqtt::Broker::start(dir.path());
    broker.down();
    let db = dir.path().join("j.db");
    let summary = dir.path().join("s.json");
    let port = free_port();
    let url = broker.url();
    let child = live_run(&db, port, &summary, &["--mqtt", &url, "--bins", "10s"]);
    let metrics =
        || http_get(port, "/metrics").map(|(_, b)| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let unpublished = || -> i64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT COUNT(*) FROM reports WHERE published_at IS NULL", [], |r| r.get(0)).unwrap_or(0)
    };
    wait_until("a report waiting in the outbox", 60, &mut || db.exists() && unpublished() >= 1);
    // Another process's write lock (WAL: reads go on, writes wait 5 s then fail).
    let mut lock = rusqlite::Connection::open(&db).unwrap();
    let tx = lock.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive).unwrap();
    broker.up();
    let errors = |m: &str| metric_sample(m, "junction_errors_total{stage=\"publish\",kind=\"store\"}").unwrap_or(0.0);
    wait_until("the publisher's store error", 60, &mut || errors(&metrics()) >= 1.0);
    tx.commit().unwrap();
    drop(lock);
    wait_until("every report delivered", 60, &mut || unpublished() == 0);
    let m = metrics();
    assert_eq!(metric_sample(&m, "junction_publisher_up"), Some(1.0), "{m}");
    assert_eq!(metric_sample(&m, "junction_mqtt_connected"), Some(1.0), "{m}");
    assert!(metric_sample(&m, "junction_reports_published_total").unwrap_or(0.0) >= 1.0, "{m}");
    stop(child);
}

/// libfaketime (Debian's `faketime`, installed by scripts/setup.sh): with it preloaded, the process's
/// wall clock (`CLOCK_REALTIME`) is the real one plus the offset written in a file, read at every call,
/// while its monotonic clock stays real: an NTP step as the box sees it, without `date -s`.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The wall clock stepped back 10 s and then forward 90 s in the middle of 1-minute bins, under a live
/// RTSP camera: every crossing is in exactly one report (the volumes of all reports add up to the
/// events), every bin from the first to the last is reported, each bin once, every event lies in its
/// bin, and the reports note both steps (the forward one's skipped time as a `clock_step` gap).
#[test]
fn wall_clock_steps_both_ways_lose_and_double_nothing() {
    assert!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} missing: run scripts/setup.sh (apt package faketime)");
    let server = crate::rtsp::RtspServer::start(&crate::common::clip());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let offset = dir.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let url = server.url();
    let args =
        ["run", &url, "--line", "320,60,320,220", "--bins", "1m", "--store", db.to_str().unwrap(), "--http", &http];
    let mut cmd = command(&args, "info");
    cmd.env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = Running(cmd.spawn().expect("junction"));
    // The clip runs at 10 frames/s; crossings at 5.9, 14.3, 16.1, 27.2, 31.2, 46.5, 55.4 and 63.8 s.
    wait_until("20 s of frames", 120, &mut || frames(port, "camera") >= 200.0);
    std::fs::write(&offset, "-10\n").unwrap();
    wait_until("40 s of frames", 120, &mut || frames(port, "camera") >= 400.0);
    std::fs::write(&offset, "+80\n").unwrap();
    wait_until("70 s of frames", 120, &mut || frames(port, "camera") >= 700.0);
    stop(child);
    drop(server);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let events: Vec<String> = conn
        .prepare("SELECT wall FROM events WHERE kind = 'crossing'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(events.len() >= 4, "the clip's crossings: {events:?}");
    let reports = stored(&db, 60);
    let t = |s: &str| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).unwrap();
    let starts: Vec<SystemTime> = reports.iter().map(|r| t(r.2["bin_start"].as_str().unwrap())).collect();
    for w in starts.windows(2) {
        assert_eq!(w[1].duration_since(w[0]).ok(), Some(Duration::from_secs(60)), "every bin reported: {reports:#?}");
    }
    let counted: u64 = reports
        .iter()
        .flat_map(|r| r.2["volumes"].as_array().unwrap().iter().map(|v| v["vehicles"].as_u64().unwrap()))
        .sum();
    assert_eq!(counted, events.len() as u64, "every crossing in one report, once: {reports:#?}");
    for e in &events {
        let at = t(e);
        assert!(
            starts.iter().any(|s| *s <= at && at < *s + Duration::from_secs(60)),
            "event at {e} outside every reported bin {starts:?}"
        );
    }
    let steps: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.2["clock_steps"].as_array().cloned().unwrap_or_default())
        .map(|s| s["seconds"].as_f64().unwrap())
        .collect();
    assert!(steps.iter().any(|s| (s + 10.0).abs() < 1.0), "the step back noted: {steps:?}");
    assert!(steps.iter().any(|s| (s - 90.0).abs() < 1.0), "the step forward noted: {steps:?}");
    let skipped: f64 = reports
        .iter()
        .flat_map(|r| r.2["gaps"].as_array().unwrap().clone())
        .filter(|g| g["reason"] == "clock_step")
        .map(|g| g["seconds"].as_f64().unwrap())
        .sum();
    assert!((skipped - 90.0).abs() < 2.0, "the time skipped forward is a clock_step gap: {skipped} s");
    for (_, rev, r) in &reports {
        assert_eq!(*rev, 1, "each bin reported once: {r}");
        crate::common::assert_schema("flow.v1.json", r);
    }
}

/// Two runs on one store would overwrite each other's checkpoints and reports: the second is refused
/// at once, naming the store and the process that has it; the first runs on.
#[test]
fn a_second_run_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let (port, summary) = (free_port(), dir.path().join("s.json"));
    let first = live_run(&db, port, &summary, &[]);
    wait_until("the first run's frames", 60, &mut || frames(port, "camera") >= 10.0);
    let clip = crate::common::clip();
    let out = crate::common::junction(
        &["run", clip.to_str().unwrap(), "--line", "320,60,320,220", "--store", db.to_str().unwrap()],
        Duration::from_secs(120),
    );
    crate::common::assert_refused(&out, &["j.db", "in use by another junction run", &format!("pid {}", first.0.id())]);
    assert!(frames(port, "camera") >= 10.0, "the first run goes on");
    stop(first);
}

/// A file camera that ends in a run with a live one is done, not late: /readyz answers 200 while the
/// live camera delivers (it stayed 503 for the rest of the run).
#[test]
fn readyz_stays_ready_when_a_file_camera_ends_beside_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.ts");
    let ok = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "num-buffers=20",
            "pattern=ball",
            "!",
            "video/x-raw,width=640,height=360,framerate=10/1",
        ])
        .args(["!", "x264enc", "!", "h264parse", "!", "mpegtsmux", "!", "filesink"])
        .arg(format!("location={}", short.display()))
        .status()
        .expect("gst-launch-1.0");
    assert!(ok.success());
    let port = free_port();
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "site = \"ready\"\n[detector]\nmodel = {:?}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[camera]]\nid = \"live\"\nuri = \"test://ball?fps=10\"\n\n\
             [[camera]]\nid = \"short\"\nuri = {:?}\nstall_timeout_s = 1\n\n[store]\npath = \"j.db\"\n",
            repo().join("models/yolox_nano.toml"),
            short.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = Running(
        command(&["run", "--config", site.to_str().unwrap()], "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the short file's frames", 60, &mut || frames(port, "short") >= 15.0);
    wait_until("the live camera's frames", 60, &mut || frames(port, "live") >= 10.0);
    // Four times the file camera's readiness window after its last frames: an ended camera that still
    // counted would be late by now.
    std::thread::sleep(Duration::from_secs(4));
    let (code, body) = http_get(port, "/readyz").expect("/readyz");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    stop(run);
}
