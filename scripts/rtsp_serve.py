#!/usr/bin/python3
"""A live RTSP test camera on 127.0.0.1 for scripts/chaos_soak.sh: videotestsrc (a moving ball) at
640x360, 10 frames/s, H.264, at rtsp://127.0.0.1:PORT/cam. Stopping the process stops the camera.

Needs Debian's python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/setup.sh installs them); run it with
/usr/bin/python3, which has them (the project's venv does not).
"""
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=10/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    port = sys.argv[1]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_serve: cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print(f"rtsp://127.0.0.1:{port}/cam", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
