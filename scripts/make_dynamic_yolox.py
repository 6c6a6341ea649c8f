#!/usr/bin/env python3
"""Graph edit of the bundled YOLOX-Nano export: dynamic batch and input size, same weights.

The export (models/yolox_nano.onnx, opset 11) is fully convolutional; only its declared shapes and the
three head reshapes pin it to [1, 3, 416, 416]. This script
- declares the input `images` as [N, 3, H, W] and the output `output` as [N, A, 85]
  (A = sum over strides 8, 16, 32 of (H/s)(W/s); H and W must be multiples of 32),
- rewrites each head's Reshape target [1, 85, -1] to [0, 85, -1] (0: copy the batch dimension),
- leaves every weight, node and attribute else untouched (the two upsampling Resize nodes use scales,
  not sizes, so they follow the input),
then checks with ONNX Runtime that at 416x416 the edited model's output equals the original's on random
input (max abs difference printed, must be 0), and that 640x640 and a batch of 2 run.

  .venv/bin/python scripts/make_dynamic_yolox.py models/yolox_nano.onnx models/yolox_nano_dyn.onnx
"""
import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    src, dst = sys.argv[1], sys.argv[2]
    m = onnx.load(src)
    g = m.graph
    (inp,) = [i for i in g.input if i.name == "images"]
    dims = inp.type.tensor_type.shape.dim
    for d, name in zip(dims, ["N", None, "H", "W"]):
        if name:
            d.ClearField("dim_value")
            d.dim_param = name
    (out,) = g.output
    odims = out.type.tensor_type.shape.dim
    for d, name in zip(odims, ["N", "A", None]):
        if name:
            d.ClearField("dim_value")
            d.dim_param = name
    # Intermediate shapes recorded by the exporter would pin 416: drop them, ONNX Runtime infers its own.
    del g.value_info[:]
    inits = {i.name: i for i in g.initializer}
    edited = 0
    for n in g.node:
        if n.op_type != "Reshape":
            continue
        t = inits[n.input[1]]
        shape = numpy_helper.to_array(t)
        if shape.tolist() != [1, 85, -1]:
            sys.exit(f"unexpected Reshape target {shape.tolist()} in {n.name}")
        # Each head has its own initializer (1157, 1165, 1173): edit in place.
        t.CopyFrom(numpy_helper.from_array(np.array([0, 85, -1], dtype=np.int64), t.name))
        edited += 1
    if edited != 3:
        sys.exit(f"expected 3 head reshapes, found {edited}")
    onnx.checker.check_model(m)
    onnx.save(m, dst)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    a = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(dst, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(7).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    diff = np.abs(a.run(None, {"images": x})[0] - b.run(None, {"images": x})[0]).max()
    print(f"416x416: max |original - edited| = {diff}")
    if diff != 0:
        sys.exit("the edited model differs from the original at 416x416")
    y = b.run(None, {"images": np.zeros((2, 3, 640, 640), np.float32)})[0]
    print(f"640x640, batch 2: output {list(y.shape)}")
    assert list(y.shape) == [2, 8400, 85]
    sha = hashlib.sha256(open(dst, "rb").read()).hexdigest()
    print(f"{dst}: sha256 {sha}")


if __name__ == "__main__":
    main()
