#!/usr/bin/env python3
"""Static INT8 quantisation (QDQ) of the dynamic YOLOX-Nano export with ONNX Runtime's quantiser.

Calibration frames come from the bundled clips, decoded and scaled by GStreamer as junction's source
does it (uridecodebin ! videoscale add-borders=false ! videoconvert ! BGR caps at the letterbox size;
whole frames: no region-of-interest crop), then filled as junction's tensor fill does: BGR, raw 0-255
float (no mean/std), the scaled image at the top-left, 114 padding, NCHW, batch 1.
- Every chosen frame at 416 x 416: r = min(416/h, 416/w), scaled size round(w r) x round(h r).
- Every other chosen frame of a wide clip (w/h >= 1.5, e.g. 16:9) also at 416 x H, H the scaled height
  rounded up to a multiple of 32 (416 x 256 for 16:9): the rectangular input a dynamic model allows.
Frames are drawn at random (seeded) over each whole clip: `--frames-per-clip` for calibration and
`--held-out` others for the checks below, so a run is reproducible.

What is quantised: weights int8 (symmetric, per channel with --per-channel; the opset is raised from
11 to 13 for that), activations uint8 (asymmetric) or int8 (--symmetric-activations), ranges by
--method. Kept float:
- the output side (`--exclude preds`, the default): the nine prediction convolutions (reg_preds,
  obj_preds, cls_preds) and everything after them (Sigmoid, the per-level Concat that mixes raw box
  offsets with sigmoided scores in one tensor, which one 8-bit scale cannot hold, Reshape, Concat,
  Transpose). `--exclude decode` keeps only the nodes after the convolutions float.
- the nodes too sensitive to be quantised (`--sensitivity DB`, default 28): each node is quantised
  alone (with the same calibration ranges) and the float model's scores (objectness x class, all
  anchors) compared with it on the held-out 416 x 416 inputs; a node whose median signal-to-noise
  ratio is under DB dB stays float. On YOLOX-Nano these are the stem and the first stage at 208 x 208
  and 104 x 104 (the stem's SiLU output alone, quantised, leaves no detection), so the list is printed.
The model keeps its dynamic [N, 3, H, W] input (the quantiser changes no declared shape).

  .venv/bin/python scripts/quantize_yolox.py models/yolox_nano_dyn.onnx models/yolox_nano_int8.onnx \\
      --clips tests/data/street_topdown_640x360.mp4 tests/data/parking_topdown_768x432.mp4 \\
              tests/data/nl_motorway_degirum.mp4 tests/data/crosswalk_bikes_topdown.mp4 \\
      --frames-per-clip 40 --seed 22 --method minmax --per-channel

Prints the calibration inputs, the nodes kept float, the agreement with the float model on the
held-out inputs (score signal-to-noise ratio, vehicle detections at 0.3 found by one and not the
other), and the output's size and sha256.
"""
import argparse
import hashlib
import logging
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

INPUT = 416
PAD = 114
STRIDES = (8, 16, 32)
VEHICLES = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}


def probe_size(path):
    """Frame size of a clip (the container's coded size; GStreamer decodes the same)."""
    import cv2  # noqa: PLC0415 (opencv-python-headless: only the size is read with it)

    cap = cv2.VideoCapture(path)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    if not w or not h:
        sys.exit(f"{path}: cannot read the frame size")
    return w, h


def scaled_frames(path, width, height):
    """Every frame of the clip scaled to width x height BGR by GStreamer, as junction's source scales it."""
    uri = "file://" + os.path.abspath(path)
    cmd = [
        "gst-launch-1.0", "-q", "uridecodebin", f"uri={uri}", "!", "videoscale", "add-borders=false", "!",
        "videoconvert", "!", f"video/x-raw,format=BGR,width={width},height={height}", "!", "fdsink", "fd=1",
    ]
    stride = (width * 3 + 3) // 4 * 4  # GStreamer pads rows to 4 bytes
    size = stride * height
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as p:
        while True:
            buf = p.stdout.read(size)
            if len(buf) < size:
                break
            img = np.frombuffer(buf, np.uint8).reshape(height, stride)[:, : width * 3]
            yield img.reshape(height, width, 3)


def fill(img, in_w, in_h):
    """junction's tensor fill: BGR image at the top-left of an in_h x in_w input, 114 elsewhere, NCHW f32."""
    t = np.full((1, 3, in_h, in_w), float(PAD), np.float32)
    h, w = img.shape[:2]
    t[0, :, :h, :w] = img.transpose(2, 0, 1).astype(np.float32)
    return t


