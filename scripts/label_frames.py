#!/usr/bin/env python3
"""Helper for the hand-checked detection label set in tests/data/labels/ (see its README.md).

The labels are the LABELS table below (hand-checked boxes); LEFT_OUT lists what was seen but not labelled.
Frames are decoded with gst-launch-1.0 (decodebin ! videoconvert ! BGR, as scripts/draw_detections.py
does), counted from 0 in decode order, and written with GStreamer's jpegenc / pngenc: numpy only.

  label_frames.py extract      write the picked frames as tests/data/labels/<stem>_f<N>.jpg (jpegenc quality=92)
  label_frames.py build        write tests/data/labels/annotations.json from LABELS
  label_frames.py validate     check it: pycocotools loads it, images exist with their sizes, boxes inside,
                               ids unique, areas, categories
Labelling aids (need target/release/junction; write under /tmp):
  label_frames.py prelabels    `junction detect` with both models at score 0.2 -> /tmp/labels_work/prelabels.json
  label_frames.py stats        per clip: pre-labels kept/moved/class-fixed/deleted, boxes added; totals
  label_frames.py draw-pre     pre-labels with index numbers -> /tmp/labels_review/pre_*.png
  label_frames.py draw-final   the labels -> /tmp/labels_review/final_*.png
  label_frames.py crop NAME X1 Y1 X2 Y2 [SCALE [pre|final|none]]   enlarged crop with a 10 px grid
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
OUTDIR = os.path.join(DATA, "labels")
WORK = "/tmp/labels_work"
REVIEW = "/tmp/labels_review"

CLIPS = {  # stem: (width, height)
    "street_topdown_640x360": (640, 360),
    "parking_topdown_768x432": (768, 432),
    "nl_motorway_degirum": (960, 540),
    "crosswalk_bikes_topdown": (640, 640),
}
MODELS = ["yolox_nano_640", "deimv2_femto"]
CATEGORIES = [(1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (6, "bus"), (8, "truck")]
CAT_ID = {n: i for i, n in CATEGORIES}
COLOURS = {"car": (0, 200, 255), "truck": (255, 120, 0), "bus": (255, 0, 200), "motorcycle": (0, 255, 0),
           "bicycle": (255, 255, 0), "person": (0, 0, 255)}  # BGR

# 3x5 bitmap digits for index numbers.
FONT = {
    "0": ["111", "101", "101", "101", "111"], "1": ["010", "110", "010", "010", "111"],
    "2": ["111", "001", "111", "100", "111"], "3": ["111", "001", "111", "001", "111"],
    "4": ["101", "101", "111", "001", "001"], "5": ["111", "100", "111", "001", "111"],
    "6": ["111", "100", "111", "101", "111"], "7": ["111", "001", "010", "010", "010"],
    "8": ["111", "101", "111", "101", "111"], "9": ["111", "101", "111", "001", "111"],
    "-": ["000", "000", "111", "000", "000"], "p": ["111", "101", "111", "100", "100"],
    "c": ["000", "111", "100", "100", "111"], "b": ["100", "100", "111", "101", "111"],
    "m": ["000", "111", "111", "101", "101"], "t": ["010", "111", "010", "010", "011"],
    "u": ["000", "101", "101", "101", "111"],
}


def clip_path(stem):
    return os.path.join(DATA, stem + ".mp4")


def frames(stem):
    """All decoded frames of a clip, BGR, as a (n, h, w, 3) memmap cached in WORK."""
    w, h = CLIPS[stem]
    cache = os.path.join(WORK, stem + ".bgr")
    if not os.path.exists(cache):
        os.makedirs(WORK, exist_ok=True)
        stride = (w * 3 + 3) // 4 * 4
        raw = subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={clip_path(stem)}", "!", "decodebin",
                              "!", "videoconvert", "!", "video/x-raw,format=BGR", "!", "fdsink", "fd=1"],
                             capture_output=True, check=True).stdout
        n = len(raw) // (stride * h)
        a = np.frombuffer(raw[:n * stride * h], np.uint8).reshape(n, h, stride)[:, :, :w * 3]
        a.reshape(n, h, w, 3).tofile(cache)
    n = os.path.getsize(cache) // (w * h * 3)
    return np.memmap(cache, np.uint8, "r", shape=(n, h, w, 3))


def encode(img, path, enc):
    """Writes a BGR image with GStreamer: enc is ["pngenc", "snapshot=true"] or ["jpegenc", "quality=92"]."""
    h, w = img.shape[:2]
    stride = (w * 3 + 3) // 4 * 4  # rawvideoparse expects GStreamer's rows, padded to 4 bytes
    padded = np.zeros((h, stride), np.uint8)
    padded[:, :w * 3] = np.ascontiguousarray(img).reshape(h, w * 3)
    subprocess.run(["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!", "rawvideoparse", f"width={w}", f"height={h}",
                    "format=bgr", "framerate=1/1", "!", "videoconvert", "!", *enc, "!", "filesink",
                    f"location={path}"], input=padded.tobytes(), check=True)


def rect(img, x1, y1, x2, y2, c, t=1):
    h, w = img.shape[:2]
    x1, x2 = max(0, min(int(round(x1)), w - 1)), max(0, min(int(round(x2)), w - 1))
    y1, y2 = max(0, min(int(round(y1)), h - 1)), max(0, min(int(round(y2)), h - 1))
    for k in range(t):
        img[min(y1 + k, h - 1), x1:x2 + 1] = c
        img[max(y2 - k, 0), x1:x2 + 1] = c
        img[y1:y2 + 1, min(x1 + k, w - 1)] = c
        img[y1:y2 + 1, max(x2 - k, 0)] = c


def text(img, x, y, s, c, scale=2):
    """Draws s with the 3x5 font at (x, y), on a black backing."""
    h, w = img.shape[:2]
    cw = 4 * scale
    x = max(0, min(x, w - cw * len(s) - 1))
    y = max(0, min(y, h - 6 * scale - 1))
    img[y:y + 6 * scale, x:x + cw * len(s)] = 0
    for i, ch in enumerate(s):
        for r, row in enumerate(FONT.get(ch, FONT["-"])):
            for col, bit in enumerate(row):
                if bit == "1":
                    yy, xx = y + scale // 2 + r * scale, x + i * cw + scale // 2 + col * scale
                    img[yy:yy + scale, xx:xx + scale] = c


def draw_boxes(img, boxes, t=1, labels=True, scale=2):
    """boxes: list of (x1, y1, x2, y2, class, tag)."""
    for x1, y1, x2, y2, cls, tag in boxes:
        rect(img, x1, y1, x2, y2, COLOURS.get(cls, (255, 255, 255)), t)
    if labels:
        for x1, y1, x2, y2, cls, tag in boxes:
            text(img, int(x1), int(y1) - 6 * scale - 1 if y1 > 6 * scale + 1 else int(y2) + 2, str(tag),
                 COLOURS.get(cls, (255, 255, 255)), scale)
    return img


def crop_grid(img, x1, y1, x2, y2, s=3, boxes=()):
    """Enlarged (nearest-neighbour, s times) crop with grid lines every 10 px (every 50 px brighter) and the
    frame coordinate written at every 50 px line; boxes drawn at sub-pixel positions."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    c = np.repeat(np.repeat(np.asarray(img[y1:y2, x1:x2]), s, 0), s, 1).copy()
    for x in range((x1 + 9) // 10 * 10, x2, 10):
        c[:, (x - x1) * s] = (255, 255, 255) if x % 50 == 0 else (110, 110, 110)
    for y in range((y1 + 9) // 10 * 10, y2, 10):
        c[(y - y1) * s, :] = (255, 255, 255) if y % 50 == 0 else (110, 110, 110)
    for bx1, by1, bx2, by2, cls, tag in boxes:
        col = COLOURS.get(cls, (255, 255, 255))
        # box edges drawn on the pixel boundaries: left edge at x1, right edge at x2 (exclusive extent)
        rect(c, (bx1 - x1) * s, (by1 - y1) * s, (bx2 - x1) * s, (by2 - y1) * s, col, 1)
    for x in range((x1 + 49) // 50 * 50, x2, 50):
        text(c, (x - x1) * s + 2, 2, str(x), (255, 255, 255), 2)
    for y in range((y1 + 49) // 50 * 50, y2, 50):
        text(c, 2, (y - y1) * s + 2, str(y), (255, 255, 255), 2)
    return c


DATE = "2026-12-06"  # of this version of the set
PICKS = {  # frame indices, from 0 in decode order
    "street_topdown_640x360": [60, 150, 300, 450, 545, 635],
    "parking_topdown_768x432": [70, 90, 195, 210, 225, 330],
    "nl_motorway_degirum": [60, 100, 135, 210, 245, 300],
    "crosswalk_bikes_topdown": [20, 120, 160, 230, 290, 365],
}


# The hand-checked labels: per image, (class, [x1, y1, x2, y2]) in frame pixels (x2, y2 exclusive edges),
# the visible extent of each road user, read off enlarged crops (see tests/data/labels/README.md).
LABELS = {
    "street_topdown_640x360_f60.jpg": [
        ("car", [261, 106.9, 394.7, 172.4]), ("car", [215, 80, 296, 130]), ("car", [85, 109, 149, 147]),
        ("car", [308, 235, 467, 317]), ("car", [149, 86, 216, 140]), ("car", [12, 224, 81, 274]),
        ("car", [162, 215, 302, 297]), ("car", [0, 211.9, 35.8, 241.6]),
    ],
    "street_topdown_640x360_f150.jpg": [
        ("car", [215, 80, 296, 130]), ("car", [85, 109, 149, 147]), ("car", [308, 235, 467, 317]),
        ("car", [407, 73, 570, 138]), ("car", [12, 224, 81, 274]), ("car", [488.6, 140, 639.5, 213.6]),
        ("car", [149, 86, 216, 140]), ("car", [162, 215, 302, 297]),
    ],
    "street_topdown_640x360_f300.jpg": [
        ("car", [36.8, 153.7, 83.1, 192.5]), ("car", [215, 80, 296, 130]), ("car", [85, 109, 149, 147]),
        ("car", [308, 235, 467, 317]), ("car", [12, 224, 81, 274]), ("car", [149, 86, 216, 140]),
        ("car", [162, 215, 302, 297]), ("person", [22, 64, 47, 91]), ("person", [22, 91, 43, 118]),
        ("car", [476, 97, 589, 162]),
    ],
    "street_topdown_640x360_f450.jpg": [
        ("car", [215, 80, 296, 130]), ("car", [308, 235, 467, 317]), ("car", [85, 175, 161, 222]),
        ("car", [85, 109, 149, 147]), ("car", [12, 224, 81, 274]), ("car", [64, 151, 112, 184]),
        ("car", [162, 215, 302, 297]), ("car", [149, 86, 216, 140]),
    ],
    "street_topdown_640x360_f545.jpg": [
        ("car", [12, 224, 81, 274]), ("car", [308, 235, 467, 317]), ("car", [85, 109, 149, 146]),
        ("car", [162, 215, 302, 297]), ("bus", [72, 118, 312, 213]), ("car", [149, 86, 216, 132]),
        ("car", [215, 80, 296, 130]), ("car", [15, 147, 50, 172]),
    ],
    "street_topdown_640x360_f635.jpg": [
        ("car", [215, 80, 296, 130]), ("car", [85, 109, 149, 147]), ("car", [12, 224, 81, 274]),
        ("car", [308, 235, 467, 317]), ("car", [149, 86, 216, 140]), ("car", [220, 164, 335, 224]),
        ("car", [162, 215, 302, 297]),
    ],
    "parking_topdown_768x432_f70.jpg": [
        ("car", [274, 190, 478, 432]),
    ],
    "parking_topdown_768x432_f90.jpg": [
        ("car", [272, 0, 409, 185]),
    ],
    "parking_topdown_768x432_f195.jpg": [
        ("car", [126, 0, 266, 183]), ("car", [316, 291, 503, 432]),
    ],
    "parking_topdown_768x432_f210.jpg": [
        ("car", [74, 117, 249, 432]), ("car", [312, 99, 464, 366]),
    ],
    "parking_topdown_768x432_f225.jpg": [
        ("car", [316, 0, 438, 149]),
    ],
    "parking_topdown_768x432_f330.jpg": [
        ("car", [147, 15, 310, 302]),
    ],
    "nl_motorway_degirum_f60.jpg": [
        ("car", [681, 272, 805, 397]), ("car", [516, 83, 552, 112]), ("car", [536, 282, 636, 397]),
        ("car", [497.6, 40.6, 518.4, 57.2]), ("car", [541.3, 39.5, 563.8, 57.5]), ("car", [605, 21, 623, 33]),
        ("car", [697, 6, 711, 16]), ("car", [736, 8, 753, 17]),
    ],
    "nl_motorway_degirum_f100.jpg": [
        ("car", [505, 89, 542, 120]), ("car", [583, 89, 620, 120]), ("car", [890, 23, 921, 40]),
        ("car", [663.2, 39, 694.9, 63.2]), ("car", [499.8, 6.3, 513, 20.5]), ("car", [542, 303, 663, 467]),
        ("car", [463.6, 6.9, 479.1, 21.5]), ("car", [462, 2, 472, 10]), ("car", [477, 4, 488, 12]),
        ("car", [545, 1, 556, 9]),
    ],
    "nl_motorway_degirum_f135.jpg": [
        ("car", [802, 90, 861, 135]), ("car", [765, 386, 950, 540]), ("car", [515, 318, 633, 492]),
        ("car", [505, 20, 518, 32]), ("car", [806, 14, 831, 27]), ("car", [464, 18, 478, 32]),
        ("car", [780, 9, 801, 21]), ("car", [470, 6, 481, 14]), ("car", [478, 10, 488, 20]),
        ("car", [513, 13, 524, 23]), ("car", [570, 7, 580, 17]),
    ],
    "nl_motorway_degirum_f210.jpg": [
        ("car", [512, 96, 546, 129]), ("car", [556.2, 66.1, 589.2, 96.5]), ("car", [665, 40, 697, 62]),
        ("car", [450, 67, 482, 99]), ("car", [903.9, 18.7, 939.6, 41.6]), ("car", [453, 39.4, 474.7, 59.7]),
        ("car", [485, 22, 504, 38]), ("car", [430, 19, 444, 31]), ("car", [441, 0, 449, 10]),
        ("car", [659, 5, 676, 14]), ("car", [785, 7, 808, 17]), ("car", [809, 10, 829, 23]),
    ],
    "nl_motorway_degirum_f245.jpg": [
        ("car", [691, 275, 805, 401]), ("car", [821, 99, 889, 143]), ("car", [497, 45, 524, 69]),
        ("car", [426.4, 80.4, 462.2, 114.8]), ("car", [437, 172, 509, 263]), ("car", [412.4, 40, 434.2, 57.8]),
        ("car", [906.7, 18.1, 938, 35.4]), ("car", [590, 10, 614, 26]), ("car", [707, 0, 726, 10]),
        ("car", [437, 10, 448, 19]), ("car", [476, 6, 486, 14]), ("car", [790, 8, 810, 22]),
        ("car", [546, 464, 669, 540]),
    ],
    "nl_motorway_degirum_f300.jpg": [
        ("car", [702, 49, 743, 78]), ("car", [308, 148, 371, 208]), ("car", [732, 39, 769, 68]),
        ("car", [492, 23, 508, 39]), ("car", [527, 216, 616, 316]), ("car", [425.3, 27.5, 443.9, 43.9]),
        ("car", [436, 9, 447, 19]), ("car", [810, 9, 830, 20]), ("car", [489, 12, 503, 25]),
    ],
    "crosswalk_bikes_topdown_f20.jpg": [
        ("bicycle", [166, 50, 275, 135]), ("bicycle", [310, 111, 440, 160]), ("bicycle", [353, 0, 480, 29]),
        ("bicycle", [551, 477, 640, 527]), ("person", [120, 122, 216, 158]), ("person", [122, 160, 235, 218]),
        ("person", [542, 26, 640, 74]), ("person", [544, 76, 640, 128]), ("person", [42, 257, 129, 304]),
        ("person", [36, 306, 125, 337]), ("person", [480, 310, 570, 347]), ("person", [457, 360, 586, 412]),
    ],
    "crosswalk_bikes_topdown_f120.jpg": [
        ("bicycle", [98, 344, 221, 402]), ("bicycle", [318, 367, 440, 417]), ("motorcycle", [352, 571, 483, 640]),
        ("person", [237, 0, 348, 42]), ("person", [231, 43, 348, 100]), ("person", [376, 47, 478, 88]),
        ("person", [383, 90, 485, 132]), ("person", [405, 127, 515, 170]), ("person", [436, 0, 530, 34]),
        ("person", [505, 30, 618, 78]), ("person", [331, 201, 441, 244]), ("person", [330, 255, 444, 310]),
        ("person", [511, 272, 636, 326]), ("person", [109, 484, 183, 536]), ("person", [181, 492, 274, 542]),
    ],
    "crosswalk_bikes_topdown_f160.jpg": [
        ("bicycle", [152, 412, 278, 460]), ("bicycle", [411, 382, 540, 429]), ("person", [100, 0, 215, 35]),
        ("person", [103, 32, 210, 83]), ("person", [231, 28, 328, 63]), ("person", [252, 67, 347, 107]),
        ("person", [263, 105, 365, 148]), ("person", [375, 10, 484, 59]), ("person", [498, 125, 585, 170]),
        ("person", [510, 168, 593, 204]), ("person", [225, 189, 315, 230]), ("person", [231, 252, 325, 307]),
        ("person", [367, 242, 487, 290]), ("person", [20, 551, 115, 605]),
    ],
    "crosswalk_bikes_topdown_f230.jpg": [
        ("bicycle", [460, 280, 583, 334]), ("bicycle", [274, 345, 399, 405]), ("person", [0, 0, 78, 30]),
        ("person", [7, 50, 88, 88]), ("person", [42, 97, 122, 144]), ("person", [0, 160, 87, 200]),
        ("person", [3, 200, 107, 257]), ("person", [137, 213, 247, 262]), ("person", [250, 127, 346, 167]),
        ("person", [257, 165, 354, 200]),
    ],
    "crosswalk_bikes_topdown_f290.jpg": [
        ("bicycle", [372, 32, 490, 97]), ("bicycle", [462, 59, 583, 120]), ("person", [53, 162, 133, 200]),
        ("person", [53, 201, 136, 268]), ("person", [549, 192, 640, 246]),
    ],
    "crosswalk_bikes_topdown_f365.jpg": [
        ("bicycle", [95, 357, 243, 406]), ("person", [296, 107, 388, 158]), ("person", [312, 162, 398, 195]),
        ("person", [221, 232, 323, 285]),
    ],
}

# Objects seen but not labelled (see the convention), per image: (reason, approximate box x1, y1, x2, y2).
EDGE, SMALL, AMBIG = "cut by the frame edge, less than half visible", "shorter side under 8 px", "ambiguous"
LEFT_OUT = {
    "street_topdown_640x360_f60.jpg": [(EDGE, [628, 207, 640, 303])],
    "street_topdown_640x360_f450.jpg": [(AMBIG + ": school bus cut by the left edge, about half or less visible",
                                         [0, 63, 51, 155])],
    "parking_topdown_768x432_f225.jpg": [(EDGE, [68, 357, 225, 432])],
    "nl_motorway_degirum_f60.jpg": [(SMALL, [455, 2, 464, 6]), (SMALL, [465, 5, 474, 13]), (SMALL, [472, 1, 480, 7]),
                                    (SMALL, [488, 1, 495, 7]), (SMALL, [495, 5, 503, 12]), (SMALL, [523, 0, 533, 5]),
                                    (SMALL, [712, 5, 727, 12])],
    "nl_motorway_degirum_f100.jpg": [(SMALL, [632, 0, 642, 5]), (SMALL, [666, 0, 680, 6])],
    "nl_motorway_degirum_f135.jpg": [(SMALL, [446, 3, 456, 10]), (EDGE, [952, 66, 960, 82])],
    "nl_motorway_degirum_f210.jpg": [(SMALL, [469, 0, 477, 6]), (SMALL, [551, 0, 561, 7]), (SMALL, [562, 7, 571, 14])],
    "nl_motorway_degirum_f245.jpg": [(SMALL, [439, 0, 448, 5]), (SMALL, [470, 0, 481, 8]),
                                     (AMBIG + ": car behind another, mostly hidden, 7 px visible", [592, 5, 608, 12])],
    "nl_motorway_degirum_f300.jpg": [(AMBIG + ": car behind another, mostly hidden, 7 px visible", [442, 3, 451, 10]),
                                     (SMALL, [741, 2, 755, 6]), (SMALL, [448, 0, 454, 2])],
    "crosswalk_bikes_topdown_f20.jpg": [(EDGE, [630, 195, 640, 220]), (EDGE, [602, 245, 640, 260])],
    "crosswalk_bikes_topdown_f120.jpg": [(EDGE, [535, 0, 627, 24]), (EDGE, [617, 140, 640, 153]),
                                         (EDGE, [623, 172, 640, 180])],
    "crosswalk_bikes_topdown_f160.jpg": [
        (AMBIG + ": semi-transparent 'ghost' of a walker (an artefact in the source video)", [5, 33, 48, 80]),
        (AMBIG + ": walker at the top edge, only a dark strip of the body visible", [300, 0, 410, 22]),
        (EDGE, [0, 617, 10, 632])],
    "crosswalk_bikes_topdown_f290.jpg": [(EDGE, [0, 182, 24, 222]), (EDGE, [566, 257, 640, 276]),
                                         (EDGE, [605, 365, 640, 380]), (EDGE, [0, 0, 50, 4])],
}


def image_name(stem, n):
    return f"{stem}_f{n}.jpg"


def cmd_extract():
    os.makedirs(OUTDIR, exist_ok=True)
    for stem, picks in PICKS.items():
        F = frames(stem)
        for n in picks:
            encode(F[n], os.path.join(OUTDIR, image_name(stem, n)), ["jpegenc", "quality=92"])
            print(image_name(stem, n))


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def cmd_prelabels():
    """Runs both models over every 5th frame (all picks are multiples of 5) at score 0.2, keeps the picked
    frames, and de-duplicates the union: a box overlapping a higher-scored box (any class, any model) by
    IoU > 0.6 is dropped. Writes WORK/prelabels.json {image name: [[x1, y1, x2, y2, class, score, model]]}."""
    os.makedirs(WORK, exist_ok=True)
    env = dict(os.environ, ORT_DYLIB_PATH=os.path.join(ROOT, ".onnxruntime", "libonnxruntime.so"))
    out = {}
    for stem, picks in PICKS.items():
        boxes = {n: [] for n in picks}
        for model in MODELS:
            cmd = [os.path.join(ROOT, "target", "release", "junction"), "detect", clip_path(stem), "--every", "5",
                   "--frames", str(max(picks) + 1), "--model", f"models/{model}.toml", "--score", "0.2",
                   "--threads", "1", "--parallel", "1"]
            res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
            with open(os.path.join(WORK, f"{stem}.{model}.jsonl"), "w") as f:
                f.write(res)
            for line in res.splitlines():
                d = json.loads(line)
                if d.get("type") == "frame" and d["frame"] in boxes:
                    boxes[d["frame"]] += [[*b["box"], b["class"], b["score"], model] for b in d["detections"]]
        for n, bs in boxes.items():
            bs.sort(key=lambda b: -b[5])
            kept = []
            for b in bs:
                if all(iou(b, k) <= 0.6 for k in kept):
                    kept.append(b)
            out[image_name(stem, n)] = kept
            print(image_name(stem, n), len(bs), "->", len(kept))
    json.dump(out, open(os.path.join(WORK, "prelabels.json"), "w"), indent=0)


def load_image(name):
    stem, n = name[:-4].rsplit("_f", 1)
    return np.asarray(frames(stem)[int(n)]).copy()


def cmd_draw_pre():
    os.makedirs(REVIEW, exist_ok=True)
    pre = json.load(open(os.path.join(WORK, "prelabels.json")))
    for name, bs in pre.items():
        img = load_image(name)
        draw_boxes(img, [(b[0], b[1], b[2], b[3], b[4], i) for i, b in enumerate(bs)])
        encode(img, os.path.join(REVIEW, "pre_" + name[:-4] + ".png"), ["pngenc", "snapshot=true"])


def cmd_crop(name, x1, y1, x2, y2, s=3, which="pre"):
    img = load_image(name + ".jpg" if not name.endswith(".jpg") else name)
    name = name if name.endswith(".jpg") else name + ".jpg"
    if which == "pre":
        pre = json.load(open(os.path.join(WORK, "prelabels.json")))[name]
        boxes = [(b[0], b[1], b[2], b[3], b[4], i) for i, b in enumerate(pre)]
    elif which == "final":
        boxes = final_boxes(name)
    else:
        boxes = []
    c = crop_grid(img, int(x1), int(y1), int(x2), int(y2), int(s), boxes)
    out = os.path.join(REVIEW, f"crop_{which}_{name[:-4]}_{x1}_{y1}.png")
    encode(c, out, ["pngenc", "snapshot=true"])
    print(out)


def labels(name):
    """Final labels of one image: [(x1, y1, x2, y2, class)], clipped to the frame; an edge within 1.5 px of
    the frame's is put on it (the object is cut there)."""
    w, h = CLIPS[name[:-4].rsplit("_f", 1)[0]]
    out = []
    for c, (x1, y1, x2, y2) in LABELS[name]:
        x1, y1 = (0.0 if v < 1.5 else float(v) for v in (x1, y1))
        x2, y2 = (float(w) if x2 > w - 1.5 else float(x2)), (float(h) if y2 > h - 1.5 else float(y2))
        out.append((round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1), c))
    return out


def final_boxes(name):
    return [(*b, i) for i, b in enumerate(labels(name))]


def provenance(name, pre):
    """How the final labels relate to the de-duplicated pre-labels of one image: final boxes matched to
    pre-labels greedily, highest IoU first, IoU >= 0.5. Returns a dict of counts: kept (same class, every
    edge within 1.5 px), moved (same class, an edge moved more), class (class changed; these may also have
    moved), added (no pre-label matched), deleted (pre-labels that matched nothing)."""
    boxes = labels(name)
    pairs = sorted(((iou(b, p), fi, pi) for fi, b in enumerate(boxes) for pi, p in enumerate(pre)), reverse=True)
    match, used = {}, set()
    for v, fi, pi in pairs:
        if v >= 0.5 and fi not in match and pi not in used:
            match[fi] = pi
            used.add(pi)
    n = {"pre": len(pre), "kept": 0, "moved": 0, "class": 0, "added": 0, "deleted": len(pre) - len(used)}
    for fi, b in enumerate(boxes):
        if fi not in match:
            n["added"] += 1
            continue
        p = pre[match[fi]]
        if b[4] != p[4]:
            n["class"] += 1
        elif max(abs(b[k] - p[k]) for k in range(4)) > 1.5:
            n["moved"] += 1
        else:
            n["kept"] += 1
    return n


def cmd_stats():
    """Per clip: the provenance counts (needs WORK/prelabels.json from `prelabels`), final boxes per class,
    and what was left out and why."""
    pre = json.load(open(os.path.join(WORK, "prelabels.json")))
    for stem, picks in PICKS.items():
        tot, cls, left = {}, {}, {}
        for n in picks:
            name = image_name(stem, n)
            for k, v in provenance(name, pre[name]).items():
                tot[k] = tot.get(k, 0) + v
            for b in labels(name):
                cls[b[4]] = cls.get(b[4], 0) + 1
            for reason, _ in LEFT_OUT.get(name, []):
                r = reason.split(":")[0]
                left[r] = left.get(r, 0) + 1
        print(stem, json.dumps(tot), json.dumps(cls), json.dumps(left))


def cmd_build():
    import datetime
    images, anns = [], []
    for stem, picks in PICKS.items():
        w, h = CLIPS[stem]
        for n in picks:
            name = image_name(stem, n)
            iid = len(images) + 1
            images.append({"id": iid, "file_name": name, "width": w, "height": h,
                           "clip": f"{stem}.mp4", "frame_index": n})
            for x1, y1, x2, y2, c in labels(name):
                bw, bh = round(x2 - x1, 1), round(y2 - y1, 1)
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": CAT_ID[c],
                             "bbox": [x1, y1, bw, bh], "area": round(bw * bh, 2), "iscrowd": 0})
    doc = {
        "info": {"description": "junction detection label set: 24 hand-checked frames from the four bundled "
                                "clips (tests/data/*.mp4), 6 per clip; see tests/data/labels/README.md",
                 "version": "1.0", "date_created": DATE, "year": int(DATE[:4]),
                 "convention": "Every road user at least ~8 px on its shorter side and at least half visible has "
                               "one box of its visible extent. A bicycle or motorcycle box covers the bike and its "
                               "rider(s) together (class bicycle/motorcycle; riders are not person); person is "
                               "pedestrians only. Parked vehicles are labelled. Pickups, SUVs and vans are car; "
                               "lorries, box trucks and semi-trailers truck; buses bus. Objects cut by the frame "
                               "edge: the visible part, if at least half is visible. Ambiguous objects (heavily "
                               "occluded, too small or blurred to classify) are left out, not marked: there are "
                               "no ignore regions (iscrowd is 0 everywhere)."},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": n, "supercategory": "vehicle" if n != "person" else "person"}
                       for i, n in CATEGORIES],
    }
    with open(os.path.join(OUTDIR, "annotations.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(images)} images, {len(anns)} annotations")


def cmd_draw_final():
    os.makedirs(REVIEW, exist_ok=True)
    for stem, picks in PICKS.items():
        for n in picks:
            name = image_name(stem, n)
            img = load_image(name)
            draw_boxes(img, final_boxes(name))
            encode(img, os.path.join(REVIEW, "final_" + name[:-4] + ".png"), ["pngenc", "snapshot=true"])


def jpeg_size(path):
    """(width, height) from a JPEG's SOF marker."""
    data = open(path, "rb").read()
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise ValueError(f"{path}: no SOF marker")


def cmd_validate():
    from pycocotools.coco import COCO
    path = os.path.join(OUTDIR, "annotations.json")
    coco = COCO(path)
    doc = json.load(open(path))
    errors = []
    ids = [im["id"] for im in doc["images"]]
    aids = [a["id"] for a in doc["annotations"]]
    if len(set(ids)) != len(ids) or len(set(aids)) != len(aids):
        errors.append("duplicate ids")
    if len({im["file_name"] for im in doc["images"]}) != len(ids):
        errors.append("duplicate file names")
    want = {i: n for i, n in CATEGORIES}
    if {c["id"]: c["name"] for c in doc["categories"]} != want:
        errors.append("categories differ from " + str(want))
    images = {im["id"]: im for im in doc["images"]}
    for im in doc["images"]:
        f = os.path.join(OUTDIR, im["file_name"])
        if not os.path.exists(f):
            errors.append(f"missing {f}")
        elif jpeg_size(f) != (im["width"], im["height"]):
            errors.append(f"{f}: size {jpeg_size(f)} != {(im['width'], im['height'])}")
    for a in doc["annotations"]:
        im = images.get(a["image_id"])
        x, y, w, h = a["bbox"]
        if im is None or a["category_id"] not in want:
            errors.append(f"annotation {a['id']}: bad image or category")
            continue
        if not (x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= im["width"] + 1e-6 and y + h <= im["height"] + 1e-6):
            errors.append(f"annotation {a['id']}: bbox {a['bbox']} outside {im['width']}x{im['height']}")
        if abs(a["area"] - w * h) > 0.01 or a["iscrowd"] != 0:
            errors.append(f"annotation {a['id']}: area or iscrowd")
        if min(w, h) < 7.5:
            errors.append(f"annotation {a['id']}: shorter side {min(w, h)} under ~8 px")
    stems = {}
    for im in doc["images"]:
        stems[im["clip"]] = stems.get(im["clip"], 0) + 1
    print(f"images {len(coco.getImgIds())}, annotations {len(coco.getAnnIds())}, per clip images {stems}")
    for c in coco.loadCats(coco.getCatIds()):
        print(f"  {c['id']} {c['name']}: {len(coco.getAnnIds(catIds=[c['id']]))}")
    print("errors:", errors or "none")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    a = sys.argv[1:]
    {"extract": lambda: cmd_extract(), "prelabels": lambda: cmd_prelabels(), "draw-pre": lambda: cmd_draw_pre(),
     "crop": lambda: cmd_crop(*a[1:]), "build": lambda: cmd_build(), "draw-final": lambda: cmd_draw_final(),
     "validate": lambda: cmd_validate(), "stats": lambda: cmd_stats()}[a[0]]()
