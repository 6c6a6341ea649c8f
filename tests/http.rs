//! /metrics, /healthz and /readyz scraped over real HTTP from a running `junction run`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_refused, command, http_get, junction, metric_sample, signal, wait_at_most};

/// GET as text: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let (status, body) = http_get(port, path).expect("junction listens");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn metrics_health_and_readiness() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let addr = format!("127.0.0.1:{port}");
    let args =
        ["run", "test://ball?fps=20", "--line", "320,0,320,360", "--store", db.to_str().unwrap(), "--http", &addr];
    let mut child = command(&args, "info").stdout(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("camera opened") {
            break;
        }
    }
    // Ready once the camera has delivered a frame.
    let mut ready = get(port, "/readyz");
    while ready.0 != 200 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
        ready = get(port, "/readyz");
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_owned()));
    // The container health check (no curl in the Jetson image): `junction probe`.
    let probe = |path: &str| junction(&["probe", &format!("http://127.0.0.1:{port}{path}")], Duration::from_secs(30));
    let ok = probe("/healthz");
    assert_eq!((ok.code, ok.stdout.trim()), (Some(0), "ok"), "{}", ok.stderr);
    assert_refused(&probe("/nowhere"), &["probe http://127.0.0.1", "/nowhere", "HTTP 404"]);
    // The console is on (loopback, no password configured): its tiles' snapshots are served here; with
    // a password they need a session (console::login_sessions_csrf_and_rate_limit).
    let (code, _) = get(port, "/snapshot/camera.jpg");
    assert_eq!(code, 200, "the console's snapshot on loopback");
    assert_eq!(get(port, "/api/state").0, 200, "the console's state on loopback without a password");
    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 200);
    let analysed = metric_sample(&metrics, "junction_frames_analysed_total{camera=\"camera\"}").expect(&metrics);
    assert!(analysed > 0.0, "ready means a frame was analysed: {metrics}");
    assert_eq!(metric_sample(&metrics, "junction_stream_up{camera=\"camera\"}"), Some(1.0), "{metrics}");
    assert!(
        metric_sample(&metrics, "junction_stage_duration_seconds_count{stage=\"detect\"}").is_some_and(|n| n > 0.0),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    // A later scrape sees more frames: the counters move.
    let moved = Instant::now();
    while metric_sample(&get(port, "/metrics").1, "junction_frames_analysed_total{camera=\"camera\"}").unwrap()
        <= analysed
    {
        assert!(moved.elapsed() < Duration::from_secs(30), "the frame counter did not move");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Our own child, by its PID.
    signal(&child, "TERM");
    let status = wait_at_most(&mut child, started, Duration::from_secs(60));
    assert!(status.success());
    for _ in lines {}
}

#[test]
fn taken_port_is_refused_before_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let out = crate::common::junction(
        &["run", "test://ball", "--line", "320,0,320,360", "--store", db.to_str().unwrap(), "--http", &addr],
        Duration::from_secs(60),
    );
    crate::common::assert_refused(&out, &["http.listen", &addr]);
    // Nothing listening: the probe says so, in one line, and fails.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{free}/healthz");
    assert_refused(&junction(&["probe", &url, "--timeout", "2"], Duration::from_secs(30)), &[&url, "refused"]);
}

/// /snapshot/<camera>.jpg returns a JPEG of the annotated frame that GStreamer decodes; off by default.
#[test]
fn snapshot_is_a_decodable_jpeg() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let clip = crate::common::clip();
    let mut child = crate::common::snapshot_run(clip.to_str().unwrap(), &db, port);
    let started = Instant::now();
    let mut jpeg = (0, Vec::new());
    while started.elapsed() < Duration::from_secs(60) {
        // Nothing until junction listens.
        jpeg = http_get(port, "/snapshot/camera.jpg").unwrap_or_default();
        if jpeg.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(jpeg.0, 200, "{}", String::from_utf8_lossy(&jpeg.1));
    let path = dir.path().join("snap.jpg");
    std::fs::write(&path, &jpeg.1).unwrap();
    let decoded = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", path.display()))
        .args(["!", "jpegdec", "!", "fakesink"])
        .status()
        .unwrap();
    assert!(decoded.success(), "GStreamer could not decode the snapshot");
    assert_eq!(http_get(port, "/snapshot/nosuchcamera.jpg").expect("junction listens").0, 404);
    let _ = child.0.kill();
    let _ = wait_at_most(&mut child.0, started, Duration::from_secs(60));
}

/// A burst of 50 concurrent snapshot requests (render + JPEG encode each) does not stall health
/// checks: the encodes run on a blocking thread, one at a time, off the task that answers /healthz.
/// 1080p frames: encoded on the answering task instead, the burst held /healthz for most of a second
/// (348 ms measured; 5–7 ms now; at 640×360 it was 70–85 ms).
#[test]
fn snapshot_burst_leaves_healthz_answering() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let mut child = crate::common::snapshot_run("test://ball?width=1920&height=1080&fps=10", &db, port);
    let started = Instant::now();
    while http_get(port, "/snapshot/camera.jpg").is_none_or(|r| r.0 != 200) {
        assert!(started.elapsed() < Duration::from_secs(60), "no snapshot");
        std::thread::sleep(Duration::from_millis(100));
    }
    let go = std::sync::Arc::new(std::sync::Barrier::new(51));
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                http_get(port, "/snapshot/camera.jpg").map(|r| r.0)
            })
        })
        .collect();
    go.wait();
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while !burst.iter().all(|t| t.is_finished()) || answered < 5 {
        let t = Instant::now();
        let (code, body) = http_get(port, "/healthz").expect("healthz");
        assert_eq!((code, body.as_slice()), (200, &b"ok\n"[..]));
        slowest = slowest.max(t.elapsed());
        answered += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let codes: Vec<Option<u16>> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.iter().all(|c| *c == Some(200)), "{codes:?}");
    assert!(slowest < Duration::from_millis(100), "/healthz took {slowest:?} during the burst ({answered} checks)");
    signal(&child.0, "TERM");
    assert!(wait_at_most(&mut child.0, started, Duration::from_secs(60)).success());
}
