"""`RunSpec`: graft.json as one typed, frozen value (DESIGN.md §5), read and written here only.

graft.json says everything needed to rebuild, trust and reproduce a run. The spec checks its own
shape — every key present, none unknown, each value of its type — and reports every problem at
once, by name. The parts other components own stay plain JSON dicts the spec does not look into:
`task` (the task's `to_dict()`), `preprocess` (the backbone's preprocess `to_dict()`), `head`,
`config` (`TrainConfig.to_dict()`), `data`, `lora`, `calibration`, `auto` and `time_budget`.

Older schemas are migrated on read (`rundir/migrate.py`); a newer one is refused.

Example:
    >>> spec = RunSpec.read("runs/flowers")
    >>> spec.model.arch, spec.task["classes"], spec.precision.inference
    ('timm:efficientnet_lite0', ['daisy', 'rose'], 'fp32')
"""

from __future__ import annotations

import copy
import dataclasses
import json
import platform
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from graftkit.errors import RunDirError
from graftkit.rundir._files import write_json
from graftkit.rundir.migrate import SCHEMA_VERSION, migrate

SPEC_FILE = "graft.json"
Status = Literal["training", "done"]
Modality = Literal["image", "text", "audio"]
_FIX = "Restore graft.json as graftkit wrote it, or train the run again (`graft train ... --out RUN --overwrite`)."


