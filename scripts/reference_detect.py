#!/usr/bin/env python3
"""Independent reference for junction's detector: ONNX Runtime + numpy, written separately from the Rust.

YOLOX (default): decodes the clip with gst-launch-1.0 through the same letterbox scaling junction asks
GStreamer for (decodebin ! videoscale ! videoconvert to BGR at round(w*r) x round(h*r),
r = min(416/h, 416/w)), then in numpy: top-left padding with 114 to 416x416, HWC->CHW f32, the YOLOX
grid decode, score = objectness x class score > threshold, class-aware greedy NMS (IoU 0.45), boxes
mapped back to frame pixels and clipped to the frame.

DETR (--family detr, DEIMv2): the DEIMv2 sample's preprocessing, a plain resize to 416x416 RGB (GStreamer
videoscale without borders), /255, CHW; the model is given orig_target_sizes = (416, 416) so boxes come
back in input pixels; queries above the threshold whose label junction maps are kept, one object under
two labels (IoU > 0.7) keeps its best; boxes scaled by (w/416, h/416) to frame pixels and clipped.

Writes a JSON golden file that tests/tests.rs (detect::parity, detect::deimv2_parity) compares with
`junction detect`.

  .venv/bin/python scripts/reference_detect.py tests/data/street_topdown_640x360.mp4 \
      models/yolox_nano.onnx --frames 100,150,... > tests/data/reference_detections.json
  .venv/bin/python scripts/reference_detect.py tests/data/street_topdown_640x360.mp4 \
      models/deimv2_femto_coco.onnx --family detr --frames 100,150,... > tests/data/reference_detections_deimv2.json
"""
import argparse
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import onnxruntime as ort

INPUT = 416
STRIDES = (8, 16, 32)
PAD = 114
# COCO class index -> junction class (the model card's [classes.map]).
CLASSES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}


def frame_size(clip):
    out = subprocess.run(
        ["gst-launch-1.0", "-v", "filesrc", f"location={clip}", "!", "decodebin", "!", "videoconvert", "!",
         "video/x-raw,format=BGR", "!", "fakesink", "num-buffers=1"],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"avdec_\w+.*?caps = video/x-raw, .*?width=\(int\)(\d+), height=\(int\)(\d+)", out)
    if not m:
        sys.exit(f"{clip}: no video caps in gst-launch output")
    return int(m.group(1)), int(m.group(2))


def scaled_frames(clip, w, h, stretch=False):
    if stretch:
        sw, sh, caps = INPUT, INPUT, f"video/x-raw,format=RGB,width={INPUT},height={INPUT}"
    else:
        r = min(INPUT / h, INPUT / w)
        sw, sh = round(w * r), round(h * r)
        caps = f"video/x-raw,format=BGR,width={sw},height={sh},pixel-aspect-ratio=1/1"
    raw = subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={clip}", "!", "decodebin", "!", "videoscale",
         "add-borders=false", "!", "videoconvert", "!", caps, "!", "fdsink", "fd=1"],
        capture_output=True, check=True).stdout
    # GStreamer pads each row to a multiple of 4 bytes.
    stride = (sw * 3 + 3) // 4 * 4
    n = len(raw) // (stride * sh)
    frames = np.frombuffer(raw[: n * stride * sh], np.uint8).reshape(n, sh, stride)[:, :, : sw * 3]
    return frames.reshape(n, sh, sw, 3), sw, sh


def grid():
    cells, strides = [], []
    for s in STRIDES:
        n = INPUT // s
        ys, xs = np.mgrid[0:n, 0:n]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full(n * n, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def detect(sess, img, w, h, sw, sh, cells, strides, score_thr, iou_thr):
    x = np.full((INPUT, INPUT, 3), PAD, np.float32)
    x[:sh, :sw] = img
    x = x.transpose(2, 0, 1)[None]
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]  # [3549, 85]
    xy = (out[:, :2] + cells) * strides
    wh = np.exp(out[:, 2:4]) * strides
    scores = out[:, 4:5] * out[:, 5:]
    cls = scores.argmax(1)
    conf = scores.max(1)
    keep = (conf > score_thr) & np.isin(cls, list(CLASSES))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)[keep]
    conf, cls = conf[keep], cls[keep]
    kept = greedy(boxes, conf, lambda k, i: cls[k] == cls[i] and iou(boxes[k], boxes[i:i + 1])[0] > iou_thr)
    return frame_dets(boxes, conf, cls, kept, w / sw, h / sh, w, h)