def clip_tensors(path, count, rng, held_out=0):
    """`count` calibration inputs of one clip (plus `held_out` other frames for the check), as
    (name, tensor) pairs."""
    w, h = probe_size(path)
    r = min(INPUT / h, INPUT / w)
    sw, sh = max(1, round(w * r)), max(1, round(h * r))
    frames = list(scaled_frames(path, sw, sh))
    n = len(frames)
    picks = rng.choice(n, size=min(n, count + held_out), replace=False)
    calib, check = sorted(picks[:count].tolist()), sorted(picks[count:].tolist())
    wide = w / h >= 1.5
    rect_h = math.ceil(sh / 32) * 32
    name = os.path.basename(path)
    out = []
    for k, i in enumerate(calib):
        out.append((f"{name}#{i}@416x416", fill(frames[i], INPUT, INPUT)))
        if wide and rect_h < INPUT and k % 2 == 0:
            out.append((f"{name}#{i}@416x{rect_h}", fill(frames[i], INPUT, rect_h)))
    held = []
    for i in check:
        held.append((f"{name}#{i}@416x416", fill(frames[i], INPUT, INPUT)))
        if wide and rect_h < INPUT:
            held.append((f"{name}#{i}@416x{rect_h}", fill(frames[i], INPUT, rect_h)))
    return (w, h, sw, sh, n), out, held


