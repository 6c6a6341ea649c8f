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
    main_loop: gst::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RtspServer {
    pub fn start(clip: &std::path::Path) -> Self {
        gst::init().unwrap();
        let context = gst::glib::MainContext::new();
        let main_loop = gst::glib::MainLoop::new(Some(&context), false);
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service("0");
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
        let thread = std::thread::spawn(move || {
            let _server = server;
            ml.run();
        });
        Self { port, main_loop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/clip", self.port)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
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
