#!/usr/bin/env python3
"""Draws `junction detect` boxes on one frame of a clip and writes a PNG (for the README, and for a
person checking what the detector sees).

  target/release/junction detect CLIP --frames 101 > /tmp/d.jsonl
  .venv/bin/python scripts/draw_detections.py CLIP /tmp/d.jsonl 100 out.png

Frames are decoded with gst-launch-1.0 at their source size (BGR), boxes drawn with numpy, and the PNG
encoded by GStreamer's pngenc: no imaging library needed beyond numpy.
"""
import json
import subprocess
import sys

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from reference_detect import frame_size  # noqa: E402

COLOURS = {"car": (0, 200, 255), "truck": (255, 120, 0), "bus": (255, 0, 200), "motorcycle": (0, 255, 0),
           "bicycle": (255, 255, 0), "person": (0, 0, 255)}  # BGR


def main():
    clip, jsonl, index, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    w, h = frame_size(clip)
    stride = (w * 3 + 3) // 4 * 4
    raw = subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={clip}", "!", "decodebin", "!",
                          "videoconvert", "!", "video/x-raw,format=BGR", "!", "fdsink", "fd=1"],
                         capture_output=True, check=True).stdout
    img = np.frombuffer(raw[index * stride * h:(index + 1) * stride * h], np.uint8).reshape(h, stride)[:, :w * 3]
    img = img.reshape(h, w, 3).copy()
    line = next(json.loads(l) for l in open(jsonl) if json.loads(l).get("frame") == index)
    for d in line["detections"]:
        x1, y1, x2, y2 = (int(round(v)) for v in d["box"])
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        c = COLOURS.get(d["class"], (255, 255, 255))
        for t in range(2):  # 2-pixel outline
            img[y1 + t, x1:x2 + 1] = c
            img[y2 - t, x1:x2 + 1] = c
            img[y1:y2 + 1, x1 + t] = c
            img[y1:y2 + 1, x2 - t] = c
    # rawvideoparse expects GStreamer's rows, padded to 4 bytes.
    padded = np.zeros((h, stride), np.uint8)
    padded[:, :w * 3] = img.reshape(h, w * 3)
    subprocess.run(["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!", "rawvideoparse", f"width={w}", f"height={h}",
                    "format=bgr", "framerate=1/1", "!", "videoconvert", "!", "pngenc", "snapshot=true", "!",
                    "filesink", f"location={out}"], input=padded.tobytes(), check=True)
    print(f"{out}: frame {index}, {len(line['detections'])} detections")


if __name__ == "__main__":
    main()
