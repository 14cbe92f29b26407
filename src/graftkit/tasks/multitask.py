"""Multitask learning: one backbone, one head per task, from several label columns of a manifest.

`--task "topic:classification,sentiment:classification,score:regression"` names each task and its
kind; the task's name is the manifest column holding its labels (matched without regard to case).
Each part is one of the single-head tasks (`classification`, `multilabel`, `regression`), built from
the labelled rows of its column and composed here: its head, loss, metrics and decoding are the
part's own. A sample whose cell is empty (or missing) for a task is **masked** for that task: it
takes no part in that task's loss or metrics, and still trains and scores every other task.

Layout of the tensors the loop sees (the parts side by side, in `--task` order):
- logits `[B, sum of each part's outputs]` (C for a classifier, C for multi-label, 1 for regression);
- targets `[B, sum of each part's target widths]` as float32: a class index, a value, or C 0/1
  columns, NaN where the sample has no label for that task.

The training loss is the sum of the parts' losses (equal weighting); `--task-weighting uncertainty`
and `pcgrad` change it through the training objective (`training/multitask.py`); the head holds one
learnable log-variance per task (`MultiHead.log_vars`) so that uncertainty weighting's parameters
are trained and saved with the model. Validation loss and model selection use the equal sum.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError, DataError
from graftkit.tasks.base import Metric, Prediction, TaskSettings, get_task, label_text_loader, register_task
from graftkit.tasks.model import GraftModel

WEIGHTINGS = ("equal", "uncertainty", "pcgrad", "pcgrad-rep")
"""`--task-weighting` choices (the terms are in `training/multitask.py`)."""

PART_KINDS = ("classification", "multilabel", "regression")
"""The task kinds a multitask part can be."""

PRIMARY = {"classification": "accuracy", "multilabel": "macro_f1", "regression": "r2"}
"""Each kind's metric in the multitask `score` (the mean of the parts' primaries; higher is better)."""

RESERVED = ("path", "text", "split", "pixel_values", "input_ids", "attention_mask", "waveform", "logits")
"""Names a task may not take: the columns the readers use for inputs and splits, and the exported
graph's input names (its outputs are named after the tasks)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def parse_task_spec(spec: str) -> list[tuple[str, str]]:
    """`"topic:classification,score:regression"` → `[("topic", "classification"), ("score", "regression")]`.

    Raises:
        ConfigError: A part that is not NAME:KIND, an unknown kind, names that clash (the same name
            twice, also in another case, or a reserved name), or fewer than two parts.

    Example:
        >>> parse_task_spec("topic:classification, sentiment:classification")
        [('topic', 'classification'), ('sentiment', 'classification')]
    """
    problems, parts, seen = [], [], {}
    for raw in str(spec).split(","):
        item = raw.strip()
        name, sep, kind = (s.strip() for s in item.partition(":"))
        if not sep or not name or not kind:
            problems.append(f"{item!r} is not NAME:KIND (e.g. topic:classification)")
            continue
        if kind not in PART_KINDS:
            close = difflib.get_close_matches(kind, PART_KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{name}: unknown task kind {kind!r}{hint}; a part's kind is one of {', '.join(PART_KINDS)}")
        if not _NAME.match(name):
            problems.append(f"task name {name!r} must start with a letter and hold only letters, digits, '_' and '-'")
        elif name.lower() in RESERVED:
            problems.append(f"task name {name!r} clashes with a reserved name ({', '.join(RESERVED)}): rename the column and the task")
        elif name.lower() in seen:
            problems.append(f"task names clash: {seen[name.lower()]!r} and {name!r} name the same column (names are compared without case); "
                            "give each task its own label column")  # fmt: skip
        else:
            seen[name.lower()] = name
        parts.append((name, kind))
    if not problems and len(parts) < 2:
        problems.append("a multitask run needs at least two tasks; for one task use --task " + (parts[0][1] if parts else "classification"))
    if problems:
        raise ConfigError(f"--task {spec!r}:\n" + "\n".join(f"  - {p}" for p in problems))
    return parts


def is_task_spec(name: str) -> bool:
    """Whether a `--task` value is a multitask spec (`NAME:KIND,...`) rather than a task name."""
    return ":" in str(name)


@dataclass
class Part:
    """One task of a multitask run and where its columns sit in the logits and targets."""

    name: str
    kind: str
    column: str
    """The data column its labels come from (the name as the data writes it)."""
    task: Any
    out: slice = field(default_factory=lambda: slice(0, 0))
    target: slice = field(default_factory=lambda: slice(0, 0))

    @property
    def out_width(self) -> int:
        return self.task.num_classes if self.task.label_kind.has_classes else 1

    @property
    def target_width(self) -> int:
        return self.task.num_classes if self.task.label_kind is LabelKind.CLASSES else 1

    def targets(self, rows: torch.Tensor) -> torch.Tensor:
        """This part's target columns `[B, w]` → what its task's loss takes (class ids `[B]`, values `[B]`, multi-hot `[B, C]`)."""
        if self.task.label_kind is LabelKind.CLASSES:
            return rows
        return rows[:, 0].long() if self.task.label_kind is LabelKind.CLASS else rows[:, 0]

    def targets_np(self, rows: np.ndarray) -> np.ndarray:
        if self.task.label_kind is LabelKind.CLASSES:
            return rows
        return rows[:, 0].astype(np.int64) if self.task.label_kind is LabelKind.CLASS else rows[:, 0]


class MultiHead(nn.Module):
    """One head per task over the shared features; the logits side by side `[B, sum of outputs]`.

    `log_vars` `[T]` are the tasks' learnable log-variances (Kendall et al. 2018), trained only under
    `--task-weighting uncertainty` (zero and untouched otherwise) and saved with the model.
    """

    def __init__(self, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.log_vars = nn.Parameter(torch.zeros(len(heads)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(features) for head in self.heads.values()], dim=1)  # (B, D) -> (B, sum C_t)


@dataclass(frozen=True)
class MultitaskPrediction(Prediction):
    """A `Prediction` with every task's own: `tasks[name] = {"label", "score", "top_k"}`; `label`
    joins them as `name=label; ...`."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**Prediction.to_dict(self), "tasks": self.tasks}

    def fields(self) -> dict[str, str]:
        """One column per task (`graft predict --format csv`)."""
        return {name: str(t["label"]) for name, t in self.tasks.items()}


@register_task
class MultiTask:
    """Several tasks on one backbone (see the module docstring).

    Args:
        parts: The tasks, in `--task` order.
        spec: The `--task` value they came from.
    """

    name = "multitask"
    label_kind = LabelKind.RECORD
    modalities = ("image", "text")
    backbone_head = "features"
    default_strategy = "linear-probe"
    train_metric = "score"
    metrics = {"score": Metric("score", True), "loss": Metric("loss", False)}
    """The class's metrics; an instance adds each part's as `name/metric` (e.g. `topic/accuracy`)."""
    default_monitor = "score"
    headline = ("score",)
    classes: list[str] = []
    num_classes = 0

    def __init__(self, parts: list[Part], spec: str) -> None:
        self.parts = parts
        self.spec = spec
        start = tstart = 0
        for p in parts:
            p.out, p.target = slice(start, start + p.out_width), slice(tstart, tstart + p.target_width)
            start, tstart = start + p.out_width, tstart + p.target_width
        self.metrics = {**type(self).metrics}
        for p in parts:
            self.metrics.update({f"{p.name}/{k}": m for k, m in p.task.metrics.items() if k != "loss"})
        self.headline = ("score", *(f"{p.name}/{p.task.headline[0]}" for p in parts))

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "MultiTask":
        """Parts from the `--task` spec (`settings.task`) and the training rows' label columns.

        Raises:
            ConfigError: No spec (`--task multitask` alone), or a bad spec (see `parse_task_spec`).
            DataError: The data is not a manifest with label columns, a named column is missing,
                a task has no labelled training sample, or a column holds labels its kind cannot read.
        """
        spec = settings.task
        if not spec or not is_task_spec(spec):
            raise ConfigError("--task multitask needs its tasks: --task 'NAME:KIND,NAME:KIND' (e.g. topic:classification,score:regression), "
                              "each NAME a label column of the manifest")  # fmt: skip
        wanted = parse_task_spec(spec)
        if not train_labels or not all(isinstance(label, dict) for label in train_labels):
            raise DataError(["a multitask run reads one label column per task from a CSV or JSONL manifest (path or text, then the "
                             "columns named in --task); class folders have one label only"], "the data")  # fmt: skip
        columns = {str(c): None for label in train_labels for c in label}
        by_lower = {c.lower(): c for c in columns}
        problems, parts = [], []
        for name, kind in wanted:
            column = by_lower.get(name.lower())
            if column is None:
                close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
                hint = f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
                problems.append(f"column {name!r} named in --task does not exist{hint}; the label columns are {', '.join(repr(c) for c in columns) or 'none'}")
                continue
            part_cls = get_task(kind)
            labels, bad = [], []
            for label in train_labels:
                value = _cell(label.get(column), part_cls.label_kind)
                if value is _MISSING:
                    continue
                if _is_bad(value):
                    bad.append(value)
                else:
                    labels.append(value)
            if bad:
                problems.append(f"column {column!r} ({kind}): {len(bad)} training label(s) are {bad[0].what}"
                                + (f" (e.g. {bad[0].example!r})" if bad[0].example else "") + f": {bad[0].fix}")  # fmt: skip
                continue
            if not labels:
                problems.append(f"task {name!r}: no training sample has a label in column {column!r}; fill in some labels or drop the task from --task")
                continue
            part_classes = _classes(labels, part_cls.label_kind)
            if part_cls.label_kind is LabelKind.CLASS and len(part_classes) < 2:
                problems.append(f"task {name!r}: column {column!r} has {len(part_classes)} class in train ({', '.join(part_classes)}); a classifier needs at least 2")
                continue
            parts.append(Part(name, kind, column, part_cls.from_data(part_classes, labels, settings)))
        if problems:
            raise DataError(problems, "the data")
        return cls(parts, spec)

    def check_data(self, dataset: Any, backbone: Any) -> None:
        """Validation and test labels the parts cannot read, or classes they never saw in training.

        Raises:
            DataError: Every such label, by task and split.
        """
        problems = []
        for split in ("val", "test"):
            for part in self.parts:
                unknown: dict[str, int] = {}
                for s in getattr(dataset, split, []) or []:
                    value = _cell(s.label.get(part.column) if isinstance(s.label, dict) else None, part.task.label_kind)
                    if value is _MISSING:
                        continue
                    if _is_bad(value):
                        unknown[f"unreadable ({value.what})"] = unknown.get(f"unreadable ({value.what})", 0) + 1
                    elif part.task.label_kind.has_classes:
                        for name in value if isinstance(value, list) else [value]:
                            if name not in part.task.classes:
                                unknown[repr(name)] = unknown.get(repr(name), 0) + 1
                for what, n in sorted(unknown.items()):
                    problems.append(f"{split} label {what} of task {part.name!r} is not a training class of it ({n} sample(s)): "
                                    f"add training samples with it or clear these cells in {split}")  # fmt: skip
        if problems:
            raise DataError(problems, str(getattr(dataset, "source", None) or getattr(dataset, "root", "the data")))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MultiTask":
        from graftkit.tasks.base import task_from_dict

        parts = [Part(p["name"], p["kind"], p["column"], task_from_dict(p["task"])) for p in d["tasks"]]
        return cls(parts, d["spec"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "spec": self.spec,
                "tasks": [{"name": p.name, "kind": p.kind, "column": p.column, "task": p.task.to_dict()} for p in self.parts]}  # fmt: skip

    def check_strategy(self, kind: str) -> None:
        for p in self.parts:
            p.task.check_strategy(kind)

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return GraftModel(backbone, self.build_head(backbone.num_features, dropout))

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        return MultiHead({p.name: p.task.build_head(num_features, dropout) for p in self.parts})

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "multitask", "in_features": num_features, "dropout": dropout,
                "tasks": {p.name: p.task.head_spec(num_features, dropout) for p in self.parts}}  # fmt: skip

    # -- labels and loss ----------------------------------------------------------------------

    def encode(self, labels: list[Any]) -> torch.Tensor:
        """Targets `[N, sum of target widths]` (float32), NaN where a sample has no label for a task."""
        out = torch.full((len(labels), self.parts[-1].target.stop), float("nan"))
        for part in self.parts:
            for i, label in enumerate(labels):
                value = _cell(label.get(part.column) if isinstance(label, dict) else None, part.task.label_kind)
                if value is _MISSING or _is_bad(value):
                    continue
                out[i, part.target] = part.task.encode([value]).float().reshape(-1)
        return out

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        return label_text_loader(self, samples, tokenizer, max_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed)

    def labelled(self, part: Part, targets: torch.Tensor) -> torch.Tensor:
        """`[B]` bool: the samples that have a label for `part`."""
        return ~torch.isnan(targets[:, part.target]).any(dim=1)

    def task_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        """Each part's loss over the samples labelled for it (a zero that keeps the graph when none is)."""
        losses = []
        for part in self.parts:
            keep = self.labelled(part, targets)
            if not bool(keep.any()):
                losses.append(logits[:, part.out].sum() * 0.0)
                continue
            losses.append(part.task.loss(logits[keep][:, part.out], part.targets(targets[keep][:, part.target])))
        return losses

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum of the parts' masked losses (equal weighting)."""
        return torch.stack(self.task_losses(logits.float(), targets)).sum()

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum over the tasks labelled in the batch of a per-batch primary, their number): accuracy,
        per-label accuracy for multi-label, `1 - MSE` in standard units (a batch R²) for regression."""
        total, n = torch.zeros(()), 0
        for part in self.parts:
            keep = self.labelled(part, targets)
            if not bool(keep.any()):
                continue
            lg, tg = logits[keep][:, part.out].float(), targets[keep][:, part.target]
            if part.kind == "classification":
                value = (lg.argmax(1) == tg[:, 0].long()).float().mean()
            elif part.kind == "multilabel":
                value = ((lg > 0).float() == tg).float().mean()
            else:
                t = part.task
                value = 1 - (lg[:, 0] - (tg[:, 0] - t.mean) / t.std).pow(2).mean()
            total, n = total + value.detach().cpu(), n + 1
        return total, n

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.activate(logits), targets.float()

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Each part's activation on its columns (probabilities, values), side by side."""
        return torch.cat([p.task.activate(logits[:, p.out]) for p in self.parts], dim=1)

    # -- metrics ------------------------------------------------------------------------------

    def _split_rows(self, part: Part, rows: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, targets = np.asarray(rows), np.asarray(targets)
        keep = ~np.isnan(targets[:, part.target]).any(axis=1) if len(targets) else np.zeros(0, bool)
        return rows[keep][:, part.out], part.targets_np(targets[keep][:, part.target])

    def _score(self, per_task: dict[str, dict[str, Any]]) -> float:
        values = [per_task[p.name].get(PRIMARY[p.kind]) for p in self.parts if p.name in per_task]
        values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        return float(np.mean(values)) if values else float("nan")

    def epoch_metrics(self, rows: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Each labelled part's epoch metrics as `name/metric`, and `score`: the mean of their primaries."""
        per_task = {}
        for part in self.parts:
            r, t = self._split_rows(part, rows, targets)
            if len(t):
                per_task[part.name] = part.task.epoch_metrics(r, t)
        out = {"score": self._score(per_task)}
        for name, m in per_task.items():
            out.update({f"{name}/{k}": v for k, v in m.items()})
        return out

    def full_metrics(self, rows: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        per_task = {}
        for part in self.parts:
            r, t = self._split_rows(part, rows, targets)
            if len(t):
                per_task[part.name] = {**part.task.full_metrics(r, t), "n": int(len(t))}
        return self._combine(per_task, loss, len(targets))

    def _combine(self, per_task: dict[str, dict[str, Any]], loss: float | None, n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"score": self._score(per_task), "loss": loss, "n": int(n)}
        for part in self.parts:
            for k in part.task.headline:
                if k in per_task.get(part.name, {}):
                    out[f"{part.name}/{k}"] = per_task[part.name][k]
            if part.name in per_task:
                out[f"{part.name}/n"] = per_task[part.name]["n"]
        out["tasks"] = per_task
        return out

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        """Each part's own `finish` on its labelled samples (multi-label thresholds are fitted on
        its labelled validation rows), combined per split."""
        per_split: dict[str, dict[str, dict[str, Any]]] = {split: {} for split in outputs}
        for part in self.parts:
            sub = {}
            for split, (rows, targets, _) in outputs.items():
                r, t = self._split_rows(part, rows, targets)
                if len(t):
                    sub[split] = (r, t, None)
            if not sub:
                continue
            finished = part.task.finish(sub, backbone, {}, batch_size)
            for split, m in finished.items():
                per_split[split][part.name] = {**{k: v for k, v in m.items() if k != "examples"}, "n": int(len(sub[split][1]))}
        return {split: self._combine(per_split[split], outputs[split][2], len(outputs[split][1])) for split in outputs}

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        return None

    # -- predictions and export -----------------------------------------------------------------

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        rows = source.outputs(inputs, batch_size)
        decoded = {p.name: p.task.decode(rows[:, p.out], top_k=max(top_k, 1)) for p in self.parts}
        out = []
        for i, name in enumerate(names):
            tasks = {t: {"label": d[i][0], "score": float(d[i][1]), "top_k": [{"label": lb, "score": float(s)} for lb, s in d[i][2]]}
                     for t, d in decoded.items()}  # fmt: skip
            label = "; ".join(f"{t}={v['label']}" for t, v in tasks.items())
            top = [(f"{t}={v['label']}", v["score"]) for t, v in tasks.items()]
            out.append(MultitaskPrediction(name, label, top[0][1], top, tasks=tasks))
        return out

    def card(self) -> dict[str, Any]:
        described = ", ".join(f"{p.name} ({p.kind}" + (f", {p.task.num_classes} classes)" if p.task.label_kind.has_classes else ")") for p in self.parts)
        caveats = [f"{p.name}: {c}" for p in self.parts for c in p.task.card().get("caveats", [])]
        caveats.append("Each task was trained and scored only on the samples labelled for it; the per-task `n` in metrics.json says how many.")
        return {"does": f"predicts {len(self.parts)} tasks at once from one shared backbone: {described}", "caveats": caveats}

    def export_spec(self) -> dict[str, Any]:
        """One graph output per task, named after it (`[batch, outputs]` logits read as the part's own spec)."""
        return {"activation": "per task", "outputs": {p.name: {"kind": p.kind, "width": p.out_width, **p.task.export_spec()} for p in self.parts}}

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        """The lowest of the parts' agreements (each on its own columns)."""
        results = [(p.name, *p.task.export_agreement(reference[:, p.out], exported[:, p.out], precision)) for p in self.parts]
        worst = min(r[1] for r in results)
        return worst, "; ".join(f"{name}: {what} {value:.3f}" for name, value, what in results)


class _Missing:
    def __repr__(self) -> str:
        return "missing"


_MISSING = _Missing()
_MISSING_WORDS = frozenset({"", "nan", "null", "n/a"})  # not "none": a real class in many label sets


def _cell(raw: Any, kind: LabelKind) -> Any:
    """A manifest cell as a part's label: `_MISSING` for an empty or missing cell (masked), else
    what `parse_label` makes of it (a `BadLabel` when unreadable)."""
    from graftkit.data.core import parse_label

    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return _MISSING
    if isinstance(raw, str) and raw.strip().casefold() in _MISSING_WORDS:
        return _MISSING
    return parse_label(raw, kind)


def _is_bad(value: Any) -> bool:
    from graftkit.data.core import BadLabel

    return isinstance(value, BadLabel)


def _classes(labels: list[Any], kind: LabelKind) -> list[str]:
    if kind is LabelKind.CLASSES:
        return sorted({n for label in labels for n in label})
    if kind is LabelKind.CLASS:
        return sorted(set(labels))
    return []