@dataclass(frozen=True)
class ModelInfo:
    """The pretrained model a run started from (the backbone's `WeightsInfo`)."""

    model_id: str
    """The id the user asked for, e.g. `efficientnet_lite0`, `hf:bert-base-uncased`."""
    arch: str
    """Canonical architecture (`timm:NAME`, `tv:NAME`, `hf:MODEL_TYPE`): rebuilds the network."""
    source: str
    """Where the weights came from: `builtin`, `timm`, `tv`, `hf`, `file` or `scratch`."""
    sha256: str | None
    """SHA-256 of the source weights file (None for random init)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Source-specific details (a local path, the weights file name, a seed)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Precision:
    """The numeric format decisions of a run, and why."""

    train: str
    """Training precision (`fp32`, `bf16`, `fp16`)."""
    train_reason: str
    """Why that training precision was chosen."""
    inference: str
    """Precision for evaluation and prediction on the training device."""
    inference_reason: str
    """Why that inference precision was chosen."""
    channels_last: bool
    """Whether image batches use the channels-last memory format."""
    device: str
    """The device the run trained on (`cpu`, `cuda`, `cuda:N`)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TextInfo:
    """How a text run's transformers model is rebuilt from the run directory."""

    head_kind: str
    """What the backbone keeps of its model: `features`, `seq2seq` or `causal-lm`."""
    kind: str
    """Model family: `encoder`, `decoder` or `encoder-decoder`."""
    architecture_dir: str = "hf"
    """Folder, inside the run, of the saved config and tokenizer."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunSpec:
    """graft.json: a run's model, task, preprocessing, strategy, settings, precision and versions.

    Build a new one with `RunSpec.new`, derive updated ones with `replace` / `done`, and read or
    write it with `RunSpec.read` / `write`.
    """

    schema_version: int
    """The graft.json schema (`SCHEMA_VERSION` when written by this graftkit)."""
    status: Status
    """`training` from the start of training; `done` once every file of the run is written."""
    created: str
    """When training started (ISO 8601, UTC)."""
    finished: str | None
    """When the run was marked done (ISO 8601, UTC); None while training."""
    modality: Modality
    """`image` or `text`."""
    model: ModelInfo
    """The pretrained model: id, architecture and hash of its source weights."""
    task: dict[str, Any]
    """The task's own entry (`task.to_dict()`, rebuilt by `task_from_dict`): at least `name`."""
    preprocess: dict[str, Any]
    """Input preprocessing, owned by the backbone's preprocess class (`ImagePreprocess`/`TextPreprocess`)."""
    head: dict[str, Any] | None
    """The new output layer (`type`, `in_features`, `out_features`, `dropout`); None when the
    model keeps its own output layer (seq2seq, causal-lm)."""
    strategy: str
    """The strategy trained, e.g. `linear-probe`, `partial:2`, `lora`."""
    config: dict[str, Any]
    """Every training setting (`TrainConfig.to_dict()`), resolved: what a resumed run reuses."""
    precision: Precision
    """Numeric formats and memory format, with the reasons."""
    data: dict[str, Any]
    """Summary of the data: source, layout, split, classes, counts (`dataset.to_dict()`)."""
    versions: dict[str, str]
    """Library versions the run was trained with (`library_versions()`)."""
    text: TextInfo | None = None
    """Text runs: how to rebuild the transformers model; None for image runs."""
    lora: dict[str, Any] | None = None
    """LoRA runs: the adapter settings (`apply_lora`'s result); None otherwise."""
    calibration: dict[str, Any] | None = None
    """Temperature scaling fitted on validation, and ECE before/after; None when not calibrated."""
    auto: dict[str, Any] | None = None
    """`--strategy auto`: the measured choice and its reasons; None otherwise."""
    time_budget: dict[str, Any] | None = None
    """`--time-budget` with a fixed strategy: the measured epoch plan; None otherwise."""
    files: dict[str, str] | None = None
    """SHA-256 of the run's own weight files (`model.safetensors`, ...), recorded when the run is
    marked done and checked on load: weights swapped in from another run are refused."""

    def __post_init__(self) -> None:
        problems = _check(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "")
        if problems:
            raise RunDirError("invalid run spec: " + "; ".join(problems))

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        *,
        backbone_weights: Any,
        task: dict[str, Any],
        preprocess: dict[str, Any],
        head: dict[str, Any] | None,
        strategy: str,
        config: dict[str, Any],
        precision: Precision | Mapping[str, Any] | Any,
        data: dict[str, Any],
        modality: Modality,
        text: TextInfo | Mapping[str, Any] | None = None,
    ) -> "RunSpec":
        """The spec of a run about to train: status `training`, created now, this machine's versions.

        Args:
            backbone_weights: The backbone's `WeightsInfo` (or its `to_dict()`).
            task: `task.to_dict()`.
            preprocess: `backbone.preprocess.to_dict()`.
            head: `task.head_spec(...)`; None when the model keeps its own output layer.
            strategy: `str(cfg.parsed_strategy)`.
            config: `cfg.to_dict()` (resolved settings).
            precision: A `Precision` (or any object with the same fields and a `to_dict()`, or a dict).
            data: `dataset.to_dict()` (plus `tokens` for text runs).
            modality: `image` or `text`.
            text: Text runs: `TextInfo(head_kind, kind, architecture_dir)` or its dict.

        Returns:
            The new `RunSpec`; set `lora`, `calibration`, `auto` / `time_budget` with `replace`.

        Raises:
            RunDirError: A value has the wrong type (all problems listed).

        Example:
            >>> spec = RunSpec.new(backbone_weights=backbone.weights, task=task.to_dict(), ...)  # doctest: +SKIP
            >>> spec.write(run_dir)  # doctest: +SKIP
        """
        return cls(
            schema_version=SCHEMA_VERSION,
            status="training",
            created=utc_now(),
            finished=None,
            modality=modality,
            model=_as(ModelInfo, backbone_weights),
            task=copy.deepcopy(task),
            preprocess=copy.deepcopy(preprocess),
            head=copy.deepcopy(head),
            strategy=str(strategy),
            config=copy.deepcopy(config),
            precision=_as(Precision, precision),
            data=copy.deepcopy(data),
            versions=library_versions(),
            text=None if text is None else _as(TextInfo, text),
        )

    def replace(self, **changes: Any) -> "RunSpec":
        """A copy with `changes` applied and checked (`dataclasses.replace`); e.g.
        `spec.replace(lora=settings)`, `spec.replace(calibration=c, task=task.to_dict())`,
        `spec.replace(created=RunSpec.read(run_dir).created)` on resume."""
        for key in ("model", "precision", "text"):
            if key in changes and isinstance(changes[key], Mapping):
                changes[key] = _as({"model": ModelInfo, "precision": Precision, "text": TextInfo}[key], changes[key])
        return dataclasses.replace(self, **changes)

    def done(self) -> "RunSpec":
        """The spec marked finished now (write it last, once every other file is on disk)."""
        return self.replace(status="done", finished=utc_now())

    # -- JSON -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """graft.json's content: every key, in schema order (a deep copy)."""
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | Path, *, source: str | None = None) -> "RunSpec":
        """Parse graft.json content (a dict, a graft.json path, or a run directory), migrating older schemas.

        Args:
            data: The parsed JSON, or where to read it.
            source: The file, for error messages (default: the path read, else `graft.json`).

        Returns:
            The `RunSpec`.

        Raises:
            RunDirError: The file is missing or not JSON; the schema is newer than this graftkit;
                keys are unknown or missing, or values of the wrong type (all named, with the file).
        """
        if isinstance(data, (str, Path)):
            path = Path(data) / SPEC_FILE if Path(data).is_dir() else Path(data)
            source = source or str(path)
            data = _load(path)
        source = source or SPEC_FILE
        if not isinstance(data, Mapping):
            raise RunDirError(f"{source} holds {type(data).__name__}, not a JSON object. {_FIX}")
        content = migrate(dict(data), source)
        problems = _check(cls, content, "")
        if problems:
            raise RunDirError(f"{source} does not match graft.json schema {SCHEMA_VERSION}: " + "; ".join(problems) + f". {_FIX}")
        fields = {f.name: content[f.name] for f in dataclasses.fields(cls)}
        fields["model"] = ModelInfo(**fields["model"])
        fields["precision"] = Precision(**fields["precision"])
        fields["text"] = None if fields["text"] is None else TextInfo(**fields["text"])
        return cls(**fields)

    # -- files ------------------------------------------------------------------------------

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunSpec":
        """`RUN/graft.json` parsed (any status: `check_run_dir` is what requires a finished run).

        Raises:
            RunDirError: As `from_json`.
        """
        return cls.from_json(Path(run_dir) / SPEC_FILE)

    def write(self, run_dir: str | Path) -> Path:
        """Write `RUN/graft.json` atomically (a temporary file, then a rename); return its path."""
        path = Path(run_dir) / SPEC_FILE
        write_json(path, self.to_json())
        return path


