"""Detection metrics through pycocotools (the COCO reference implementation), the per-class
precision-recall curves, and pictures of predicted vs true boxes.

`coco_metrics` returns the COCO headline (`map` = AP@[.5:.95], `map50`, `map75`), AP and recall
per class, and the interpolated precision at 101 recall points per class at IoU 0.5 for the plots.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

Boxes = np.ndarray
"""`[n, 4]` xyxy pixels."""


def coco_metrics(
    predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    targets: Sequence[tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str],
) -> dict[str, Any]:
    """COCO AP over images.

    Args:
        predictions: Per image `(boxes [n, 4] xyxy, scores [n], labels [n])`; labels index `classes`.
        targets: Per image `(boxes [m, 4] xyxy, labels [m])`.
        classes: Class names.

    Returns:
        `map`, `map50`, `map75`, `mar100` (recall with 100 detections per image), `per_class`
        (`{name: {"ap", "ap50", "recall", "support"}}`), `pr_curves` (`{"recall": [...], name:
        [precision...]}` at IoU 0.5) and `images` / `objects` counted.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for i, ((tb, tl), (pb, ps, pl)) in enumerate(zip(targets, predictions)):
        images.append({"id": i, "width": 1, "height": 1})
        for j, (box, label) in enumerate(zip(np.asarray(tb).reshape(-1, 4), np.asarray(tl).reshape(-1))):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label), "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0})
        for box, score, label in zip(np.asarray(pb).reshape(-1, 4), np.asarray(ps).reshape(-1), np.asarray(pl).reshape(-1)):
            detections.append({"image_id": i, "category_id": int(label), "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])], "score": float(score)})
    support = np.bincount([a["category_id"] for a in annotations], minlength=len(classes))
    empty = {"map": 0.0, "map50": 0.0, "map75": 0.0, "mar100": 0.0, "images": len(images), "objects": len(annotations)}
    if not annotations or not detections:
        per_class = {c: {"ap": 0.0, "ap50": 0.0, "recall": 0.0, "support": int(support[k])} for k, c in enumerate(classes)}
        return {**empty, "per_class": per_class, "pr_curves": {"recall": np.linspace(0, 1, 101).tolist()}}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": k, "name": c} for k, c in enumerate(classes)]}
        gt.createIndex()
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T iou, R recall, K class, A area, M maxdets]
    recall = ev.eval["recall"]  # [T, K, A, M]
    per_class, curves = {}, {"recall": [float(r) for r in ev.params.recThrs]}
    for k, c in enumerate(classes):
        p = precision[:, :, k, 0, -1]
        r = recall[:, k, 0, -1]
        seen = support[k] > 0
        per_class[c] = {
            "ap": float(p[p > -1].mean()) if seen and (p > -1).any() else None,
            "ap50": float(p[0][p[0] > -1].mean()) if seen and (p[0] > -1).any() else None,
            "recall": float(r[r > -1].mean()) if seen and (r > -1).any() else None,
            "support": int(support[k]),
        }
        if seen:
            curves[c] = [max(float(v), 0.0) for v in precision[0, :, k, 0, -1]]
    stats = [max(float(s), 0.0) for s in ev.stats]
    return {"map": stats[0], "map50": stats[1], "map75": stats[2], "mar100": stats[8], "images": len(images), "objects": len(annotations),
            "per_class": per_class, "pr_curves": curves}  # fmt: skip


def plot_pr_curves(curves: dict[str, list[float]], path: str | Path) -> Path:
    """One precision-recall curve per class (IoU 0.5) into a PNG."""
    from graftkit.evaluation.plots import new_figure, save_figure

    fig, ax = new_figure(6.0, 4.5)
    recall = curves.get("recall", [])
    for name, precision in curves.items():
        if name != "recall":
            ax.plot(recall, precision, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall per class (IoU 0.5)")
    if len(curves) > 1:
        ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def draw_boxes(
    image: Any, boxes: np.ndarray, labels: Sequence[str], *, colors: str | Sequence[str] = "red", width: int = 2
) -> Any:
    """`image` (uint8 `[3, H, W]` tensor) with `boxes` (xyxy) and their `labels` drawn on it."""
    import torch
    from torchvision.utils import draw_bounding_boxes

    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    if len(b) == 0:
        return image
    return draw_bounding_boxes(image, b, labels=list(labels), colors=colors, width=width)


def save_image(image: Any, path: str | Path) -> Path:
    """A uint8 `[3, H, W]` tensor as a PNG."""
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path)
    return Path(path)
