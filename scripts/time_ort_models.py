#!/usr/bin/env python3
"""Raw ONNX Runtime inference time of two models, alternated (A, B, A, B, ...) on a noisy host.

Each session as junction opens it on the CPU: 2 intra-op threads (--threads), sequential execution,
full graph optimisation, idle threads not spinning. Per size (W x H) and round: --warmup runs, then
--runs timed runs of one model, then the same for the other; medians in ms per round, the median of
the rounds, and B / A.

  .venv/bin/python scripts/time_ort_models.py models/yolox_nano.onnx models/yolox_nano_int8.onnx \\
      --sizes 416x416 416x256 --runs 200 --rounds 3

A model with a fixed input shape (yolox_nano.onnx is [1, 3, 416, 416]) runs at the sizes it accepts;
give its dynamic twin (yolox_nano_dyn.onnx, the same weights) for the other sizes.
"""
import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def fits(sess, h, w):
    dims = sess.get_inputs()[0].shape
    return all(not isinstance(d, int) or d == v for d, v in zip(dims[2:], (h, w)))


def timed(sess, x, warmup, runs):
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        a = time.perf_counter()
        sess.run(None, {name: x})
        t.append(time.perf_counter() - a)
    return 1000 * statistics.median(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="model A (the baseline)")
    ap.add_argument("b", help="model B")
    ap.add_argument("--a-dynamic", help="model A's dynamic twin, for sizes A's fixed input does not take")
    ap.add_argument("--sizes", nargs="+", default=["416x416", "416x256"], help="W x H")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    print(f"onnxruntime {ort.__version__}; {args.threads} intra-op threads, sequential; load {os.getloadavg()}")
    sa, sb = session(args.a, args.threads), session(args.b, args.threads)
    sa_dyn = session(args.a_dynamic, args.threads) if args.a_dynamic else None
    rng = np.random.default_rng(0)
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        x = rng.uniform(0, 255, (1, 3, h, w)).astype(np.float32)
        a = sa if fits(sa, h, w) else sa_dyn
        if a is None:
            print(f"{size}: {args.a} takes no {size} input; give --a-dynamic")
            continue
        name_a = args.a if a is sa else args.a_dynamic
        ta, tb = [], []
        for _ in range(args.rounds):
            ta.append(timed(a, x, args.warmup, args.runs))
            tb.append(timed(sb, x, args.warmup, args.runs))
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"{size}: A {name_a} {ma:.2f} ms ({', '.join(f'{v:.2f}' for v in ta)}); "
              f"B {args.b} {mb:.2f} ms ({', '.join(f'{v:.2f}' for v in tb)}); B/A {mb / ma:.2f}")
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
