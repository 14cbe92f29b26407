"""Object detection: torchvision's detectors (FCOS, RetinaNet, Faster R-CNN, SSDlite) on any
registered image backbone.

The backbone stays the graftkit `Backbone` (so strategies freeze and schedule its layer groups as
for any task); its multi-scale feature maps are read through the network's own API — timm's
`feature_info` + `forward_intermediates` (the maps `features_only` returns), torchvision's
`IntermediateLayerGetter` (what torchvision's `resnet_fpn_backbone` / `mobilenet_backbone` build
on) — and feed a new FPN (or SSDlite's extra layers) and detector head. The BatchNorm layers of the
backbone are frozen by default (`FrozenBatchNorm2d`: statistics and affine fixed), as detection
with small batches needs.

Through the loop's seams: the loader yields `((images, targets), targets)`; in training mode the
model returns its loss terms `[n]` (classification first) and `loss` sums them; in eval mode it
returns detections padded to `[B, K, 6]` (`x1 y1 x2 y2 score label`, label -1 for padding), which
`collect` keeps with the padded targets for COCO mAP.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError
from graftkit.tasks.base import Metric, Prediction, TaskSettings, register_task

DETECTORS = ("fcos", "retinanet", "faster_rcnn", "ssdlite")
DEFAULT_DETECTOR = "fcos"
DETECTIONS_PER_IMAGE = 100
MAX_TARGETS = 300
"""Targets per image kept for the metrics (the readers refuse more: `data.detection.MAX_OBJECTS`)."""
_FPN_CHANNELS = 64
"""FPN width: 64 (torchvision uses 256) keeps the heads light enough to train on a CPU."""


@register_task
class DetectionTask:
    """Boxes and classes for the objects in an image.

    Args:
        classes: Class names (label ids 1..C inside the detector; 0 is the background).
        detector: One of `DETECTORS`.
        freeze_bn: Replace the backbone's BatchNorm by frozen BatchNorm (default).
    """

    name = "detection"
    label_kind = LabelKind.BOXES
    modalities = ("image",)
    backbone_head = "feature-maps"
    default_strategy = "finetune"
    train_metric = "cls_loss"
    metrics = {m.name: m for m in (Metric("map", True), Metric("map50", True), Metric("map75", True))}  # no validation loss: eval-mode detectors compute none
    default_monitor = "map"
    headline = ("map", "map50", "map75")

    def __init__(self, classes: list[str], *, detector: str = DEFAULT_DETECTOR, freeze_bn: bool = True) -> None:
        if detector not in DETECTORS:
            import difflib

            close = difflib.get_close_matches(detector, DETECTORS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--detector {detector!r} is not a known detector{hint}; choose one of: {', '.join(DETECTORS)}")
        self.classes = list(classes)
        self.detector = detector
        self.freeze_bn = freeze_bn
        self._val_samples: list[Any] = []

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "DetectionTask":
        if not classes:
            raise ConfigError("the detection data names no classes; list them in the COCO categories, YOLO names or VOC objects")
        return cls(classes, detector=settings.detector or DEFAULT_DETECTOR, freeze_bn=settings.freeze_bn)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectionTask":
        return cls(d["classes"], detector=d["detector"], freeze_bn=d.get("freeze_bn", True))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": self.classes, "detector": self.detector, "freeze_bn": self.freeze_bn}

    def check_strategy(self, kind: str) -> None:
        if kind in ("lora", "auto"):
            raise ConfigError(
                f"--strategy {kind} does not train a detector; use linear-probe (frozen backbone, the detector head trains), "
                "partial:N, gradual or finetune"
            )

    # ------------------------------------------------------------------------------------ model

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return DetectionModel(backbone, self.detector, self.num_classes, freeze_bn=self.freeze_bn)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        raise ConfigError("a detector is built on the backbone itself: use build_model")

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "detector", "detector": self.detector, "num_classes": self.num_classes, "fpn_channels": _FPN_CHANNELS}

    def encode(self, labels: list[Any]) -> torch.Tensor:
        """Objects per image (the boxes themselves travel through the detection loader)."""
        return torch.tensor([len(label) for label in labels], dtype=torch.long)

    def text_loader(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("--task detection needs an image model")

    # ------------------------------------------------------------------------------------- loop

    def loss(self, logits: torch.Tensor, targets: Any) -> torch.Tensor:
        """Training: the sum of the detector's loss terms. Evaluation: the detectors compute no
        loss in eval mode, so the validation loss is NaN (the metrics are mAP)."""
        if logits.ndim == 1:
            return logits.sum()
        return torch.tensor(float("nan"))

    def batch_score(self, logits: torch.Tensor, targets: Any) -> tuple[torch.Tensor, int]:
        """(classification loss × images, images): the running classification loss."""
        return logits[0].float().cpu() * len(targets), len(targets)

    def collect(self, logits: torch.Tensor, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Detections `[B, K, 6]` and targets padded to `[B, MAX_TARGETS, 5]` (`x1 y1 x2 y2 label`)."""
        return logits.float(), pad_targets(targets)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def epoch_metrics(self, rows: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        m = self.full_metrics(rows, targets)
        return {k: m[k] for k in ("map", "map50", "map75")}

    def full_metrics(self, rows: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        """COCO AP@[.5:.95], AP50, AP75, recall and AP per class (pycocotools)."""
        from graftkit.evaluation.detection import coco_metrics

        m = coco_metrics(unpad_detections(rows), unpad_targets(targets), self.classes)
        per_class = m.pop("per_class")  # AP / recall per class (the report's `per_class` is precision / recall / F1)
        return {**m, "per_class_ap": per_class}

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        self._val_samples = list(samples.get("val", []))
        self._input_size = int(backbone.preprocess.input_size)
        self._val_rows = outputs["val"][0] if "val" in outputs else None
        return {split: self.full_metrics(*out) for split, out in outputs.items()}

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        """No calibration; writes the report's pictures instead: the PR curves per class and
        validation images with predicted (red) and true (green) boxes."""
        from pathlib import Path

        if "val" in final and out_dir is not None:
            final["val"]["figures"] = write_detection_figures(
                Path(out_dir), final["val"], self._val_samples, getattr(self, "_val_rows", None), self.classes, getattr(self, "_input_size", 1)
            )
        for split in final.values():
            split.pop("pr_curves", None)
        return None

    # ---------------------------------------------------------------------------------- predict

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        """One `Prediction` per image: its best box's class and score as label and score, and
        every box (xyxy in the image's own pixels) in `boxes`."""
        from graftkit.data.detection import image_size_of

        rows = source.outputs(inputs, batch_size)
        input_size = int(source.preprocess.input_size)
        return [self.decode_one(name, row, image_size_of(x), input_size, top_k) for name, x, row in zip(names, inputs, rows)]

    def decode_one(self, name: str, row: torch.Tensor, size: tuple[int, int], input_size: int, top_k: int = 1) -> Prediction:
        """A `Prediction` from one padded detection row, boxes scaled from the model's
        `input_size` square back to the image's `size` (H, W)."""
        boxes = []
        row = torch.as_tensor(row)
        keep = row[:, 5] >= 0
        h, w = size
        scale = torch.tensor([w / input_size, h / input_size, w / input_size, h / input_size])
        for r in row[keep]:
            box = (r[:4] * scale).tolist()
            boxes.append({"box": [round(v, 2) for v in box], "label": self.classes[int(r[5])], "score": round(float(r[4]), 4)})
        best = boxes[0] if boxes else None
        top = [(b["label"], b["score"]) for b in boxes[: max(top_k, 1)]]
        return DetectionPrediction(name, best["label"] if best else "", best["score"] if best else 0.0, top, boxes=boxes)

    def card(self) -> dict[str, Any]:
        return {
            "does": f"finds objects of its {self.num_classes} classes in an image: a box (x1, y1, x2, y2 pixels), class and score for each ({self.detector} detector)",
            "caveats": [
                "Images are resized to a square input: very small objects (a few pixels after resizing) are often missed.",
                "Scores are detector confidences, not calibrated probabilities; choose a score threshold on validation data.",
            ],
        }

    def export_spec(self) -> dict[str, Any]:
        return {"activation": "detections", "outputs": "x1 y1 x2 y2 score label per row; label -1 pads"}

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        """Share of reference boxes (score ≥ 0.3) that the export finds again: same label, IoU ≥
        0.9 and score within 0.05."""
        return box_agreement(reference, exported), "boxes (IoU ≥ 0.9), labels and scores"


@dataclass(frozen=True)
class DetectionPrediction(Prediction):
    """A `Prediction` with every box: `label` / `score` are the best box's."""

    boxes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "boxes": self.boxes}


# ------------------------------------------------------------------------------------- model


class DetectionModel(nn.Module):
    """`backbone` (the graftkit Backbone) + `head` (a torchvision detector whose body reads the
    backbone's feature maps; the body's parameters are registered once, under `backbone.*`).

    `forward((images, targets))` while training returns the loss terms `[n]` (classification
    first); `forward(images)` or `forward((images, targets))` in eval mode returns detections
    `[B, DETECTIONS_PER_IMAGE, 6]`.
    """

    def __init__(self, backbone: nn.Module, detector: str, num_classes: int, *, freeze_bn: bool = True) -> None:
        super().__init__()
        if freeze_bn:
            from timm.layers import freeze_batch_norm_2d

            backbone.model = freeze_batch_norm_2d(backbone.model)
        self.backbone = backbone
        self.detector = detector
        pre = backbone.preprocess
        self.input_size = int(pre.input_size)
        body, channels = feature_maps(backbone)
        self.head = build_detector(detector, body, channels, num_classes + 1, self.input_size, list(pre.mean), list(pre.std))

    def forward(self, x: Any) -> torch.Tensor:
        images, targets = x if isinstance(x, (tuple, list)) else (x, None)
        if self.training:
            if targets is None:
                raise ConfigError("a detection model trains on (images, targets) batches")
            losses = self.head(list(images), targets)
            names = sorted(losses, key=lambda k: ("class" not in k, k))
            return torch.stack([losses[k] for k in names])
        return pad_detections(self.head(list(images)), DETECTIONS_PER_IMAGE)


class _Body(nn.Module):
    """Calls `fn` (the backbone's multi-scale feature maps) without registering the backbone's
    modules a second time: their parameters belong to `DetectionModel.backbone`."""

    def __init__(self, fn: Callable[[torch.Tensor], list[torch.Tensor]], channels: list[int]) -> None:
        super().__init__()
        object.__setattr__(self, "_fn", fn)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._fn(x)


def feature_maps(backbone: nn.Module) -> tuple[_Body, list[int]]:
    """The backbone's feature maps at strides 8, 16, 32, and their channels.

    timm models: `feature_info` picks the stages and `forward_intermediates` returns them (the
    maps `features_only=True` gives). torchvision models: `IntermediateLayerGetter` over
    `layer2..layer4` (ResNet-like) or the stride-8/16/32 ends of `features` (MobileNet, EfficientNet,
    ConvNeXt...), as torchvision's own detection backbones do.

    Raises:
        ConfigError: The network exposes neither.
    """
    net = backbone.model
    if hasattr(net, "forward_intermediates") and hasattr(net, "feature_info"):
        info = list(net.feature_info)
        picks = [max(i for i, f in enumerate(info) if f["reduction"] == r) for r in (8, 16, 32) if any(f["reduction"] == r for f in info)]
        if len(picks) == 3:
            channels = [int(info[i]["num_chs"]) for i in picks]
            return _Body(lambda x: list(net.forward_intermediates(x, indices=picks, intermediates_only=True)), channels), channels
    from torchvision.models._utils import IntermediateLayerGetter

    if all(hasattr(net, f"layer{i}") for i in (2, 3, 4)):
        getter = IntermediateLayerGetter(net, {"layer2": "0", "layer3": "1", "layer4": "2"})
    elif isinstance(getattr(net, "features", None), nn.Sequential):
        ends = _stride_ends(net.features)
        getter = IntermediateLayerGetter(net.features, {str(i): str(k) for k, i in enumerate(ends)})
    else:
        raise ConfigError(f"{backbone.weights.arch} exposes no multi-scale feature maps for a detector; choose a CNN (efficientnet_lite0, tv:mobilenet_v2, timm:resnet18, ...)")
    with torch.no_grad():
        was = net.training
        net.eval()
        channels = [int(t.shape[1]) for t in getter(torch.zeros(1, 3, 64, 64)).values()]
        net.train(was)
    return _Body(lambda x: list(getter(x).values()), channels), channels


def _stride_ends(features: nn.Sequential) -> list[int]:
    """Indices of the last child of `features` at strides 8, 16 and 32 (from a 64-pixel probe)."""
    x = torch.zeros(1, 3, 64, 64)
    last: dict[int, int] = {}
    with torch.no_grad():
        was = features.training
        features.eval()
        for i, block in enumerate(features):
            x = block(x)
            last[64 // x.shape[-1]] = i
        features.train(was)
    missing = [s for s in (8, 16, 32) if s not in last]
    if missing:
        raise ConfigError(f"the backbone's features reach no stride {missing}; a detector needs strides 8, 16 and 32")
    return [last[s] for s in (8, 16, 32)]


class _Pyramid(nn.Module):
    """The body's maps through a new FPN (torchvision's `FeaturePyramidNetwork`)."""

    def __init__(self, body: _Body, channels: list[int], extra: nn.Module) -> None:
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.body = body
        self.fpn = FeaturePyramidNetwork(channels, _FPN_CHANNELS, extra_blocks=extra)
        self.out_channels = _FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


class _SSDLiteBody(nn.Module):
    """The stride-16 and stride-32 maps and four new depthwise-separable stride-2 blocks, as
    torchvision's `ssdlite320_mobilenet_v3_large` builds them."""

    def __init__(self, body: _Body, channels: list[int]) -> None:
        super().__init__()
        self.body = body
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        widths = [channels[2], 256, 128, 128, 64]
        self.extra = nn.ModuleList(_extra_block(widths[i], widths[i + 1], norm) for i in range(4))
        self.out_channels = [channels[1], channels[2], *widths[1:]]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = self.body(x)[1:]
        y = maps[-1]
        for block in self.extra:
            y = block(y)
            maps.append(y)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def _extra_block(cin: int, cout: int, norm: Callable[..., nn.Module]) -> nn.Module:
    mid = cout // 2
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1, bias=False), norm(mid), nn.ReLU6(inplace=True),
        nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False), norm(mid), nn.ReLU6(inplace=True),
        nn.Conv2d(mid, cout, 1, bias=False), norm(cout), nn.ReLU6(inplace=True),
    )  # fmt: skip


