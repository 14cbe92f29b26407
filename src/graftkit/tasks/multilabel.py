"""Multi-label classification: any number of labels per sample, one sigmoid per label."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graftkit.data.labels import LabelKind
from graftkit.tasks.base import Metric, Prediction, TaskSettings, label_text_loader, linear_head, predict_with_head, register_task
from graftkit.tasks.model import GraftModel


@register_task
class MultiLabelTask:
    """Independent yes/no per label; per-class decision thresholds tuned on validation data.

    Args:
        classes: label names; a label's index is its position.
        label_smoothing: targets become `y * (1 - s) + s / 2`.
        thresholds: per-class decision thresholds `[C]` (0.5 until tuned).
    """

    name = "multilabel"
    label_kind = LabelKind.CLASSES
    modalities = ("image", "text", "audio")
    backbone_head = "features"
    default_strategy = "linear-probe"
    linear_solver = "lbfgs"  # convex loss in the logits: the probe solves the head (training/solver.py)
    train_metric = "label_accuracy"
    metrics = {m.name: m for m in (Metric("macro_f1", True), Metric("micro_f1", True), Metric("subset_accuracy", True), Metric("loss", False))}
    default_monitor = "macro_f1"
    headline = ("macro_f1", "micro_f1")

    def __init__(
        self,
        classes: list[str],
        *,
        label_smoothing: float = 0.0,
        thresholds: list[float] | None = None,
        focal_gamma: float | None = None,
        target_sensitivity: float | None = None,
    ) -> None:
        self.classes = list(classes)
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.target_sensitivity = target_sensitivity
        """When set, each label's threshold is its validation operating point at this sensitivity."""
        self.thresholds = np.full(len(self.classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.threshold_note: str | None = None
        """After `finish`: how the validation figures at the thresholds were obtained (cross-fitted or in-sample)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "MultiLabelTask":
        return cls(classes, label_smoothing=settings.label_smoothing, focal_gamma=settings.focal_gamma, target_sensitivity=settings.target_sensitivity)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MultiLabelTask":
        return cls(d["classes"], thresholds=d.get("thresholds"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": self.classes, "thresholds": [round(float(t), 6) for t in self.thresholds]}

    def check_strategy(self, kind: str) -> None:
        return None

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return GraftModel(backbone, self.build_head(backbone.num_features, dropout))

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "linear", "in_features": num_features, "out_features": self.num_classes, "dropout": dropout}

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        return label_text_loader(self, samples, tokenizer, max_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def encode(self, labels: list[list[str]]) -> torch.Tensor:
        """Multi-hot targets `[N, C]` (float, as BCE wants them)."""
        index = {c: i for i, c in enumerate(self.classes)}
        out = torch.zeros((len(labels), self.num_classes))
        for row, names in enumerate(labels):
            for name in names:
                out[row, index[name]] = 1.0
        return out

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        return linear_head(num_features, self.num_classes, dropout)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.float()
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / 2
        if self.focal_gamma is not None:
            from torchvision.ops import sigmoid_focal_loss

            return sigmoid_focal_loss(logits.float(), targets, alpha=-1, gamma=self.focal_gamma, reduction="mean")
        return F.binary_cross_entropy_with_logits(logits.float(), targets)

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(right label decisions at 0.5, number of decisions)."""
        return ((logits > 0) == (targets > 0.5)).sum(), targets.numel()

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.activate(logits), targets

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Model outputs → what `decode` and the metrics read (probabilities)."""
        return torch.sigmoid(logits.float())

    def epoch_metrics(self, probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Macro/micro F1 and subset accuracy at the current thresholds."""
        from graftkit.evaluation.metrics import multilabel_metrics

        if len(targets) == 0:
            return {"macro_f1": 0.0, "micro_f1": 0.0, "subset_accuracy": 0.0}
        m = multilabel_metrics(targets, probs, self.classes, self.thresholds)
        return {k: m[k] for k in ("macro_f1", "micro_f1", "subset_accuracy")}

    def fit_thresholds(self, probs: np.ndarray, targets: np.ndarray) -> None:
        """Per class, the threshold in 0.05…0.95 that maximises that class's F1 on (validation)
        data (0.5 for a class without positives there); with `target_sensitivity`, each label's
        operating point at that sensitivity instead."""
        self.thresholds = self._fitted(probs, targets)[0]

    def _fitted(self, probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, str]:
        """(per-class thresholds fitted on these predictions by the task's rule, the rule's words)."""
        from graftkit.evaluation.clinical import choose_operating_point

        probs, targets = np.asarray(probs), np.asarray(targets) > 0.5
        thresholds, rule = np.full(self.num_classes, 0.5), "F1-best threshold on validation"
        if self.target_sensitivity is not None:
            for c in range(self.num_classes):
                point = choose_operating_point(probs[:, c], targets[:, c], self.target_sensitivity)
                thresholds[c], rule = point["threshold"], point["rule"]
            return thresholds, rule
        grid = np.arange(0.05, 0.951, 0.05)
        for c in range(self.num_classes):
            pos = targets[:, c]
            if not pos.any():
                continue
            pred = probs[:, c][:, None] >= grid[None, :]  # (N, G)
            tp = (pred & pos[:, None]).sum(axis=0)
            f1 = 2 * tp / np.maximum(pred.sum(axis=0) + pos.sum(), 1)
            thresholds[c] = float(grid[int(np.argmax(f1))])
        return thresholds, rule

    def cross_fit(self, probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray | None, str]:
        """Held-out thresholds per sample `[N, C]`: each seeded half of validation (a permutation)
        gets the thresholds fitted on the other half; None (and a note saying so) when validation
        is too small (`evaluation.calibration.MIN_CROSS_FIT`)."""
        from graftkit.evaluation.calibration import CROSS_FIT_NOTE, halves, in_sample_note

        probs, targets = np.asarray(probs), np.asarray(targets)
        split = halves(len(probs))
        if isinstance(split, str):
            return None, in_sample_note(split)
        rows = np.empty(probs.shape, dtype=np.float64)
        for fit_on, score_on in (split, split[::-1]):
            rows[score_on] = self._fitted(probs[fit_on], targets[fit_on])[0][None, :]
        return rows, CROSS_FIT_NOTE

    def full_metrics(self, probs: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        from graftkit.evaluation.metrics import multilabel_metrics

        return multilabel_metrics(targets, probs, self.classes, self.thresholds, loss=loss)

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        """Thresholds fitted on all of validation, then every split's metrics at them; validation's
        own figures (F1s, per-label P/R, clinical sensitivity / specificity) are cross-fitted on
        halves (`cross_fit`), so none is scored on the data that chose its threshold."""
        from graftkit.evaluation.clinical import clinical_metrics
        from graftkit.evaluation.metrics import multilabel_metrics

        rule, rows, note = "F1-best threshold on validation", None, None
        if "val" in outputs:
            probs, y, _ = outputs["val"]
            self.thresholds, rule = self._fitted(probs, y)
            rows, note = self.cross_fit(probs, y)
        final = {split: self.full_metrics(*out) for split, out in outputs.items()}
        if rows is not None:
            probs, y, loss = outputs["val"]
            kept = final["val"]["thresholds"]
            final["val"] = {**multilabel_metrics(y, probs, self.classes, rows, loss=loss), "thresholds": kept}
        if note is not None:
            final["val"]["cross_fit"] = note
        self.threshold_note = note
        for split, (probs, y, _) in outputs.items():  # per label, at the thresholds the model uses
            probs, y = np.asarray(probs), np.asarray(y) > 0.5
            held = split == "val" and rows is not None
            final[split]["clinical"] = {
                name: clinical_metrics(probs[:, c], y[:, c], {"threshold": float(self.thresholds[c]), "rule": rule},
                                       row_thresholds=rows[:, c] if held else None, cross_fit=note if split == "val" else None)
                for c, name in enumerate(self.classes)
            }  # fmt: skip
        return final

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        return None  # per-label thresholds are the calibration that matters here

    def decode(self, probs: torch.Tensor, top_k: int = 1) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """Per row: (the labels at or above their thresholds joined by `|` — possibly none —, the
        lowest chosen probability, and the scores: every chosen label, most probable first, or
        the `top_k` most probable when none is chosen)."""
        out = []
        for row in probs.tolist():
            ranked = sorted(((self.classes[i], p) for i, p in enumerate(row)), key=lambda t: -t[1])
            chosen = [(n, p) for n, p in ranked if p >= self.thresholds[self.classes.index(n)]]
            names = sorted((n for n, _ in chosen), key=self.classes.index)
            shown = chosen or ranked[: max(top_k, 1)]
            out.append(("|".join(names), min((p for _, p in chosen), default=0.0), shown))
        return out

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        return predict_with_head(self, source, inputs, names, top_k, batch_size)

    def card(self) -> dict[str, Any]:
        rule = f"validation sensitivity >= {self.target_sensitivity:g}" if self.target_sensitivity is not None else "best validation F1"
        points = ", ".join(f"{c} >= {t:.3f}" for c, t in zip(self.classes, self.thresholds))
        return {"does": "assigns every label whose probability passes its threshold (possibly none)",
                "caveats": ["Thresholds were tuned on the validation split; a different label balance needs them tuned again.",
                            f"Operating points (per label, {rule}): {points}."]
                           + ([f"Validation metrics at the thresholds: {self.threshold_note}."] if self.threshold_note else [])}  # fmt: skip

    def export_spec(self) -> dict[str, Any]:
        return {"activation": "sigmoid", "thresholds": [round(float(t), 6) for t in self.thresholds]}

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        if len(reference) == 0:
            return 1.0, "nothing"
        a, b = self.predicted_labels(self.activate(reference)), self.predicted_labels(self.activate(exported))
        return float(np.mean([set(x) == set(y) for x, y in zip(a, b)])), "label set"

    def predicted_labels(self, probs: torch.Tensor) -> list[list[str]]:
        return [[c for c, p, t in zip(self.classes, row, self.thresholds) if p >= t] for row in probs.tolist()]
