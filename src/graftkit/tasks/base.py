"""The Task contract (DESIGN.md §3) and the registry of tasks.

A task owns everything that depends on what the head predicts: how labels are read (its
`LabelKind`), the model it builds on a backbone, the loss, the running training score, the metrics
with their direction and the headline, how outputs are collected and decoded, what export parity
compares, and its own entry in graft.json. The loop, `fit`, `auto`, `evaluate`, the predictor and
export call these verbs and never look at a task's name.

Adding a task is one module that defines a class with these members and registers it:

    @register_task
    class OrdinalTask:
        name = "ordinal"
        ...

`get_task("ordinal")` then finds it, `graft train --task ordinal` trains it, and a run directory
that names it reloads through `task_from_dict`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from graftkit.data.prediction import Prediction  # noqa: F401  (tasks return it; defined torch-free for the ONNX client)
from torch import nn

from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    """A metric a task reports: its name and which way is better."""

    name: str
    higher_is_better: bool

    def better(self, score: float, best: float | None) -> bool:
        """Whether `score` improves on `best` (None: nothing to beat yet)."""
        if best is None:
            return True
        return score > best if self.higher_is_better else score < best


@dataclass(frozen=True)
class TaskSettings:
    """The training settings a task is built from (a builder translates `TrainConfig` into these)."""

    label_smoothing: float = 0.0
    class_weights: str = "none"
    """`balanced`: weight the loss by inverse class frequency."""
    num_beams: int = 4
    max_new_tokens: int = 64
    target_sensitivity: float | None = None
    """Binary and multi-label: the operating point is the highest validation threshold reaching
    this sensitivity (None: Youden's J)."""
    focal_gamma: float | None = None
    """Focal loss with this focusing parameter (None: cross-entropy / BCE)."""
    detector: str | None = None
    """detection: which torchvision detector (None: the task's default)."""
    freeze_bn: bool = True
    """detection: frozen BatchNorm in the backbone."""
    task: str = ""
    """The `--task` value as given: a multitask run's `NAME:KIND,...` spec."""


class PredictSource(Protocol):
    """What a task needs from a loaded model to predict: outputs for inputs, or the backbone
    itself (generative tasks call its `generate`)."""

    backbone: Any

    def outputs(self, inputs: Sequence[Any], batch_size: int) -> torch.Tensor:
        """The task's activated outputs `[N, ...]` for `inputs`, in input order."""
        ...


@runtime_checkable
class Task(Protocol):
    """What every task offers. Class attributes describe it; methods are its verbs."""

    name: ClassVar[str]
    """Registry name: `--task NAME` and graft.json's `task.name`."""
    label_kind: ClassVar[LabelKind]
    """How the data readers parse this task's labels."""
    modalities: ClassVar[tuple[str, ...]]
    """Backbone modalities the task can train on (`image`, `text`, ...)."""
    backbone_head: ClassVar[str]
    """What the backbone must keep: `features` (pooled features for a new head) or its own output
    layer (`seq2seq`, `causal-lm`)."""
    default_strategy: ClassVar[str]
    """The strategy when none is given."""
    train_metric: ClassVar[str]
    """The running training score `batch_score` sums (shown per epoch)."""
    metrics: ClassVar[dict[str, Metric]]
    """Every validation metric a run can monitor, with its direction (`loss` included)."""
    default_monitor: ClassVar[str]
    headline: ClassVar[tuple[str, ...]]
    """The metrics printed at the end of a run and shown first in reports."""
    classes: list[str]
    num_classes: int

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "Task":
        """A task for a training set (its classes and labels) and the run's settings."""
        ...

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        """Rebuild from graft.json's entry (`to_dict()`)."""
        ...

    def to_dict(self) -> dict[str, Any]: ...

    def check_strategy(self, kind: str) -> None:
        """Raise ConfigError when strategy `kind` cannot train this task."""
        ...

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        """The trainable model: backbone + new head, or the backbone with its own output layer."""
        ...

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any] | None:
        """graft.json's `head` entry (None when the backbone keeps its own output layer)."""
        ...

    def encode(self, labels: list[Any]) -> torch.Tensor:
        """Targets for labels as the readers parsed them."""
        ...

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        """A loader of `(tokenized inputs, targets)` over text samples."""
        ...

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum, count) of the running training metric for one batch."""
        ...

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample rows and targets kept for the epoch's metrics."""
        ...

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Raw outputs → what metrics and `decode` read (probabilities, values)."""
        ...

    def epoch_metrics(self, rows: np.ndarray, targets: np.ndarray) -> dict[str, float]: ...

    def full_metrics(self, rows: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]: ...

    def finish(self, outputs: dict[str, tuple[np.ndarray, np.ndarray, float]], backbone: nn.Module,
               samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:  # fmt: skip
        """The report's metrics per split from the best weights' outputs (after fitting what is
        fitted on validation, e.g. decision thresholds, or generating text to score)."""
        ...

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        """Calibration of the outputs (written into `final` and `out_dir`), or None."""
        ...

    def predict(self, source: PredictSource, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        """Predictions for `inputs` (named `names`) from a loaded model."""
        ...

    def card(self) -> dict[str, Any]:
        """The task's words for MODEL_CARD.md: `does` (what the model does with an input) and
        `caveats` (the task's own limitations)."""
        ...

    def export_spec(self) -> dict[str, Any]:
        """How to read the exported graph's `logits` (activation, thresholds, scaling) for
        preprocess.json; raises ConfigError for tasks that are not one graph (generation)."""
        ...

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        """Share of inputs on which an exported model decides as PyTorch does, and what was compared."""
        ...


class SolvedHead(Protocol):
    """Optional members of a task (`OPTIONAL_MEMBERS`): a task that leaves them out still
    registers, and gets the stand-in value."""

    linear_solver: ClassVar[str | None]
    """How the linear probe solves this task's head on cached features: `lbfgs` (its `loss` is
    convex in the logits, so the head is a full-batch L2-penalised solve: softmax cross-entropy →
    multinomial logistic regression, per-label BCE → per-label logistic regression, squared error
    → ridge; training/solver.py) or None (the head trains with SGD in the loop)."""

    def audio_targets(self, labels: list[Any], backbone: nn.Module) -> torch.Tensor:
        """Audio tasks whose model reads its targets (teacher forcing, `--task asr`): targets made
        with the backbone (its tokenizer). With it, audio batches are `({"waveform", "labels"},
        targets)`; without it (None), `(waveform, task.encode(labels))`."""
        ...


def _protocol_members(protocol: type) -> tuple[str, ...]:
    """A protocol's class-level members: its `ClassVar` attributes and its methods (instance
    attributes such as `classes` are set by a task's constructor, so a class cannot show them)."""
    class_vars = [n for n, hint in protocol.__annotations__.items() if str(hint).startswith("ClassVar")]
    methods = [n for n, v in vars(protocol).items() if not n.startswith("_") and (callable(v) or isinstance(v, classmethod))]
    return tuple(dict.fromkeys([*class_vars, *methods]))


OPTIONAL_MEMBERS: dict[str, Any] = {"linear_solver": None, "audio_targets": None}
"""Members a task may leave out (`SolvedHead`), with the value that stands for them."""

TASK_MEMBERS = _protocol_members(Task)
"""The members `register_task` checks a class for, read off the `Task` protocol."""


def task_member(task: Any, name: str) -> Any:
    """A task's member, or its stand-in from `OPTIONAL_MEMBERS` when the task leaves it out."""
    return getattr(task, name, OPTIONAL_MEMBERS[name])

_REGISTRY: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: make a task available by its `name` (to `--task`, `fit` and `load`).

    Raises:
        ConfigError: Another class already has that name, or the class misses members of `Task`.
    """
    missing = [m for m in TASK_MEMBERS if not hasattr(cls, m)]
    if missing:
        raise ConfigError(f"task {cls.__name__} cannot be registered: it lacks {', '.join(missing)} (see graftkit.tasks.base.Task)")
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ConfigError(f"a task named {name!r} is already registered ({_REGISTRY[name].__name__}); choose another name")
    _REGISTRY[name] = cls
    return cls


def unregister_task(name: str) -> None:
    """Remove a registered task (tests that register toy tasks clean up with it)."""
    _REGISTRY.pop(name, None)


def task_names() -> tuple[str, ...]:
    """Every registered task name, in registration order."""
    _ensure_builtins()
    return tuple(_REGISTRY)


def get_task(name: str) -> type:
    """The task class registered as `name`.

    Raises:
        ConfigError: Unknown name; the message lists the closest matches and every task.
    """
    _ensure_builtins()
    if ":" in str(name):  # a multitask spec `NAME:KIND,...` (tasks/multitask.py parses it)
        from graftkit.tasks.multitask import parse_task_spec

        parse_task_spec(name)
        return _REGISTRY["multitask"]
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=2)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ConfigError(f"--task {name!r} is not a known task{hint}; choose one of: {', '.join(_REGISTRY)}") from None


def task_from_dict(d: dict[str, Any]) -> Task:
    """Rebuild a task from its graft.json entry."""
    return get_task(d["name"]).from_dict(d)


def _ensure_builtins() -> None:
    import graftkit.tasks  # noqa: F401  (importing the package registers the built-in tasks)


def linear_head(num_features: int, out_features: int, dropout: float) -> nn.Module:
    """(dropout +) linear, `[B, D] -> [B, out]`: the new output layer of the head tasks."""
    linear = nn.Linear(num_features, out_features)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else nn.Sequential(linear)


def label_text_loader(task: Any, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
    """Tokenized texts with the task's encoded labels as targets (every head task's text loader)."""
    from graftkit.data.text_loader import make_text_loader

    targets = task.encode([s.label for s in samples])
    return make_text_loader([s.text for s in samples], targets, tokenizer, max_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed)


def predict_with_head(task: Any, source: PredictSource, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
    """Head tasks: activated outputs → `decode` → one `Prediction` per input."""
    rows = source.outputs(inputs, batch_size)
    return [Prediction(n, label, score, top) for n, (label, score, top) in zip(names, task.decode(rows, top_k=max(top_k, 1)))]