def build_detector(kind: str, body: _Body, channels: list[int], num_classes: int, size: int, mean: list[float], std: list[float]) -> nn.Module:
    """A torchvision detector over `body`'s maps; `num_classes` counts the background. Images are
    taken at `size` x `size` (the loaders resize to it), normalised with the backbone's mean/std."""
    from torchvision.models import detection as D
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    common = {"min_size": size, "max_size": size, "image_mean": mean, "image_std": std}
    if kind == "fcos":
        return D.FCOS(_Pyramid(body, channels, LastLevelP6P7(_FPN_CHANNELS, _FPN_CHANNELS)), num_classes, detections_per_img=DETECTIONS_PER_IMAGE, **common)
    if kind == "retinanet":
        return D.RetinaNet(_Pyramid(body, channels, LastLevelP6P7(_FPN_CHANNELS, _FPN_CHANNELS)), num_classes, detections_per_img=DETECTIONS_PER_IMAGE, **common)
    if kind == "faster_rcnn":
        anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
        return D.FasterRCNN(
            _Pyramid(body, channels, LastLevelMaxPool()), num_classes, rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2),
            rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
            box_detections_per_img=DETECTIONS_PER_IMAGE, **common,
        )  # fmt: skip
    if kind == "ssdlite":
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
        from torchvision.models.detection.ssdlite import SSDLiteHead

        neck = _SSDLiteBody(body, channels)
        anchors = DefaultBoxGenerator([[2, 3] for _ in neck.out_channels], min_ratio=0.2, max_ratio=0.95)
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        head = SSDLiteHead(neck.out_channels, anchors.num_anchors_per_location(), num_classes, norm)
        from torchvision.models.detection.ssd import SSD

        return SSD(neck, anchors, (size, size), num_classes, mean, std, head=head, score_thresh=0.01, detections_per_img=DETECTIONS_PER_IMAGE, topk_candidates=300)
    raise ConfigError(f"--detector {kind!r} is not one of {', '.join(DETECTORS)}")


