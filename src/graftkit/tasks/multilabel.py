"""Multi-label classification: any number of labels per sample, one sigmoid per label."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class MultiLabelTask:
    """Independent yes/no per label; per-class decision thresholds tuned on validation data.

    Args:
        classes: label names; a label's index is its position.
        label_smoothing: targets become `y * (1 - s) + s / 2`.
        thresholds: per-class decision thresholds `[C]` (0.5 until tuned).
    """

    name = "multilabel"
    train_metric = "label_accuracy"
    default_monitor = "macro_f1"
    metric_names = ("macro_f1", "micro_f1", "subset_accuracy", "loss")

    def __init__(self, classes: list[str], *, label_smoothing: float = 0.0, thresholds: list[float] | None = None) -> None:
        self.classes = list(classes)
        self.label_smoothing = label_smoothing
        self.thresholds = np.full(len(self.classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": self.classes, "thresholds": [round(float(t), 6) for t in self.thresholds]}

    def encode(self, labels: list[list[str]]) -> torch.Tensor:
        """Multi-hot targets `[N, C]` (float, as BCE wants them)."""
        index = {c: i for i, c in enumerate(self.classes)}
        out = torch.zeros((len(labels), self.num_classes))
        for row, names in enumerate(labels):
            for name in names:
                out[row, index[name]] = 1.0
        return out

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        linear = nn.Linear(num_features, self.num_classes)
        return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else nn.Sequential(linear)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.float()
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / 2
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
        data; 0.5 for a class without positives there."""
        grid = np.arange(0.05, 0.951, 0.05)
        targets = np.asarray(targets) > 0.5
        for c in range(self.num_classes):
            pos = targets[:, c]
            if not pos.any():
                self.thresholds[c] = 0.5
                continue
            pred = probs[:, c][:, None] >= grid[None, :]  # (N, G)
            tp = (pred & pos[:, None]).sum(axis=0)
            f1 = 2 * tp / np.maximum(pred.sum(axis=0) + pos.sum(), 1)
            self.thresholds[c] = float(grid[int(np.argmax(f1))])

    def full_metrics(self, probs: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        from graftkit.evaluation.metrics import multilabel_metrics

        return multilabel_metrics(targets, probs, self.classes, self.thresholds, loss=loss)

    def decode(self, probs: torch.Tensor, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """Per row: every label at or above its threshold (most probable first); when none is,
        the `top_k` most probable — so a caller always sees scores, and `label` may be empty."""
        out = []
        for row in probs.tolist():
            ranked = sorted(((self.classes[i], p) for i, p in enumerate(row)), key=lambda t: -t[1])
            chosen = [(n, p) for n, p in ranked if p >= self.thresholds[self.classes.index(n)]]
            out.append(chosen or ranked[: max(top_k, 1)])
        return out

    def predicted_labels(self, probs: torch.Tensor) -> list[list[str]]:
        return [[c for c, p, t in zip(self.classes, row, self.thresholds) if p >= t] for row in probs.tolist()]