class Reader(CalibrationDataReader):
    """The calibration inputs, in chunks (set_range) so that the calibrator holds the intermediate
    tensors of one chunk at a time (histogram methods keep them all otherwise: gigabytes)."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.set_range(0, len(tensors))

    def __len__(self):
        return len(self.tensors)

    def set_range(self, start_index, end_index):
        self.it = iter(self.tensors[start_index:end_index])

    def get_next(self):
        item = next(self.it, None)
        return None if item is None else {"images": item[1]}

    def rewind(self):
        self.set_range(0, len(self.tensors))


def head_nodes(model, with_preds):
    """Names of the output-side nodes: everything after the nine prediction convolutions (and those
    convolutions themselves when with_preds)."""
    g = model.graph
    preds = [n for n in g.node if n.op_type == "Conv" and any("_preds." in i for i in n.input)]
    if len(preds) != 9:
        sys.exit(f"expected 9 head prediction convolutions, found {len(preds)}")
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    names, todo = set(), [o for n in preds for o in n.output]
    while todo:
        t = todo.pop()
        for n in consumers.get(t, []):
            if n.name not in names:
                names.add(n.name)
                todo.extend(n.output)
    if with_preds:
        names.update(n.name for n in preds)
    return sorted(names)


def decode(out, in_w, in_h, score=0.3, iou=0.45):
    """YOLOX decode + class-aware NMS for the vehicle classes, as junction does (model-input pixels)."""
    grids = []
    for s in STRIDES:
        gy, gx = np.mgrid[0 : in_h // s, 0 : in_w // s]
        grids.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, s)], 1))
    g = np.concatenate(grids).astype(np.float32)
    o = out[0]
    cx, cy = (o[:, 0] + g[:, 0]) * g[:, 2], (o[:, 1] + g[:, 1]) * g[:, 2]
    bw, bh = np.exp(o[:, 2]) * g[:, 2], np.exp(o[:, 3]) * g[:, 2]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    cls = np.argmax(o[:, 5:], 1)
    sc = o[:, 4] * o[np.arange(len(o)), 5 + cls]
    keep = [i for i in np.argsort(-sc) if sc[i] >= score and int(cls[i]) in VEHICLES]
    dets = []
    for i in keep:
        if all(cls[i] != c or box_iou(boxes[i], b) <= iou for b, c, _ in dets):
            dets.append((boxes[i], cls[i], sc[i]))
    return dets


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def score_snr(ref, out):
    """Signal-to-noise ratio (dB) of the scores (objectness x class score, every anchor and class)."""
    a, b = ref[..., 4:5] * ref[..., 5:], out[..., 4:5] * out[..., 5:]
    return 10 * math.log10(float((a**2).sum()) / max(float(((a - b) ** 2).sum()), 1e-30))


def compare(path, held, refs):
    """Float vs quantised model on held-out inputs: score SNR and detections not matched (same class,
    IoU > 0.5) in the other model."""
    q = session(path)
    snr, n_a, n_b, only_a, only_b = [], 0, 0, 0, 0
    for (_, x), ya in zip(held, refs):
        yb = q.run(None, {"images": x})[0]
        snr.append(score_snr(ya, yb))
        h, w = x.shape[2], x.shape[3]
        da, db = decode(ya, w, h), decode(yb, w, h)
        n_a, n_b = n_a + len(da), n_b + len(db)
        only_a += sum(1 for d in da if not any(c == d[1] and box_iou(d[0], e) > 0.5 for e, c, _ in db))
        only_b += sum(1 for d in db if not any(c == d[1] and box_iou(d[0], e) > 0.5 for e, c, _ in da))
    return float(np.median(snr)), n_a, n_b, only_a, only_b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="float model with dynamic input (models/yolox_nano_dyn.onnx)")
    ap.add_argument("output", help="quantised model to write")
    ap.add_argument("--clips", nargs="+", required=True, help="calibration clips")
    ap.add_argument("--frames-per-clip", type=int, default=40)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax")
    ap.add_argument("--percentile", type=float, default=99.999, help="for --method percentile")
    ap.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    ap.add_argument("--symmetric-activations", action="store_true", help="int8 activations, zero point 0")
    ap.add_argument(
        "--exclude", choices=["none", "decode", "preds"], default="preds",
        help="output side kept float: nothing, the decode nodes, or also the prediction convolutions",
    )
    ap.add_argument(
        "--sensitivity", type=float, default=28.0,
        help="keep float every node that, quantised alone, leaves the scores under this SNR in dB (0: none)",
    )
    ap.add_argument("--held-out", type=int, default=3, help="frames per clip for the sensitivity and the check")
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to pre-process, at every call

    rng = np.random.default_rng(args.seed)
    tensors, held = [], []
    for clip in args.clips:
        (w, h, sw, sh, n), t, k = clip_tensors(clip, args.frames_per_clip, rng, args.held_out)
        shapes = {}
        for name, _ in t:
            shapes[name.rsplit("@", 1)[1]] = shapes.get(name.rsplit("@", 1)[1], 0) + 1
        print(f"{clip}: {w}x{h}, {n} frames, scaled {sw}x{sh}; calibration inputs {shapes}")
        tensors += t
        held += k
    print(f"calibration: {len(tensors)} inputs: {' '.join(n for n, _ in tensors)}")
    print(f"held out: {len(held)} inputs: {' '.join(n for n, _ in held)}")

    model = onnx.load(args.input)
    if args.per_channel and min(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) < 13:
        # Per-channel DequantizeLinear (its axis attribute) needs opset 13; the export is opset 11.
        from onnx import version_converter  # noqa: PLC0415

        model = version_converter.convert_version(model, 13)
        print("opset raised to 13 for per-channel scales (onnx.version_converter)")
    exclude = [] if args.exclude == "none" else head_nodes(model, args.exclude == "preds")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[args.method]
    extra = {"ActivationSymmetric": args.symmetric_activations, "WeightSymmetric": True}
    if args.method == "percentile":
        extra["CalibPercentile"] = args.percentile
    # Chunks of calibration inputs, each of one input size (the histogram collectors stack a chunk's
    # tensors): same ranges and histograms as one pass, a fraction of the memory.
    tensors.sort(key=lambda t: -t[1].shape[2])
    sizes = [sum(1 for t in tensors if t[1].shape == s) for s in {t[1].shape for t in tensors}]
    extra["CalibStridedMinMax"] = max(d for d in range(1, 17) if math.gcd(*sizes) % d == 0)

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float.onnx")
        onnx.save(model, src)
        cache = os.path.join(tmp, "ranges.json")  # calibrated once, reused by every quantisation below

        def quantise(out, **kw):
            quantize_static(
                src, out, Reader(tensors),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if args.symmetric_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                per_channel=args.per_channel,
                calibration_cache_path=cache,
                extra_options=extra,
                **kw,
            )

        f = session(src)
        refs = [f.run(None, {"images": x})[0] for _, x in held]
        if args.sensitivity > 0:
            square = [(i, t) for i, t in enumerate(held) if t[1].shape[2] == INPUT and t[1].shape[3] == INPUT]
            one = os.path.join(tmp, "one.onnx")
            sensitive = []
            for node in model.graph.node:
                if node.name in exclude or node.op_type in ("Slice", "Reshape", "Transpose"):
                    continue
                quantise(one, nodes_to_quantize=[node.name])
                q = session(one)
                snr = np.median([score_snr(refs[i], q.run(None, {"images": x})[0]) for i, (_, x) in square])
                if snr < args.sensitivity:
                    sensitive.append(node.name)
                    print(f"sensitive: {node.name} ({node.op_type}) alone {snr:.1f} dB")
            exclude = exclude + sensitive
        print(f"kept float ({len(exclude)} nodes): {' '.join(exclude)}")
        quantise(args.output, nodes_to_exclude=exclude)
    q = onnx.load(args.output)
    dims = [d.dim_param or d.dim_value for d in q.graph.input[0].type.tensor_type.shape.dim]
    ops = {}
    for n in q.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"{args.output}: input {q.graph.input[0].name} {dims}, opset "
          f"{[o.version for o in q.opset_import if o.domain in ('', 'ai.onnx')]}, nodes {ops}")
    if held:
        snr, n_a, n_b, only_a, only_b = compare(args.output, held, refs)
        print(
            f"held-out check, {len(held)} inputs: score SNR median {snr:.1f} dB; vehicle detections at 0.3: "
            f"float {n_a}, int8 {n_b}; float's not in int8 {only_a}, int8's not in float {only_b}"
        )
    data = open(args.output, "rb").read()
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__}")
    print(f"{args.output}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