# ------------------------------------------------------------------------------ padded tensors


def pad_detections(detections: list[dict[str, torch.Tensor]], k: int) -> torch.Tensor:
    """torchvision's per-image `{"boxes", "scores", "labels"}` → `[B, k, 6]`, labels 0-based, -1 pads."""
    rows = []
    for d in detections:  # concatenate then cut, not index by count: the ONNX trace stays valid for any count
        found = torch.cat([d["boxes"].float(), d["scores"].float()[:, None], d["labels"].float()[:, None] - 1], dim=1)
        pad = torch.zeros(k, 6, dtype=found.dtype, device=found.device)
        pad[:, 5] = -1
        rows.append(torch.cat([found, pad])[:k])
    return torch.stack(rows)


def pad_targets(targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Targets → `[B, MAX_TARGETS, 5]` (`x1 y1 x2 y2 label`, label 0-based, -1 pads)."""
    out = torch.zeros(len(targets), MAX_TARGETS, 5)
    out[:, :, 4] = -1
    for i, t in enumerate(targets):
        n = min(len(t["boxes"]), MAX_TARGETS)
        out[i, :n, :4] = t["boxes"][:n].float().cpu()
        out[i, :n, 4] = t["labels"][:n].float().cpu() - 1
    return out


def unpad_detections(rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(r[r[:, 5] >= 0, :4], r[r[:, 5] >= 0, 4], r[r[:, 5] >= 0, 5].astype(np.int64)) for r in np.asarray(rows)]


def unpad_targets(targets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(t[t[:, 4] >= 0, :4], t[t[:, 4] >= 0, 4].astype(np.int64)) for t in np.asarray(targets)]


def box_agreement(reference: torch.Tensor, exported: torch.Tensor, *, min_score: float = 0.3, iou: float = 0.9, score_tol: float = 0.05) -> float:
    """Share of the reference's confident boxes (score ≥ `min_score`) matched in `exported` by a
    box of the same label with IoU ≥ `iou` and a score within `score_tol` (1.0 when there are none)."""
    from torchvision.ops import box_iou

    found = total = 0
    for ref, exp in zip(torch.as_tensor(reference), torch.as_tensor(exported)):
        ref = ref[(ref[:, 5] >= 0) & (ref[:, 4] >= min_score)]
        exp = exp[exp[:, 5] >= 0]
        total += len(ref)
        if len(ref) == 0 or len(exp) == 0:
            continue
        ious = box_iou(ref[:, :4], exp[:, :4])
        same = (ref[:, 5:6] == exp[None, :, 5]) & ((ref[:, 4:5] - exp[None, :, 4]).abs() <= score_tol)
        found += int(((ious >= iou) & same).any(dim=1).sum())
    return found / total if total else 1.0


def write_detection_figures(
    out_dir: Any, metrics: dict[str, Any], samples: list[Any], rows: np.ndarray | None, classes: list[str], size: int, n: int = 8
) -> list[dict[str, str]]:
    """`pr_curves.png` and `val_boxes_*.png` (predicted boxes red, true boxes green, for the
    first `n` validation images); returns the report's figure entries."""
    from graftkit.data.images import load_image
    from graftkit.evaluation.detection import draw_boxes, plot_pr_curves, save_image

    figures = []
    curves = metrics.get("pr_curves") or {}
    if len(curves) > 1:
        plot_pr_curves(curves, out_dir / "pr_curves.png")
        figures.append({"title": "Precision-recall per class (val, IoU 0.5)", "file": "pr_curves.png"})
    if rows is None:
        return figures
    for i, (sample, row) in enumerate(zip(samples[:n], rows[:n])):
        image = load_image(sample.path).contiguous()
        h, w = image.shape[-2:]
        keep = (row[:, 5] >= 0) & (row[:, 4] >= 0.3)
        scale = np.array([w / size, h / size, w / size, h / size], dtype=np.float32)
        pred = row[keep, :4] * scale
        drawn = draw_boxes(image, np.asarray(sample.label.boxes, dtype=np.float32), list(sample.label.classes), colors="lime")
        drawn = draw_boxes(drawn, pred, [f"{classes[int(l)]} {s:.2f}" for l, s in zip(row[keep, 5], row[keep, 4])], colors="red")
        name = f"val_boxes_{i}.png"
        save_image(drawn, out_dir / name)
        figures.append({"title": f"{sample.path.name}: predicted (red, score ≥ 0.3) vs true (green)", "file": name})
    return figures
