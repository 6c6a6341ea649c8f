#!/usr/bin/env python3
"""Imports a `junction collect` folder with the labelling tools' own import code and prints what each
read, as one JSON object (tests/labels.rs compares it with the collection):

- pycocotools: annotations.json (images, boxes);
- Datumaro, the import engine CVAT is built on: "coco_instances" (annotations/instances_default.json,
  images/) and "yolo" (CVAT's "YOLO 1.1": obj.data, train.txt, labels beside the images);
- Label Studio's converter: YOLO (images/, labels/, classes.txt) and COCO (annotations.json) to tasks.

  .venv/bin/python scripts/check_label_formats.py DIR
"""
import contextlib
import io
import json
import logging
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def pycoco(d):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO(f"{d}/annotations.json")
    names = {k: v["name"] for k, v in c.cats.items()}
    return {"images": len(c.imgs), "boxes": len(c.anns),
            "labels": sorted(names[a["category_id"]] for a in c.anns.values())}


def datumaro(d, fmt):
    from datumaro.components.annotation import AnnotationType
    from datumaro.components.dataset import Dataset
    ds = Dataset.import_from(d, fmt)
    names = [lab.name for lab in ds.categories()[AnnotationType.label].items]
    boxes = [names[a.label] for i in ds for a in i.annotations if a.type == AnnotationType.bbox]
    # Each image's boxes as [label, x, y, w, h] (image pixels), by item id (the image's name).
    by_item = {i.id: sorted([names[a.label], *a.get_bbox()] for a in i.annotations
                            if a.type == AnnotationType.bbox) for i in ds}
    return {"images": len(ds), "boxes": len(boxes), "labels": sorted(boxes), "by_item": by_item}


def label_studio(d):
    from label_studio_converter.imports.coco import convert_coco_to_ls
    from label_studio_converter.imports.yolo import convert_yolo_to_ls
    out = {}
    tmp = tempfile.mkdtemp()
    with contextlib.redirect_stdout(io.StringIO()):
        convert_yolo_to_ls(d, f"{tmp}/yolo.json")
        convert_coco_to_ls(f"{d}/annotations.json", f"{tmp}/coco.json",
                           image_root_url="/data/local-files/?d=images/")
    for kind in ("yolo", "coco"):
        tasks = json.load(open(f"{tmp}/{kind}.json"))
        res = [r for t in tasks for a in t.get("annotations", []) for r in a["result"]]
        out[kind] = {"images": len(tasks), "boxes": len(res),
                     "labels": sorted(lab for r in res for lab in r["value"]["rectanglelabels"])}
    return out


def main():
    d = sys.argv[1]
    ls = label_studio(d)
    print(json.dumps({
        "pycocotools": pycoco(d),
        "datumaro_coco": datumaro(d, "coco_instances"),
        "datumaro_yolo": datumaro(d, "yolo"),
        "label_studio_yolo": ls["yolo"],
        "label_studio_coco": ls["coco"],
    }))


if __name__ == "__main__":
    main()
