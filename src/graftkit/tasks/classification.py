"""Single-label classification: labels, head, loss, metrics and decoding."""

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
class ClassificationTask:
    """Owns everything class-specific so that the loop stays task-agnostic.

    Args:
        classes: class names; a label's index is its position.
        label_smoothing: cross-entropy label smoothing.
        class_weights: optional per-class loss weights, `[C]`.
    """

    name = "classification"
    label_kind = LabelKind.CLASS
    modalities = ("image", "text", "audio")
    backbone_head = "features"
    default_strategy = "linear-probe"
    linear_solver = "lbfgs"  # convex loss in the logits: the probe solves the head (training/solver.py)
    train_metric = "accuracy"
    metrics = {m.name: m for m in (Metric("accuracy", True), Metric("balanced_accuracy", True), Metric("macro_f1", True), Metric("loss", False))}
    default_monitor = "accuracy"
    headline = ("accuracy",)

    def __init__(
        self,
        classes: list[str],
        *,
        label_smoothing: float = 0.0,
        class_weights: torch.Tensor | None = None,
        focal_gamma: float | None = None,
        target_sensitivity: float | None = None,
        operating_point: dict[str, Any] | None = None,
    ) -> None:
        self.classes = list(classes)
        self.label_smoothing = label_smoothing
        self.class_weights = class_weights
        self.focal_gamma = focal_gamma
        self.target_sensitivity = target_sensitivity
        self.operating_point = operating_point
        """Two classes: the threshold on P(second class) chosen on validation (`finish`)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "ClassificationTask":
        weights = None
        if settings.class_weights == "balanced":
            index = {c: i for i, c in enumerate(classes)}
            weights = balanced_class_weights([index[label] for label in train_labels], len(classes))
        return cls(classes, label_smoothing=settings.label_smoothing, class_weights=weights,
                   focal_gamma=settings.focal_gamma, target_sensitivity=settings.target_sensitivity)  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassificationTask":
        return cls(d["classes"], operating_point=d.get("operating_point"))

    def to_dict(self) -> dict[str, Any]:
        """The task's part of graft.json (binary runs add the validation operating point)."""
        d: dict[str, Any] = {"name": self.name, "classes": self.classes}
        if self.operating_point is not None:
            d["operating_point"] = self.operating_point
        return d

    def check_strategy(self, kind: str) -> None:
        return None  # every strategy trains a new head

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return GraftModel(backbone, self.build_head(backbone.num_features, dropout))

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "linear", "in_features": num_features, "out_features": self.num_classes, "dropout": dropout}

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        return label_text_loader(self, samples, tokenizer, max_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def encode(self, labels: list[str]) -> torch.Tensor:
        """Class indices `[N]` for label names (all known: the data readers checked them)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([index[label] for label in labels], dtype=torch.long)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        """The new output layer: (dropout +) linear, `[B, D] -> [B, C]`."""
        return linear_head(num_features, self.num_classes, dropout)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy; `targets` are class indices `[B]` or soft targets `[B, C]` (mixup/cutmix)."""
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if self.focal_gamma is not None:
            return focal_cross_entropy(logits.float(), targets, gamma=self.focal_gamma, weight=weight)
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

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        """Every split's metrics; with two classes also the clinical ones (`evaluation/clinical.py`)
        at an operating point chosen on validation, for the second class as the finding."""
        final = {split: self.full_metrics(*out) for split, out in outputs.items()}
        if self.num_classes == 2 and "val" in outputs:
            from graftkit.evaluation.clinical import choose_operating_point, clinical_metrics, cross_fit_thresholds

            val_probs, val_targets = np.asarray(outputs["val"][0]), np.asarray(outputs["val"][1])
            point = choose_operating_point(val_probs[:, 1], val_targets == 1, self.target_sensitivity)
            rows, note = cross_fit_thresholds(val_probs[:, 1], val_targets == 1, self.target_sensitivity)
            for split, out in outputs.items():  # validation: cross-fitted figures at the all-of-validation point
                held = {"row_thresholds": rows, "cross_fit": note} if split == "val" else {}
                final[split]["clinical"] = clinical_metrics(np.asarray(out[0])[:, 1], np.asarray(out[1]) == 1, point, **held)
            val = final["val"]["clinical"]  # the card states the held-out figures, not the ones the rule guarantees
            self.operating_point = {"positive": self.classes[1], **point, "sensitivity": val["sensitivity"], "specificity": val["specificity"], "cross_fit": note}
        return final

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        """Temperature scaling fitted on validation; ECE per split; the reliability diagram."""
        from graftkit.evaluation.calibration import calibrate_run

        return calibrate_run(outputs, final, out_dir)

    def decode(self, probs: torch.Tensor, top_k: int = 1) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """Per row: (top class, its probability, the top-k (class name, probability) list)."""
        k = min(top_k, self.num_classes)
        scores, idx = probs.topk(k, dim=1)
        rows = [[(self.classes[i], float(s)) for s, i in zip(srow, irow)] for srow, irow in zip(scores.tolist(), idx.tolist())]
        return [(top[0][0], top[0][1], top) for top in rows]

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        return predict_with_head(self, source, inputs, names, top_k, batch_size)

    def card(self) -> dict[str, Any]:
        caveats = ["The model always answers with one of its classes, also for inputs that belong to none of them; "
                   "a low top probability is a hint, not a guarantee."]  # fmt: skip
        if self.operating_point is not None:
            caveats.append(operating_point_sentence(self.operating_point))
        return {
            "does": f"assigns one of its {self.num_classes} classes to each input (with probabilities)",
            "caveats": caveats,
        }

    def export_spec(self) -> dict[str, Any]:
        return {"activation": "softmax"}

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        """Top-1 agreement; a tie in the reference (two classes within float noise) is not a disagreement."""
        if len(reference) == 0:
            return 1.0, "nothing"
        pick = exported.argmax(1)
        gap = reference.max(1).values - reference.gather(1, pick[:, None])[:, 0]
        tie = gap <= 1e-5 * (1 + reference.abs().max(1).values)
        return float(((pick == reference.argmax(1)) | tie).float().mean()), "top-1 class"


def balanced_class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (scikit-learn's `balanced`)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def operating_point_sentence(point: dict[str, Any]) -> str:
    """The model card's statement of a finding's operating point."""
    sens, spec = point.get("sensitivity"), point.get("specificity")
    how = f" ({point['cross_fit']})" if point.get("cross_fit") else ""
    at = f": validation sensitivity {sens:.3f}, specificity {spec:.3f}{how}" if sens is not None and spec is not None else ""
    return (f"Operating point for {point['positive']!r}: P({point['positive']}) >= {point['threshold']:.4f}, chosen by "
            f"{point['rule']}{at}. `graft predict` reports the most probable class; apply this threshold to its "
            "probability for screening decisions.")  # fmt: skip


def focal_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, gamma: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax focal loss (Lin et al. 2017): `-(1 - p_t)^gamma * log p_t`, mean over the batch.

    Args:
        logits: `[B, C]`.
        targets: Class indices `[B]` or soft targets `[B, C]` (mixup/cutmix).
        gamma: Focusing parameter; 0 is cross-entropy.
        weight: Optional per-class weights `[C]` (as `F.cross_entropy`'s `weight`, applied per row).
    """
    log_p = F.log_softmax(logits, dim=1)  # (B, C)
    soft = targets if targets.ndim == 2 else F.one_hot(targets, logits.shape[1]).to(log_p.dtype)
    per_class = -soft * (1 - log_p.exp()).pow(gamma) * log_p
    if weight is not None:
        per_class = per_class * weight
        return per_class.sum() / (soft * weight).sum().clamp_min(1e-12)
    return per_class.sum(1).mean()
