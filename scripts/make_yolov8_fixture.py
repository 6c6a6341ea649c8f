#!/usr/bin/env python3
"""Turns the YOLOX-Nano model into a YOLOv8-layout model with the same detections, for the test that
runs junction's YOLOv8 decoding through a real ONNX Runtime session (tests/detect.rs, yolov8_layout).

Appended to the graph: the YOLOX grid decode (cx = (raw + gx) * s, w = exp(raw) * s), scores =
objectness x class score, and a transpose from [1, 3549, 84] to [1, 84, 3549]: the Ultralytics
YOLOv8 layout (cx, cy, w, h in model-input pixels, then the class scores; no objectness).

  .venv/bin/python scripts/make_yolov8_fixture.py models/yolox_nano.onnx /tmp/yolox_as_v8.onnx
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

src, dst = sys.argv[1], sys.argv[2]
m = onnx.load(src)
g = m.graph
size = 416
cells, strides = [], []
for s in (8, 16, 32):
    n = size // s
    ys, xs = np.mgrid[0:n, 0:n]
    cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
    strides.append(np.full((n * n, 1), s))
grid = np.concatenate(cells).astype(np.float32)[None]          # [1, 3549, 2]
stride = np.concatenate(strides).astype(np.float32)[None]      # [1, 3549, 1]


def const(name, value):
    g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return name


const("v8_grid", grid)
const("v8_stride", stride)
axes = const("v8_axes", np.array([2], np.int64))


def slice_(out, start, end):
    g.node.append(helper.make_node("Slice", ["output", const(f"{out}_s", np.array([start], np.int64)),
                                             const(f"{out}_e", np.array([end], np.int64)), axes], [out]))


slice_("v8_xy_raw", 0, 2)
slice_("v8_wh_raw", 2, 4)
slice_("v8_obj", 4, 5)
slice_("v8_cls", 5, 85)
g.node.extend([
    helper.make_node("Add", ["v8_xy_raw", "v8_grid"], ["v8_xy_cell"]),
    helper.make_node("Mul", ["v8_xy_cell", "v8_stride"], ["v8_xy"]),
    helper.make_node("Exp", ["v8_wh_raw"], ["v8_wh_exp"]),
    helper.make_node("Mul", ["v8_wh_exp", "v8_stride"], ["v8_wh"]),
    helper.make_node("Mul", ["v8_cls", "v8_obj"], ["v8_scores"]),
    helper.make_node("Concat", ["v8_xy", "v8_wh", "v8_scores"], ["v8_rows"], axis=2),
    helper.make_node("Transpose", ["v8_rows"], ["output0"], perm=[0, 2, 1]),
])
del g.output[:]
g.output.append(helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 84, 3549]))
onnx.checker.check_model(m)
onnx.save(m, dst)
print(dst)
