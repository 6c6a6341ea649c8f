#!/usr/bin/env python3
"""Baseline for scripts/bench_detect.sh: ONNX Runtime alone on the clip's frames, nothing else timed.

Frames are decoded and letterboxed up front (as scripts/reference_detect.py does); then only
session.run is timed, with the same library version and thread count as junction. Prints one JSON line.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_detect import INPUT, PAD, frame_size, scaled_frames  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    w, h = frame_size(a.clip)
    frames, sw, sh = scaled_frames(a.clip, w, h)
    tensors = np.full((len(frames), 3, INPUT, INPUT), PAD, np.float32)
    tensors[:, :, :sh, :sw] = frames.transpose(0, 3, 1, 2)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: tensors[:1]})  # warm-up, as junction's first frame is not excluded either
    t0 = time.perf_counter()
    for i in range(len(tensors)):
        sess.run(None, {name: tensors[i:i + 1]})
    wall = time.perf_counter() - t0
    print(json.dumps({"runner": "onnxruntime-python", "version": ort.__version__, "frames": len(tensors),
                      "threads": a.threads, "wall_s": round(wall, 3), "fps": round(len(tensors) / wall, 2)}))


if __name__ == "__main__":
    main()
