//! The operator console and hot reload of the rules: the reload counted against runs with fixed rules,
//! the login, session and CSRF rules over real HTTP, the loopback rule, and a real browser
//! (Debian's chromium driven by Selenium from the project's venv) against a running box.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Running, command, free_port, junction, repo, signal};

const START: &str = "2026-11-26T08:00:00Z";

/// A site in `dir` with the bundled clip as camera `street` and `calibration` as its rules.
fn site(dir: &Path, name: &str, calibration: &str, realtime: bool, http: Option<(u16, Option<&str>)>) -> PathBuf {
    let mut text = format!(
        "site = \"console-test\"\n[detector]\nmodel = \"{}\"\nprovider = \"cpu\"\n[[camera]]\nid = \"street\"\n\
         uri = \"{}\"\ncalibration = \"{calibration}\"\nrealtime = {realtime}\ntiles = [1, 1]\n[aggregate]\nbins = [\"1m\", \"15m\"]\n\
         [store]\npath = \"{name}.db\"\ncheckpoint_s = 5\n",
        repo().join("models/yolox_nano.toml").display(),
        crate::common::clip().display(),
    );
    if let Some((port, hash)) = http {
        text.push_str(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"));
        if let Some(h) = hash {
            text.push_str(&format!("password_hash = \"{h}\"\n"));
        }
    }
    let path = dir.join(format!("{name}.site.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Switches `junction collect` on for the site's camera.
fn allow_collect(site: &Path) {
    let text =
        std::fs::read_to_string(site).unwrap().replacen("tiles = [1, 1]\n", "tiles = [1, 1]\ncollect = true\n", 1);
    assert!(text.contains("collect = true"));
    std::fs::write(site, text).unwrap();
}

/// The example calibration with a second count line x200 and the parking zone made smaller.
fn final_rules(original: &str) -> String {
    let mut s = original.replace(
        "polygon = [[0, 60], [300, 60], [300, 135], [0, 135]]",
        "polygon = [[0, 60], [250, 60], [250, 135], [0, 135]]",
    );
    assert_ne!(s, original, "the example's zone moved: update this test");
    s.push_str(
        "\n[[line]]\nid = \"x200\"\npoints = [[200, 60], [200, 220]]\nin_side = \"left\"\nanchor = \"centre\"\n",
    );
    s
}

/// Lines of a child's stream as they come, collected on their own thread.
type Collected = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn collect(stream: impl std::io::Read + Send + 'static) -> (Collected, std::thread::JoinHandle<()>) {
    let lines: Collected = Default::default();
    let sink = lines.clone();
    let t = std::thread::spawn(move || {
        for l in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    (lines, t)
}

/// Waits until a collected line satisfies `pred` (60 s at most: then the test fails, naming `what`).
fn wait_line(lines: &Collected, what: &str, pred: impl Fn(&str) -> bool) {
    let t = Instant::now();
    while !lines.lock().unwrap().iter().any(|l| pred(l)) {
        assert!(t.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines(stdout: &str, kind: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["type"] == kind).collect()
}

/// (pts, track, direction, class) of the crossings of `line`.
fn crossings(events: &[Value], line: &str) -> Vec<(f64, u64, String, String)> {
    events
        .iter()
        .filter(|e| e["kind"] == "crossing" && e["rule"] == line)
        .map(|e| {
            (
                e["pts_s"].as_f64().unwrap(),
                e["track"].as_u64().unwrap(),
                e["direction"].as_str().unwrap().to_owned(),
                e["class"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn volume(report: &Value, line: &str) -> u64 {
    report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["counter"] == line)
        .map(|v| v["vehicles"].as_u64().unwrap())
        .sum()
}

/// A fixed-rules run of the whole clip: its events and reports.
fn fixed_run(dir: &Path, name: &str, calibration: &str) -> (Vec<Value>, Vec<Value>) {
    let cfg = site(dir, name, calibration, false, None);
    let out = junction(
        &["run", "--config", cfg.to_str().unwrap(), "--start", START, "--format", "json"],
        Duration::from_secs(300),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    (lines(&out.stdout, "event"), lines(&out.stdout, "report"))
}

/// Rules swapped mid-stream (SIGHUP after the file changed): the unchanged line counts exactly what
/// it counts with the old rules all along, the added line exactly what a run with the final rules
/// counts from the reload on, and the bin holds both; the changed zone and the added line are listed
/// in the report closed at the reload (partial, reason rules_changed) and in the continued bin.
#[test]
fn hot_reload_counts_add_up_to_the_runs_with_fixed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo().join("calibration/example-street/street.toml")).unwrap();
    std::fs::write(dir.path().join("old.toml"), &original).unwrap();
    std::fs::write(dir.path().join("final.toml"), final_rules(&original)).unwrap();
    std::fs::write(dir.path().join("live.toml"), &original).unwrap();

    // The reloaded run plays the clip at its own rate, so that the reload lands mid-stream.
    let cfg = site(dir.path(), "reload", "live.toml", true, None);
    let mut child = Running(
        command(&["run", "--config", cfg.to_str().unwrap(), "--start", START, "--format", "json"], "info")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (out, reader) = collect(child.0.stdout.take().unwrap());
    // The reload lands mid-stream: after the crossing at 27.2 s of the clip is out, however slowly the
    // machine plays it (a fixed pause of wall time landed anywhere from 20 to 35 s of the clip).
    wait_line(&out, "a crossing 27 s into the clip", |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["type"] == "event" && v["pts_s"].as_f64().is_some_and(|p| p >= 27.0))
    });
    std::fs::write(dir.path().join("live.toml"), final_rules(&original)).unwrap();
    signal(&child.0, "HUP");
    let started = Instant::now();
    let status = crate::common::wait_at_most(&mut child.0, started, Duration::from_secs(120));
    assert!(status.success());
    reader.join().unwrap();
    let stdout = out.lock().unwrap().join("\n");
    let (events, reports) = (lines(&stdout, "event"), lines(&stdout, "report"));

    // The report the reload closed: where the old rules end.
    let closed: Vec<&Value> = reports
        .iter()
        .filter(|r| r["gaps"].as_array().unwrap().iter().any(|g| g["reason"] == "rules_changed"))
        .collect();
    assert_eq!(closed.len(), 2, "one per bin length: {closed:#?}");
    let changes = &closed[0]["rule_changes"];
    let listed: Vec<(String, String, String)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["kind"].as_str().unwrap().into(), c["id"].as_str().unwrap().into(), c["change"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(
        listed,
        vec![("line".into(), "x200".into(), "added".into()), ("zone".into(), "upper-bays".into(), "changed".into())]
    );
    assert_eq!(closed[0]["partial"], true);
    // The reload instant in stream time: the clip's wall clock is START + pts.
    let at = humantime::parse_rfc3339(changes[0]["at"].as_str().unwrap()).unwrap();
    let t = at.duration_since(humantime::parse_rfc3339(START).unwrap()).unwrap().as_secs_f64();
    assert!((20.0..70.0).contains(&t), "reload at {t} s of the clip");

    let dir_path = dir.path();
    let (old_events, old_reports) = fixed_run(dir_path, "old", "old.toml");
    let (final_events, _) = fixed_run(dir_path, "final", "final.toml");

    // The unchanged line did not notice: every crossing, before and after the reload.
    let x320 = crossings(&events, "x320");
    assert!(x320.len() >= 6, "{x320:?}");
    assert_eq!(x320, crossings(&old_events, "x320"));
    assert!(x320.iter().any(|c| c.0 > t) && x320.iter().any(|c| c.0 < t), "crossings on both sides of {t}: {x320:?}");
    // The new line counts what the final rules count from the reload on (one frame of grace: its side
    // of the new line is learnt on the first frame after the reload).
    let x200 = crossings(&events, "x200");
    let x200_final: Vec<_> = crossings(&final_events, "x200").into_iter().filter(|c| c.0 > t + 0.2).collect();
    assert!(!x200_final.is_empty(), "no vehicle crosses x200 after {t} s: move the reload earlier");
    assert_eq!(x200, x200_final);

    // The 15-minute bin: closed at the reload with the old rules' counts, continued one revision
    // higher; its last revision holds x320 all along and x200 from the reload.
    let bin15: Vec<&Value> = reports.iter().filter(|r| r["bin_seconds"] == 900).collect();
    let last = bin15.last().unwrap();
    let at_reload = closed.iter().find(|r| r["bin_seconds"] == 900).unwrap();
    assert_eq!(last["revision"].as_u64().unwrap(), at_reload["revision"].as_u64().unwrap() + 1);
    let after = x320.iter().filter(|c| c.0 > t).count() as u64;
    assert_eq!(volume(at_reload, "x320") + after, volume(last, "x320"));
    let old15 = old_reports.iter().rfind(|r| r["bin_seconds"] == 900).unwrap();
    assert_eq!(volume(last, "x320"), volume(old15, "x320"));
    assert_eq!(volume(last, "x200"), x200.len() as u64);
    assert_eq!(volume(at_reload, "x200"), 0);
    assert_eq!(last["rule_changes"], *changes);
    assert_eq!(last["partial"], true, "a rule counted part of the bin");
    for r in [*at_reload, *last] {
        let mut r = r.clone();
        r.as_object_mut().unwrap().remove("type");
        crate::common::assert_schema("flow.v1.json", &r);
    }
}

/// A bad file on SIGHUP is refused as a whole: the running rules stay and keep counting.
#[test]
fn a_bad_reload_is_refused_and_the_rules_stay() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo().join("calibration/example-street/street.toml")).unwrap();
    std::fs::write(dir.path().join("live.toml"), &original).unwrap();
    let cfg = site(dir.path(), "bad", "live.toml", true, None);
    let mut child = Running(
        command(&["run", "--config", cfg.to_str().unwrap(), "--start", START, "--format", "json"], "info")
            .spawn()
            .unwrap(),
    );
    let (out, out_thread) = collect(child.0.stdout.take().unwrap());
    let (err, err_thread) = collect(child.0.stderr.take().unwrap());
    wait_line(&err, "the camera open", |l| l.contains("camera opened"));
    std::fs::write(
        dir.path().join("live.toml"),
        original.replace("points = [[320, 60], [320, 220]]", "points = [[320, 60], [900, 220]]"),
    )
    .unwrap();
    signal(&child.0, "HUP");
    wait_line(&err, "the reload refused", |l| l.contains("reload refused"));
    // Counting goes on under the old rules: another crossing comes after the refusal.
    let before = out.lock().unwrap().len();
    let t = Instant::now();
    while !out.lock().unwrap()[before..].iter().any(|l| l.contains("\"type\":\"event\"") && l.contains("\"crossing\""))
    {
        assert!(t.elapsed() < Duration::from_secs(120), "no crossing after the refusal");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child.0, "TERM");
    let status = crate::common::wait_at_most(&mut child.0, Instant::now(), Duration::from_secs(60));
    assert!(status.success());
    out_thread.join().unwrap();
    err_thread.join().unwrap();
    let (stdout, stderr) = (out.lock().unwrap().join("\n"), err.lock().unwrap().join("\n"));
    assert!(stderr.contains("reload refused") && stderr.contains("line[0] (x320).points"), "{stderr}");
    let reports = lines(&stdout, "report");
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|r| r.get("rule_changes").is_none()), "nothing changed");
}

/// One HTTP/1.1 request on 127.0.0.1: (status, head, body).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn hash(password: &str) -> String {
    let mut child = command(&["hash-password"], "warn").stdin(Stdio::piped()).spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn wait_for(port: u16) {
    let t = Instant::now();
    while crate::common::http_get(port, "/healthz").is_none() {
        assert!(t.elapsed() < Duration::from_secs(60), "the console never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Login, session cookie, CSRF and the rate limit, over real HTTP against a running box.
#[test]
fn login_sessions_csrf_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("calibration/example-street/street.toml"), dir.path().join("cal.toml")).unwrap();
    let port = free_port();
    let h = hash("correct horse battery");
    let cfg = site(dir.path(), "auth", "cal.toml", true, Some((port, Some(&h))));
    let _run = Running(
        command(&["run", "--config", cfg.to_str().unwrap()], "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    // Health and metrics stay open; everything else needs a session.
    assert_eq!(request(port, "GET", "/metrics", &[], "").0, 200);
    assert_eq!(request(port, "GET", "/", &[], "").0, 200, "the page itself (the login form)");
    for path in [
        "/api/state",
        "/api/live",
        "/snapshot/street.jpg",
        "/api/cameras/street/rules",
        "/api/export/tmc.csv?from=2026-11-26T08:00:00Z&to=2026-11-26T09:00:00Z",
    ] {
        assert_eq!(request(port, "GET", path, &[], "").0, 401, "{path}");
    }
    let json = [("Content-Type", "application/json")];
    let (code, _, body) = request(port, "POST", "/api/login", &json, r#"{"password":"wrong horse"}"#);
    assert_eq!((code, body.trim()), (401, "wrong password"));
    let (code, head, body) = request(port, "POST", "/api/login", &json, r#"{"password":"correct horse battery"}"#);
    assert_eq!(code, 200, "{body}");
    let cookie_line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a cookie");
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"), "{cookie_line}");
    let cookie = cookie_line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_owned();
    let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf"].as_str().unwrap().to_owned();
    let with_cookie = [("Cookie", cookie.as_str())];
    assert_eq!(request(port, "GET", "/api/state", &with_cookie, "").0, 200);
    // Writes: the CSRF token, and no foreign Origin.
    let rules = request(port, "GET", "/api/cameras/street/rules", &with_cookie, "").2;
    let post = |extra: &[(&str, &str)]| {
        let mut hs = vec![("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
        hs.extend_from_slice(extra);
        request(port, "POST", "/api/cameras/street/rules?check=true", &hs, &rules).0
    };
    assert_eq!(post(&[]), 403, "no CSRF token");
    assert_eq!(post(&[("X-CSRF-Token", "0000")]), 403, "a wrong token");
    assert_eq!(post(&[("X-CSRF-Token", &csrf), ("Origin", "http://evil.example")]), 403, "another site");
    assert_eq!(post(&[("X-CSRF-Token", &csrf)]), 200);
    // A camera without `collect = true` is never collected from, whoever asks.
    let hs = [("Cookie", cookie.as_str()), ("Content-Type", "application/json"), ("X-CSRF-Token", csrf.as_str())];
    let (code, _, body) = request(port, "POST", "/api/cameras/street/collect", &hs, r#"{"minutes":1}"#);
    assert_eq!((code, body.trim()), (403, "collect is off for this camera: set collect = true in its [[camera]]"));
    // Five wrong passwords from one address, then even the right one waits.
    for _ in 0..4 {
        assert_eq!(request(port, "POST", "/api/login", &json, r#"{"password":"guess"}"#).0, 401);
    }
    let (code, head, _) = request(port, "POST", "/api/login", &json, r#"{"password":"correct horse battery"}"#);
    assert_eq!(code, 429, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    // The existing session is not touched by the lock-out.
    assert_eq!(request(port, "GET", "/api/state", &with_cookie, "").0, 200);
}

/// The console's collect action over real HTTP: refused without the CSRF token, for an unknown
/// camera, a length out of 1–60 minutes or unknown fields, and while one runs; once started, it saves
/// frames into `collect/<camera>` beside the store, a set pycocotools-shaped with its images.
#[test]
fn the_console_collects_frames_for_labelling_on_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("calibration/example-street/street.toml"), dir.path().join("cal.toml")).unwrap();
    let port = free_port();
    let cfg = site(dir.path(), "collect", "cal.toml", true, Some((port, None)));
    allow_collect(&cfg);
    let mut run = Running(
        command(&["run", "--config", cfg.to_str().unwrap()], "info")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    let csrf = serde_json::from_str::<Value>(&request(port, "GET", "/api/session", &[], "").2).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |camera: &str, body: &str, token: &str| {
        let hs = [("Content-Type", "application/json"), ("X-CSRF-Token", token)];
        request(port, "POST", &format!("/api/cameras/{camera}/collect"), &hs, body)
    };
    assert_eq!(post("street", r#"{"minutes":1}"#, "0000").0, 403, "a wrong CSRF token");
    assert_eq!(post("nope", r#"{"minutes":1}"#, &csrf).0, 404);
    for bad in [r#"{"minutes":0}"#, r#"{"minutes":61}"#, r#"{"minutes":1,"frames":1000000}"#, r#"{"minutes":-1}"#] {
        assert_eq!(post("street", bad, &csrf).0, 422, "{bad}");
    }
    let (code, _, body) = post("street", r#"{"minutes":1}"#, &csrf);
    assert_eq!(code, 202, "{body}");
    let started: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((started["camera"].as_str(), started["running"].as_bool()), (Some("street"), Some(true)));
    // One at a time (the first may already have read the whole file: then a second may start).
    let again = post("street", r#"{"minutes":1}"#, &csrf).0;
    let state = || serde_json::from_str::<Value>(&request(port, "GET", "/api/state", &[], "").2).unwrap();
    assert!(again == 409 || state()["collecting"]["running"] == false, "{again}");
    let t = Instant::now();
    let done = loop {
        let c = state()["collecting"].clone();
        if c["running"] == false {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "the collection never ended: {c}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(done["error"].is_null(), "{done}");
    let saved = done["saved"].as_u64().unwrap();
    assert!(saved >= 5, "a 75 s clip, frames 5 s apart at least: {done}");
    let folder = dir.path().join("collect/street");
    let set: Value = serde_json::from_str(&std::fs::read_to_string(folder.join("annotations.json")).unwrap()).unwrap();
    let images = set["images"].as_array().unwrap();
    assert_eq!(images.len() as u64, done["total"].as_u64().unwrap());
    assert!(images.iter().all(|i| folder.join("images").join(i["file_name"].as_str().unwrap()).is_file()));
    assert!(!set["annotations"].as_array().unwrap().is_empty());
    signal(&run.0, "TERM");
    let status = crate::common::wait_at_most(&mut run.0, Instant::now(), Duration::from_secs(60));
    assert!(status.success());
}

/// The one-command demo: with `--stay` the console and metrics stay up after the last file ended,
/// until SIGTERM (exit 0); the page's icon is served; `--stay` without an HTTP endpoint is refused.
#[test]
fn stay_keeps_the_console_up_after_the_files_end() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let clip = crate::common::clip();
    let store = dir.path().join("stay.db");
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "run",
        clip.to_str().unwrap(),
        "--line",
        "320,60,320,220",
        "--http",
        &listen,
        "--stay",
        "--store",
        store.to_str().unwrap(),
    ];
    let mut run = Running(command(&args, "info").stdout(Stdio::null()).spawn().unwrap());
    let (err, _reader) = collect(run.0.stderr.take().unwrap());
    wait_line(&err, "the streams' end with --stay", |l| l.contains("the HTTP endpoint stays up until SIGINT/SIGTERM"));
    assert!(run.0.try_wait().unwrap().is_none(), "the box exited after the stream ended");
    assert_eq!(crate::common::http_get(port, "/healthz").map(|r| r.0), Some(200));
    let (code, head, body) = request(port, "GET", "/favicon.svg", &[], "");
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("image/svg+xml") && body.starts_with("<svg"), "{head}");
    assert!(request(port, "GET", "/", &[], "").2.contains("href=\"/favicon.svg\""));
    signal(&run.0, "TERM");
    let status = crate::common::wait_at_most(&mut run.0, Instant::now(), Duration::from_secs(60));
    assert!(status.success());
    let out = junction(
        &["run", clip.to_str().unwrap(), "--line", "320,60,320,220", "--stay", "--store", store.to_str().unwrap()],
        Duration::from_secs(60),
    );
    crate::common::assert_refused(&out, &["--stay", "--http"]);
}

/// Peak resident memory of a process so far (`VmHWM`), MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches("kB").trim();
    kb.parse::<f64>().unwrap() / 1024.0
}

/// 400 wrong passwords at once from one address: the attempts are counted before hashing, so at most
/// the limit (5) are checked by Argon2 and answered 401, the rest 429 (limited) or 503 (hashing busy);
/// hashing is bounded, so the box's peak memory stays within 100 MB of idle (it was 1.2 GB more: one
/// 19 MiB Argon2 per blocking thread).
#[test]
fn concurrent_bad_logins_reach_argon2_at_most_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("calibration/example-street/street.toml"), dir.path().join("cal.toml")).unwrap();
    let port = free_port();
    let h = hash("correct horse battery");
    let cfg = site(dir.path(), "burst", "cal.toml", true, Some((port, Some(&h))));
    let run = Running(
        command(&["run", "--config", cfg.to_str().unwrap()], "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    // Idle: the box running (model loaded, frames analysed), no login yet.
    let analysed = || {
        let body = crate::common::http_get(port, "/metrics").map(|(_, b)| String::from_utf8_lossy(&b).into_owned());
        crate::common::metric_sample(&body.unwrap_or_default(), "junction_frames_analysed_total{camera=\"street\"}")
            .unwrap_or(0.0)
    };
    let t = Instant::now();
    while analysed() < 50.0 {
        assert!(t.elapsed() < Duration::from_secs(120), "no frames analysed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let idle = peak_rss_mb(run.0.id());
    let n = 400;
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let json = [("Content-Type", "application/json")];
                request(port, "POST", "/api/login", &json, r#"{"password":"wrong horse"}"#).0
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let count = |c: u16| codes.iter().filter(|&&x| x == c).count();
    assert!(codes.iter().all(|c| [401, 429, 503].contains(c)), "{codes:?}");
    assert!((1..=5).contains(&count(401)), "{} of {n} reached Argon2 (limit 5): {codes:?}", count(401));
    let peak = peak_rss_mb(run.0.id());
    eprintln!(
        "400 concurrent bad logins: {} answered 401 (reached Argon2), {} 429, {} 503; peak RSS {peak:.0} MB, idle {idle:.0} MB",
        count(401),
        count(429),
        count(503)
    );
    assert!(peak - idle <= 100.0, "peak RSS {peak:.0} MB against {idle:.0} MB idle");
}

/// Without a password the console refuses a non-loopback address, saying why.
#[test]
fn no_console_off_loopback_without_a_password() {
    let out = junction(
        &["run", crate::common::clip().to_str().unwrap(), "--line", "320,60,320,220", "--http", "0.0.0.0:9"],
        Duration::from_secs(60),
    );
    assert_ne!(out.code, Some(0));
    let line = out.error_line();
    assert!(line.contains("http.listen") && line.contains("non-loopback") && line.contains("password"), "{line}");
}

/// The browser test: Debian's chromium, driven by Selenium (tests/console_browser.py, in .venv),
/// against `junction run` on the bundled clip with a password: wrong password refused, login, the
/// tile comes up, a counter rises, a new line drawn with the mouse is saved and its crossings show in
/// the event stream, all in one process started once. Screenshots go to $JUNCTION_SCREENSHOTS when
/// set.
#[test]
fn browser_console() {
    let python = repo().join(".venv/bin/python");
    assert!(python.exists(), "run scripts/setup.sh first (.venv)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("calibration/example-street/street.toml"), dir.path().join("cal.toml")).unwrap();
    let port = free_port();
    let password = "correct horse battery";
    let cfg = site(dir.path(), "browser", "cal.toml", true, Some((port, Some(&hash(password)))));
    allow_collect(&cfg);
    let mut run = Running(
        command(&["run", "--config", cfg.to_str().unwrap(), "--format", "json"], "info")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = run.0.id();
    let stdout = run.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    wait_for(port);
    let shots = std::env::var("JUNCTION_SCREENSHOTS").unwrap_or_default();
    let out = std::process::Command::new(&python)
        .arg(repo().join("tests/console_browser.py"))
        .args(["--url", &format!("http://127.0.0.1:{port}/"), "--password", password, "--screenshots", &shots])
        .output()
        .expect("python");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser test failed:\n{log}");
    // One process all along (started once, never restarted): its own output has the reload and the
    // new line's crossings.
    assert_eq!(run.0.id(), pid);
    if run.0.try_wait().unwrap().is_none() {
        signal(&run.0, "TERM");
    }
    let status = crate::common::wait_at_most(&mut run.0, Instant::now(), Duration::from_secs(60));
    assert!(status.success());
    let stdout = reader.join().unwrap();
    // The line the browser drew is in the calibration file, and the box counted on it.
    let saved = std::fs::read_to_string(dir.path().join("cal.toml")).unwrap();
    let drawn =
        log.lines().find_map(|l| l.strip_prefix("drawn line: ")).expect("the script names its line").trim().to_owned();
    assert!(saved.contains(&format!("id = \"{drawn}\"")), "{saved}");
    assert!(dir.path().join("cal.toml.prev").exists());
    let on_drawn = stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event" && v["kind"] == "crossing" && v["rule"] == drawn.as_str())
        .count();
    assert!(on_drawn >= 1, "no crossing of {drawn} in the run's output");
    let reloaded = stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "report")
        .any(|r| r["rule_changes"].as_array().is_some_and(|c| c.iter().any(|c| c["id"] == drawn.as_str())));
    assert!(reloaded, "no report lists {drawn} as added");
}

/// DNS rebinding: a web page on another name, resolved to 127.0.0.1, must not drive a password-less
/// loopback console. Requests naming a host other than an address, `localhost` or a configured name
/// (`[http] allowed_hosts`) are refused; /metrics and the health checks stay open to any name.
#[test]
fn a_foreign_host_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "site = \"hosts\"\n[detector]\nmodel = {:?}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\nallowed_hosts = [\"box-7.city.example\"]\n\n\
             [[camera]]\nid = \"live\"\nuri = \"test://ball?fps=10\"\n\n[store]\npath = \"j.db\"\n",
            repo().join("models/yolox_nano.toml")
        ),
    )
    .unwrap();
    let _run = Running(
        command(&["run", "--config", site.to_str().unwrap()], "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    let get = |host: &str, path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        raw.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
    };
    for path in ["/", "/api/session", "/api/state", "/snapshot/live.jpg"] {
        assert_eq!(get(&format!("rebind.attacker.example:{port}"), path), 403, "{path}");
    }
    for host in
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("box-7.city.example:{port}"), "[::1]".into()]
    {
        assert_eq!(get(&host, "/api/session"), 200, "{host}");
    }
    assert_eq!(get("rebind.attacker.example", "/metrics"), 200, "monitoring by any name");
}

/// Under the shipped systemd unit everything but the state directory is read-only (`ProtectSystem=
/// strict`, `DynamicUser`): rules kept there cannot be saved, and the editor says so, naming the file
/// and where to keep them (409, the file untouched), instead of a bare 500; kept in a writable folder,
/// as the unit's install lines put them, the same save works. The read-only folder is a real
/// read-only bind mount in a private mount namespace.
#[test]
fn the_editor_says_where_rules_can_be_saved_under_a_read_only_system() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo().join("calibration/example-street/street.toml")).unwrap();
    for (name, read_only, want) in [("etc", true, 409), ("state", false, 200)] {
        let rules_dir = dir.path().join(name);
        std::fs::create_dir_all(&rules_dir).unwrap();
        let cal = rules_dir.join("street.toml");
        std::fs::write(&cal, &example).unwrap();
        let port = free_port();
        let site = dir.path().join(format!("{name}.site.toml"));
        std::fs::write(
            &site,
            format!(
                "site = \"ro\"\n[detector]\nmodel = {:?}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[[camera]]\nid = \"street\"\n\
                 uri = \"test://ball?fps=10\"\ncalibration = {:?}\n\n[store]\npath = \"{name}.db\"\n",
                repo().join("models/yolox_nano.toml"),
                cal
            ),
        )
        .unwrap();
        let script = r#"D="$1"; RO="$2"; shift 2
            if [ "$RO" = true ]; then mount --bind "$D" "$D" && mount -o remount,bind,ro "$D" || exit 90; fi
            exec "$@""#;
        let exe = env!("CARGO_BIN_EXE_junction");
        let _run = Running(
            std::process::Command::new("unshare")
                .args(["-rm", "sh", "-c", script, "sh"])
                .args([rules_dir.to_str().unwrap(), if read_only { "true" } else { "false" }, exe])
                .args(["run", "--config", site.to_str().unwrap()])
                .current_dir(dir.path())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("unshare (util-linux)"),
        );
        wait_for(port);
        let csrf = serde_json::from_str::<Value>(&request(port, "GET", "/api/session", &[], "").2).unwrap()["csrf"]
            .as_str()
            .unwrap()
            .to_owned();
        let rules = request(port, "GET", "/api/cameras/street/rules", &[], "").2;
        let hs = [("Content-Type", "application/json"), ("X-CSRF-Token", csrf.as_str())];
        let (code, _, body) = request(port, "POST", "/api/cameras/street/rules", &hs, &rules);
        assert_eq!(code, want, "{name}: {body}");
        if read_only {
            assert!(
                body.contains("street.toml") && body.contains("read-only") && body.contains("/var/lib/junction"),
                "{body}"
            );
            assert_eq!(std::fs::read_to_string(&cal).unwrap(), example, "untouched");
        }
    }
}

/// The console over HTTPS (`[http] tls_cert`/`tls_key`, a CA and a certificate for 127.0.0.1 made by
/// the test; curl checks it against that CA): health answers, the login's session cookie is `Secure`,
/// plain HTTP to the port gets no HTTP answer; and a password off loopback needs nothing more.
#[test]
fn the_console_serves_https_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::mqtt::make_ca(d, "ca");
    crate::mqtt::make_server_cert(d, "ca");
    let port = free_port();
    let h = hash("correct horse battery");
    let site = |listen: &str| {
        let path = d.join("site.toml");
        std::fs::write(
            &path,
            format!(
                "site = \"tls\"\n[detector]\nmodel = {:?}\n\n[http]\nlisten = \"{listen}\"\npassword_hash = \"{h}\"\n\
                 tls_cert = \"server.pem\"\ntls_key = \"server.key\"\n\n[[camera]]\nid = \"live\"\nuri = \"test://ball?fps=10\"\n\n\
                 [store]\npath = \"j.db\"\n",
                repo().join("models/yolox_nano.toml")
            ),
        )
        .unwrap();
        path
    };
    let cfg = site(&format!("127.0.0.1:{port}"));
    let log = std::fs::File::create(d.join("stderr")).unwrap();
    let _run = Running(
        command(&["run", "--config", cfg.to_str().unwrap()], "warn").stdout(Stdio::null()).stderr(log).spawn().unwrap(),
    );
    let ca = d.join("ca.pem");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-i", "--max-time", "20", "--cacert", ca.to_str().unwrap()])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let t = Instant::now();
    while !curl(&[&url("/healthz")]).contains("ok") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no HTTPS answer; junction's stderr:\n{}",
            std::fs::read_to_string(d.join("stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let login = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"password":"correct horse battery"}"#,
        &url("/api/login"),
    ]);
    let cookie = login.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(login.starts_with("HTTP/1.1 200") && cookie.contains("HttpOnly") && cookie.contains("Secure"), "{login}");
    assert_eq!(request(port, "GET", "/healthz", &[], "").0, 0, "plain HTTP on the HTTPS port");
    let out = junction(&["check-config", "--config", site("0.0.0.0:9464").to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
