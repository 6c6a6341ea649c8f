//! The test clip served over RTSP on 127.0.0.1 by gstreamer-rtsp-server, read by `junction detect`.

use std::time::Duration;

use gstreamer as gst;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

use crate::common::{clip, junction};

/// An RTSP server on 127.0.0.1 (a free port) serving `clip` at /clip, on its own GLib main loop.
/// Stops when dropped.
pub struct RtspServer {
    pub port: i32,
    server: rtsp::RTSPServer,
    main_loop: gst::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RtspServer {
    pub fn start(clip: &std::path::Path) -> Self {
        Self::start_on(clip, 0)
    }

    /// On a given port (0: any free one).
    pub fn start_on(clip: &std::path::Path, port: i32) -> Self {
        gst::init().unwrap();
        let context = gst::glib::MainContext::new();
        let main_loop = gst::glib::MainLoop::new(Some(&context), false);
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( filesrc location={} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )",
            clip.display()
        ));
        factory.set_shared(true);
        server.mount_points().unwrap().add_factory("/clip", factory);
        server.attach(Some(&context)).unwrap();
        let port = server.bound_port();
        assert!(port > 0, "RTSP server did not bind");
        let ml = main_loop.clone();
        let thread = std::thread::spawn(move || ml.run());
        Self { port, server, main_loop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/clip", self.port)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        // Close every client session (which stops its media), then the server's own loop.
        self.server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn detect_reads_rtsp() {
    let server = RtspServer::start(&clip());
    // The server plays the clip in real time (about 10 fps): 30 frames take about 3 s.
    let out = junction(&["detect", &server.url(), "--frames", "30"], Duration::from_secs(90));
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let lines = out.lines("frame");
    assert!(lines.len() >= 10, "only {} frames analysed", lines.len());
    assert!(lines.iter().all(|l| l["width"] == 640 && l["height"] == 360));
    // The clip shows parked and moving cars from its first second on: the model must find them over RTSP.
    let cars =
        lines.iter().flat_map(|l| l["detections"].as_array().unwrap().iter()).filter(|d| d["class"] == "car").count();
    assert!(cars >= 10, "only {cars} cars detected over RTSP");
    let summary = &out.lines("summary")[0];
    assert_eq!(summary["frames_decoded"].as_u64(), Some(30));
}

/// Two cameras, one of them RTSP: its server stops and comes back on the same port. That camera
/// restarts by itself; the other never stops; /metrics shows the restart.
#[test]
fn a_camera_restarts_alone() {
    use std::io::{BufRead, BufReader};
    use std::time::Instant;

    use crate::common::{http_get, metric_sample};

    // Empty until junction listens.
    let get = |port: u16, path: &str| -> String {
        http_get(port, path).map(|(_, body)| String::from_utf8_lossy(&body).into_owned()).unwrap_or_default()
    };
    let sample = |m: &str, series: &str| -> f64 { metric_sample(m, series).unwrap_or(0.0) };
    let wait_until = |what: &str, secs: u64, cond: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !cond() {
            assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let server = RtspServer::start(&clip());
    let rtsp_port = server.port;
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::repo().join("models/yolox_nano.toml");
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "site = \"restart-test\"\n[detector]\nmodel = {model:?}\n\n\
             [[camera]]\nid = \"rtsp\"\nuri = \"{}\"\nstall_timeout_s = 2\n\n\
             [[camera]]\nid = \"pattern\"\nuri = \"test://ball?fps=10\"\n\n\
             [store]\npath = \"j.db\"\nretention_days = 1\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n",
            server.url()
        ),
    )
    .unwrap();
    let mut child = crate::common::command(&["run", "--config", site.to_str().unwrap()], "info")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let metrics = || get(http, "/metrics");
    let frames = |cam: &str| sample(&metrics(), &format!("junction_frames_analysed_total{{camera=\"{cam}\"}}"));
    wait_until("both cameras to deliver", 60, &|| frames("rtsp") > 5.0 && frames("pattern") > 5.0);

    drop(server);
    wait_until("the RTSP camera to be down", 30, &|| sample(&metrics(), "junction_stream_up{camera=\"rtsp\"}") == 0.0);
    let pattern_during = frames("pattern");
    let rtsp_before = frames("rtsp");
    wait_until("the other camera to keep counting during the outage", 30, &|| frames("pattern") > pattern_during);

    let _server = RtspServer::start_on(&clip(), rtsp_port);
    wait_until("the RTSP camera to recover", 60, &|| {
        let m = metrics();
        sample(&m, "junction_stream_up{camera=\"rtsp\"}") == 1.0
            && sample(&m, "junction_frames_analysed_total{camera=\"rtsp\"}") > rtsp_before + 5.0
    });
    let m = metrics();
    assert!(sample(&m, "junction_stream_restarts_total{camera=\"rtsp\"}") >= 1.0, "{m}");
    assert_eq!(sample(&m, "junction_stream_restarts_total{camera=\"pattern\"}"), 0.0, "{m}");

    crate::common::signal(&child, "TERM");
    let status = crate::common::wait_at_most(&mut child, started, Duration::from_secs(180));
    assert!(status.success(), "{}", log.lock().unwrap());
}
