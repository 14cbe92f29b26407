"""Regression: one number per sample (a sentiment score, an age, a rating)."""

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
class RegressionTask:
    """Predicts one value; trains on standardised targets so learning rates transfer across scales.

    Args:
        mean, std: the training targets' mean and standard deviation (stored in the run).
    """

    name = "regression"
    label_kind = LabelKind.VALUE
    modalities = ("image", "text", "audio")
    backbone_head = "features"
    default_strategy = "linear-probe"
    linear_solver = "lbfgs"  # convex loss in the logits: the probe solves the head (training/solver.py)
    train_metric = "mae"
    metrics = {m.name: m for m in (Metric("mae", False), Metric("rmse", False), Metric("r2", True), Metric("loss", False))}
    default_monitor = "mae"
    headline = ("mae", "r2")
    classes: list[str] = []

    def __init__(self, *, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = float(mean)
        self.std = float(std) if std > 0 else 1.0

    @classmethod
    def from_targets(cls, values: list[float]) -> "RegressionTask":
        arr = np.asarray(values, dtype=np.float64)
        return cls(mean=float(arr.mean()), std=float(arr.std()))

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "RegressionTask":
        return cls.from_targets([float(v) for v in train_labels])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RegressionTask":
        return cls(mean=d["mean"], std=d["std"])

    num_classes = 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "mean": self.mean, "std": self.std}

    def check_strategy(self, kind: str) -> None:
        return None

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return GraftModel(backbone, self.build_head(backbone.num_features, dropout))

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "linear", "in_features": num_features, "out_features": 1, "dropout": dropout}

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        return label_text_loader(self, samples, tokenizer, max_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def encode(self, labels: list[float]) -> torch.Tensor:
        return torch.tensor([float(v) for v in labels], dtype=torch.float32)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        return linear_head(num_features, 1, dropout)

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

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        return {split: self.full_metrics(*out) for split, out in outputs.items()}

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        return None

    def decode(self, preds: torch.Tensor, top_k: int = 1) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """Per row: (the value formatted, the value, [(formatted, value)])."""
        return [(f"{float(v):.4g}", float(v), [(f"{float(v):.4g}", float(v))]) for v in preds.reshape(-1).tolist()]

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        return predict_with_head(self, source, inputs, names, top_k, batch_size)

    def card(self) -> dict[str, Any]:
        return {"does": "predicts one number per input, in the units of its training targets",
                "caveats": [f"Predictions far outside the training targets (mean {self.mean:.4g}, std {self.std:.4g}) are extrapolation."]}  # fmt: skip

    def export_spec(self) -> dict[str, Any]:
        return {"activation": "value = logits[:, 0] * std + mean", "mean": self.mean, "std": self.std}

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        """Share of values within a tolerance, in standard deviations of the training targets."""
        if len(reference) == 0:
            return 1.0, "nothing"
        tol = 1e-3 if precision == "fp32" else 0.05
        diff = (self.activate(exported) - self.activate(reference)).abs()[:, 0] / max(self.std, 1e-12)
        return float((diff <= tol).float().mean()), f"value within {tol} std"
