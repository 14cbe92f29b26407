"""Tiny box data sets for the detection tests: coloured squares on noise, one format per writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("red", "blue")
_COLOURS = {"red": (230, 30, 30), "blue": (30, 30, 230)}


def make_scenes(root: Path, n: int = 12, size: int = 64, seed: int = 0, negatives: int = 2) -> list[dict]:
    """`n` images in `root/images/` with 1-2 squares each (the last `negatives` have none)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(n):
        pixels = rng.integers(90, 160, (size, size, 3), dtype=np.uint8)
        objects = []
        for _ in range(0 if i >= n - negatives else 1 + i % 2):
            name = CLASSES[len(objects) % 2 if i % 3 else 0]
            side = int(rng.integers(size // 4, size // 2))
            x, y = (int(v) for v in rng.integers(0, size - side, 2))
            pixels[y : y + side, x : x + side] = _COLOURS[name]
            objects.append({"box": [x, y, x + side, y + side], "class": name})
        file = root / "images" / f"scene_{i}.png"
        Image.fromarray(pixels).save(file)
        scenes.append({"file": file, "width": size, "height": size, "objects": objects})
    return scenes


def write_coco(root: Path, scenes: list[dict], name: str = "annotations.json") -> Path:
    cats = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
    images, anns = [], []
    for i, s in enumerate(scenes):
        images.append({"id": i + 1, "file_name": str(s["file"].relative_to(root)), "width": s["width"], "height": s["height"]})
        for o in s["objects"]:
            x1, y1, x2, y2 = o["box"]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": CLASSES.index(o["class"]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    path = root / name
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def write_yolo(root: Path, scenes: list[dict]) -> Path:
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for s in scenes:
        lines = []
        for o in s["objects"]:
            x1, y1, x2, y2 = o["box"]
            w, h = s["width"], s["height"]
            lines.append(f"{CLASSES.index(o['class'])} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        if lines:  # negatives have no label file
            (root / "labels" / (s["file"].stem + ".txt")).write_text("\n".join(lines) + "\n")
    path = root / "data.yaml"
    path.write_text("path: .\ntrain: images\nnames:\n" + "".join(f"  {k}: {c}\n" for k, c in enumerate(CLASSES)))
    return path


def write_voc(root: Path, scenes: list[dict]) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for s in scenes:
        target = root / "JPEGImages" / s["file"].name
        target.write_bytes(s["file"].read_bytes())
        objs = "".join(
            f"<object><name>{o['class']}</name><bndbox><xmin>{o['box'][0]}</xmin><ymin>{o['box'][1]}</ymin>"
            f"<xmax>{o['box'][2]}</xmax><ymax>{o['box'][3]}</ymax></bndbox></object>"
            for o in s["objects"]
        )
        xml = f"<annotation><filename>{s['file'].name}</filename><size><width>{s['width']}</width><height>{s['height']}</height><depth>3</depth></size>{objs}</annotation>"
        (root / "Annotations" / (s["file"].stem + ".xml")).write_text(xml)
    return root
