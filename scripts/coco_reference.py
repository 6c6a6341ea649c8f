#!/usr/bin/env python3
"""pycocotools' box AP for a labelled set and a result file, the reference `junction eval --labels`
is tested against (tests/labels.rs). Prints one JSON object: AP@0.5:0.95 and AP@0.5 over the categories
with labelled boxes (COCOeval's stats[0] and stats[1]) and per category, area "all", 100 detections
an image and category.

  .venv/bin/python scripts/coco_reference.py LABELS.json RESULTS.json
"""
import contextlib
import io
import json
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def main():
    labels, results = sys.argv[1], sys.argv[2]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(labels)
        dets = json.load(open(results))
        dt = gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T thresholds, R recall points, K categories, A areas, M maxDets]; area "all" is 0,
    # 100 detections the last maxDets.
    p = ev.eval["precision"][:, :, :, 0, -1]
    per = {}
    for k, cat in enumerate(ev.params.catIds):
        name = gt.cats[cat]["name"]
        pk = p[:, :, k]
        per[name] = {
            "ap": float(np.mean(pk[pk > -1])) if (pk > -1).any() else None,
            "ap50": float(np.mean(pk[0][pk[0] > -1])) if (pk[0] > -1).any() else None,
        }
    print(json.dumps({"ap": float(ev.stats[0]), "ap50": float(ev.stats[1]), "classes": per}))


if __name__ == "__main__":
    main()