def greedy(boxes, scores, covered):
    """Indices kept by greedy suppression: highest score first, dropped when covered(kept, i)."""
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if any(covered(k, i) for k in kept):
            continue
        kept.append(i)
    return kept


def frame_dets(boxes, scores, classes, kept, sx, sy, w, h):
    """Kept boxes scaled to frame pixels by (sx, sy), clipped to the w x h frame, as golden entries."""
    dets = []
    for i in kept:
        b = boxes[i].astype(np.float64)
        fx = np.clip(b[[0, 2]] * sx, 0, w)
        fy = np.clip(b[[1, 3]] * sy, 0, h)
        dets.append({"box": [round(float(fx[0]), 3), round(float(fy[0]), 3), round(float(fx[1]), 3),
                             round(float(fy[1]), 3)],
                     "class": CLASSES[int(classes[i])], "score": round(float(scores[i]), 5)})
    return dets


def detect_detr(sess, img, w, h, score_thr, merge_iou):
    x = (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    labels, boxes, scores = sess.run(["labels", "boxes", "scores"],
                                     {"images": x, "orig_target_sizes": np.array([[INPUT, INPUT]], np.int64)})
    labels, boxes, scores = labels[0], boxes[0], scores[0]
    keep = (scores > score_thr) & np.isin(labels, list(CLASSES))
    labels, boxes, scores = labels[keep], boxes[keep], scores[keep]
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    kept = greedy(boxes, scores, lambda k, i: iou(boxes[k], boxes[i:i + 1])[0] > merge_iou)
    return frame_dets(boxes, scores, labels, kept, w / INPUT, h / INPUT, w, h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("model")
    ap.add_argument("--frames", required=True, help="comma-separated frame indices, from 0")
    ap.add_argument("--score", type=float, default=0.3)
    ap.add_argument("--iou", type=float, default=0.45, help="YOLOX: NMS IoU; DETR: label merge IoU (0.7)")
    ap.add_argument("--family", choices=["yolox", "detr"], default="yolox")
    a = ap.parse_args()
    detr = a.family == "detr"
    if detr and a.iou == 0.45:
        a.iou = 0.7
    w, h = frame_size(a.clip)
    frames, sw, sh = scaled_frames(a.clip, w, h, stretch=detr)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    cells, strides = grid()
    wanted = [int(i) for i in a.frames.split(",")]
    result = {
        "generator": "scripts/reference_detect.py",
        "onnxruntime": ort.__version__,
        "model_sha256": hashlib.sha256(open(a.model, "rb").read()).hexdigest(),
        "clip": a.clip,
        "frames_in_clip": len(frames),
        "frame_size": [w, h],
        "score_threshold": a.score,
        ("label_merge_iou" if detr else "nms_iou"): a.iou,
        "frames": [{"frame": i, "detections": detect_detr(sess, frames[i], w, h, a.score, a.iou) if detr
                    else detect(sess, frames[i], w, h, sw, sh, cells, strides, a.score, a.iou)}
                   for i in wanted],
    }
    # One detection per line, so that a review of the golden file reads like a table.
    frames = result.pop("frames")
    head = json.dumps(result, indent=1)[:-2]
    rows = ",\n".join(
        ' {"frame": %d, "detections": [\n%s\n ]}' % (f["frame"], ",\n".join("  " + json.dumps(d) for d in f["detections"]))
        for f in frames)
    sys.stdout.write(head + ',\n "frames": [\n' + rows + '\n ]\n}\n')


if __name__ == "__main__":
    main()