# ----------------------------------------------------------------------------------------------
# Helpers


def utc_now() -> str:
    """Now, as graft.json records times: ISO 8601, UTC, whole seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def graftkit_version() -> str:
    """graftkit's installed version, from the package metadata (`0+unknown` when not installed).
    Not `graftkit.__version__`: importing the package from here would make an import cycle."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graftkit")
    except PackageNotFoundError:
        return "0+unknown"


def library_versions() -> dict[str, str]:
    """The versions graft.json records: graftkit, torch, torchvision, timm and Python."""
    import timm
    import torch
    import torchvision

    return {
        "graftkit": graftkit_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def _load(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path} does not exist, so {path.parent} holds no run. Train one with `graft train DATA --out {path.parent}`.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). {_FIX}") from None
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e.strerror or e}") from None


def _as(cls: type, value: Any) -> Any:
    """`value` as a `cls` dataclass: kept if it is one, else built from its dict (or `to_dict()`)."""
    if isinstance(value, cls):
        return value
    d = value.to_dict() if hasattr(value, "to_dict") else value
    if not isinstance(d, Mapping):
        raise RunDirError(f"invalid run spec: expected a {cls.__name__} or a dict, got {type(value).__name__}")
    problems = _check(cls, d, f"{cls.__name__}.")
    if problems:
        raise RunDirError("invalid run spec: " + "; ".join(problems))
    return cls(**d)


_NESTED = (ModelInfo, Precision, TextInfo)


def _check(cls: type, content: Mapping[str, Any], prefix: str) -> list[str]:
    """Every problem of `content` as the JSON of dataclass `cls`: unknown keys, missing keys
    (those without a default; at the top level, all of them), values of the wrong type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = []
    unknown = [k for k in content if k not in fields]
    if unknown:
        problems.append(f"unknown key{'s' if len(unknown) > 1 else ''} " + ", ".join(repr(prefix + k) for k in unknown))
    strict = cls is RunSpec  # a written graft.json has every key; nested objects may omit defaulted ones
    missing = [
        name for name, f in fields.items()
        if name not in content and (strict or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))
    ]  # fmt: skip
    if missing:
        problems.append(f"missing key{'s' if len(missing) > 1 else ''} " + ", ".join(repr(prefix + k) for k in missing))
    for name, value in content.items():
        if name in fields:
            problems += _check_value(hints[name], value, prefix + name)
    if cls is RunSpec and not problems:
        if not isinstance(content["task"].get("name"), str):
            problems.append("'task' has no 'name' (the registered task it was written by)")
        if content["modality"] == "text" and content["text"] is None:
            problems.append("'text' is null in a text run (it says how to rebuild the model from RUN/hf/)")
    return problems


def _check_value(hint: Any, value: Any, where: str) -> list[str]:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return []
        inner = [o for o in options if o is not type(None)]
        return _check_value(inner[0], value, where) if len(inner) == 1 else []
    if origin is Literal:
        allowed = typing.get_args(hint)
        return [] if value in allowed else [f"{where!r} is {value!r}, not one of {', '.join(map(repr, allowed))}"]
    if isinstance(hint, type) and hint in _NESTED:
        if isinstance(value, hint):
            return []
        if not isinstance(value, Mapping):
            return [f"{where!r} is {_json_type(value)}, not an object"]
        return _check(hint, value, where + ".")
    expected = origin or hint
    if expected is Any:
        return []
    if expected is int and isinstance(value, bool):
        return [f"{where!r} is {_json_type(value)}, not an integer"]
    if expected is dict and isinstance(value, Mapping):
        return []
    if isinstance(value, expected):
        return []
    return [f"{where!r} is {_json_type(value)}, not {_JSON_NAMES.get(expected, expected.__name__)}"]


_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "an object", list: "a list"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for t in (bool, str, int, float, list, dict):
        if isinstance(value, t):
            return _JSON_NAMES[t]
    return type(value).__name__
