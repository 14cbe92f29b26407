"""Regression: one number per sample (a sentiment score, an age, a rating)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class RegressionTask:
    """Predicts one value; trains on standardised targets so learning rates transfer across scales.

    Args:
        mean, std: the training targets' mean and standard deviation (stored in the run).
    """

    name = "regression"
    train_metric = "mae"
    default_monitor = "mae"
    metric_names = ("mae", "rmse", "r2", "loss")
    classes: list[str] = []

    def __init__(self, *, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = float(mean)
        self.std = float(std) if std > 0 else 1.0

    @classmethod
    def from_targets(cls, values: list[float]) -> "RegressionTask":
        arr = np.asarray(values, dtype=np.float64)
        return cls(mean=float(arr.mean()), std=float(arr.std()))

    num_classes = 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "mean": self.mean, "std": self.std}

    def encode(self, labels: list[float]) -> torch.Tensor:
        return torch.tensor([float(v) for v in labels], dtype=torch.float32)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        linear = nn.Linear(num_features, 1)
        return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else nn.Sequential(linear)

    def _values(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().reshape(-1) * self.std + self.mean  # (B,)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error in standardised units."""
        return F.mse_loss(logits.float().reshape(-1), (targets.float() - self.mean) / self.std)

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum of absolute errors, count): the running training MAE."""
        return (self._values(logits) - targets.float()).abs().sum(), len(targets)

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.activate(logits), targets.float()

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Model outputs → predicted values `[B, 1]` in the targets' units."""
        return self._values(logits)[:, None]

    def epoch_metrics(self, preds: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        from graftkit.evaluation.metrics import regression_metrics

        if len(targets) == 0:
            return {"mae": float("nan"), "rmse": float("nan"), "r2": 0.0}
        m = regression_metrics(targets, preds[:, 0])
        return {k: m[k] for k in ("mae", "rmse", "r2")}

    def full_metrics(self, preds: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        from graftkit.evaluation.metrics import regression_metrics

        return regression_metrics(targets, preds[:, 0], loss=loss)

    def decode(self, preds: torch.Tensor, top_k: int = 1) -> list[list[tuple[str, float]]]:
        return [[(f"{float(v):.4g}", float(v))] for v in preds.reshape(-1).tolist()]
