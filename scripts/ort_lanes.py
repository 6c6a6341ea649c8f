#!/usr/bin/env python3
"""ONNX Runtime alone: one session of 2 intra-op threads against two sessions of 1 thread side by side
(junction's `[detector] parallel`), on YOLOX-Nano with a dynamic input of one tile's shape.

    .venv/bin/python scripts/ort_lanes.py [--height 384] [--width 416] [--runs 200]

Prints milliseconds per image, each way, with ONNX Runtime's idle threads sleeping (junction's
default) and spinning (ONNX Runtime's), alternated twice. Random input: only the time matters.
"""
import argparse
import threading
import time

import numpy as np
import onnxruntime as ort


def session(model, threads, spinning):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/yolox_nano_dyn.onnx")
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=416)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    x = (np.random.default_rng(0).random((1, 3, a.height, a.width)) * 255).astype(np.float32)
    for spinning in (False, True):
        two = session(a.model, 2, spinning)
        ones = [session(a.model, 1, spinning), session(a.model, 1, spinning)]
        name = two.get_inputs()[0].name
        for s in [two, *ones]:
            for _ in range(5):
                s.run(None, {name: x})
        for _ in range(2):
            t = time.perf_counter()
            for _ in range(a.runs):
                two.run(None, {name: x})
            t_two = (time.perf_counter() - t) / a.runs

            def work(s):
                for _ in range(a.runs // 2):
                    s.run(None, {name: x})

            t = time.perf_counter()
            th = [threading.Thread(target=work, args=(s,)) for s in ones]
            for h in th:
                h.start()
            for h in th:
                h.join()
            t_par = (time.perf_counter() - t) / a.runs
            print(f"threads {'spin' if spinning else 'sleep'}: one session of 2 threads {t_two * 1e3:.2f} ms/image; "
                  f"two of 1 thread side by side {t_par * 1e3:.2f} ms/image ({t_two / t_par:.2f}x)")


if __name__ == "__main__":
    main()
