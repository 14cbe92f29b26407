"""Single-label classification: labels, head, loss, metrics and decoding."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ClassificationTask:
    """Owns everything class-specific so that the loop stays task-agnostic.

    Args:
        classes: class names; a label's index is its position.
        label_smoothing: cross-entropy label smoothing.
        class_weights: optional per-class loss weights, `[C]`.
    """

    name = "classification"
    train_metric = "accuracy"
    default_monitor = "accuracy"
    metric_names = ("accuracy", "balanced_accuracy", "macro_f1", "loss")

    def __init__(self, classes: list[str], *, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> None:
        self.classes = list(classes)
        self.label_smoothing = label_smoothing
        self.class_weights = class_weights

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """The task's part of graft.json."""
        return {"name": self.name, "classes": self.classes}

    def encode(self, labels: list[str]) -> torch.Tensor:
        """Class indices `[N]` for label names (all known: the data readers checked them)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([index[label] for label in labels], dtype=torch.long)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        """The new output layer: (dropout +) linear, `[B, D] -> [B, C]`."""
        linear = nn.Linear(num_features, self.num_classes)
        return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else nn.Sequential(linear)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy; `targets` are class indices `[B]` or soft targets `[B, C]` (mixup/cutmix)."""
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        return F.cross_entropy(logits.float(), targets, weight=weight, label_smoothing=self.label_smoothing)

    @staticmethod
    def hard_targets(targets: torch.Tensor) -> torch.Tensor:
        return targets.argmax(dim=1) if targets.ndim == 2 else targets

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Number of correct top-1 predictions in the batch (a tensor: no host sync here)."""
        return (logits.argmax(dim=1) == self.hard_targets(targets)).sum()

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(correct, count) for the running training accuracy."""
        return self.correct(logits, targets), len(targets)

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample rows kept for the epoch's metrics: probabilities `[B, C]` and targets `[B]`."""
        return self.activate(logits), targets

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Model outputs → what `decode` and the metrics read (probabilities)."""
        return torch.softmax(logits.float(), dim=1)

    def epoch_metrics(self, probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Cheap per-epoch validation metrics from a confusion matrix (no scikit-learn call per epoch).

        Same definitions as the report's: balanced accuracy over classes present in `targets`,
        macro-F1 over classes present in `targets` or predictions.
        """
        c = self.num_classes
        pred = probs.argmax(axis=1)
        cm = np.bincount(targets * c + pred, minlength=c * c).reshape(c, c).astype(np.float64)
        tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
        present = support > 0
        recall = np.divide(tp, support, out=np.zeros(c), where=present)
        precision = np.divide(tp, predicted, out=np.zeros(c), where=predicted > 0)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(c), where=(precision + recall) > 0)
        return {
            "accuracy": float(tp.sum() / max(len(targets), 1)),
            "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
            "macro_f1": float(f1[present | (predicted > 0)].mean()) if len(targets) else 0.0,
        }

    def full_metrics(self, probs: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        """Every metric of the report: per-class scores, top-k, confusion matrix."""
        from graftkit.evaluation import classification_metrics

        return classification_metrics(targets, probs, self.classes, loss=loss)

    def decode(self, probs: torch.Tensor, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """Top-k (class name, probability) per row."""
        k = min(top_k, self.num_classes)
        scores, idx = probs.topk(k, dim=1)
        return [[(self.classes[i], float(s)) for s, i in zip(srow, irow)] for srow, irow in zip(scores.tolist(), idx.tolist())]


def balanced_class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (scikit-learn's `balanced`)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)
