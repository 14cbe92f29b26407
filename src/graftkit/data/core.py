"""The reader core every modality shares (DESIGN.md §6): labels parsed by `LabelKind`, the seeded
split, the label checks, and the per-split counts that `to_dict` and `summary` print.

The readers (`readers.py` for images, `text.py` for texts) find files and rows; everything that
depends on what a label is happens here, so images and texts parse, split, validate and summarise
labels by the same rules. A sample is anything with a `label` attribute.

Parsed labels, by kind: `CLASS` a class name (`str`); `CLASSES` a sorted list of names (`a|b`, a
JSON list, or empty for "none of the classes"); `VALUE` a finite `float`; `SEQUENCE` and
`CONTINUATION` the text as written.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from graftkit.data._problems import Problems
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError

__all__ = [
    "SPLIT_ALIASES",
    "to_label_kind",
    "BadLabel",
    "RowProblems",
    "parse_label",
    "label_names",
    "training_classes",
    "val_count",
    "split_key",
    "seeded_split",
    "split_description",
    "check_seeded_val",
    "check_training_labels",
    "unknown_labels",
    "report_unknown_labels",
    "line_list",
    "split_counts",
    "label_summary",
    "summary_lines",
    "Duplicates",
    "find_duplicates",
    "keep_together",
    "report_duplicates",
    "text_key",
]

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
"""Accepted split names (folders, file stems, a manifest's `split` column) -> canonical name."""

_ROWS_SHOWN = 10  # line numbers listed per message before "and N more"
_FILL = "fill them in or remove these rows"
_MISSING_WORDS = frozenset({"nan", "null", "n/a"})
"""Labels that spreadsheets, pandas and JSON writers put in an empty cell: missing, never a class
name. (`none` is left alone: "none" is a real class in many label sets.)"""


class Labelled(Protocol):
    """What the core reads from a sample."""

    @property
    def label(self) -> Any: ...


S = TypeVar("S", bound=Labelled)


# ----------------------------------------------------------------------------------------------
# Labels


def to_label_kind(kind: LabelKind | str) -> LabelKind:
    """`kind` as a `LabelKind` (its value, e.g. `"classes"`, is accepted too).

    Raises:
        ConfigError: `kind` is not a label kind (a task name, say), naming the kinds.
    """
    try:
        return LabelKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in LabelKind)
        raise ConfigError(
            f"label kind {kind!r} is not one of: {choices}; pass a task's label_kind "
            "(graftkit.tasks.get_task(name).label_kind), not a task name"
        ) from None


@dataclass(frozen=True)
class BadLabel:
    """Why a raw label could not be parsed."""

    what: str
    """What is wrong, as a phrase that groups rows: `values that are not numbers`."""
    fix: str
    """How to fix it, ending the message."""
    example: str | None = None
    """The offending value, shown once per group (for values that look almost right)."""


def parse_label(raw: Any, kind: LabelKind) -> Any:
    """Parse one raw label (a CSV cell or a JSON value) as `kind` says.

    Args:
        raw: The value as read; None when the cell or key is missing.
        kind: How labels are written.

    Returns:
        The parsed label (see the module docstring), or a `BadLabel` saying what is wrong.

    Example:
        >>> parse_label("b| a", LabelKind.CLASSES), parse_label(" 3e1 ", LabelKind.VALUE)
        (['a', 'b'], 30.0)
        >>> parse_label("lots", LabelKind.VALUE).what
        'values that are not numbers'
    """
    if kind is LabelKind.RECORD:  # several label columns: the task reads each one (tasks/multitask.py)
        if not isinstance(raw, dict):
            return BadLabel("rows without label columns", "use a CSV/JSONL manifest with one column per task")
        return dict(raw)
    if kind is LabelKind.CLASSES:
        names = _class_names(raw)
        if names is None:
            return BadLabel(
                "labels that are neither text nor a list of names",
                "write names joined by '|' (a|b) or a JSON list of names, or remove these rows",
            )
        missing = [n for n in names if n.casefold() in _MISSING_WORDS]
        if missing:
            return BadLabel("labels written as a missing value (NaN, null, N/A)", _FILL, missing[0])
        return names
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return BadLabel(f"missing {kind.noun}", _FILL)
    if kind.has_classes and isinstance(raw, str) and raw.strip().casefold() in _MISSING_WORDS:
        return BadLabel(f"{kind.noun}s written as a missing value (NaN, null, N/A)", _FILL, raw.strip())
    if isinstance(raw, float) and not math.isfinite(raw):
        return BadLabel(f"{kind.noun}s that are NaN or infinite", _FILL, str(raw))
    if kind is LabelKind.VALUE:
        value = _number(raw)
        if value is None:
            return BadLabel("values that are not numbers", "use plain numbers like 3.5 or remove these rows", str(raw)[:30])
        return value
    if isinstance(raw, (dict, list, bool)):
        return BadLabel(f"{kind.noun}s that are not text", "write plain text or remove these rows")
    if kind is LabelKind.CLASS:
        return raw.strip() if isinstance(raw, str) else str(raw)
    return raw if isinstance(raw, str) else str(raw)  # SEQUENCE, CONTINUATION: the text as written


def label_names(label: Any) -> list[str]:
    """The class names a parsed class label carries: `[label]` for one name, the list for several."""
    if label is None:
        return []
    if isinstance(label, (list, tuple)):
        return [str(name) for name in label]
    return [str(label)]


def training_classes(train: Sequence[Labelled], kind: LabelKind) -> list[str]:
    """Sorted class names of the training samples; [] for kinds without classes."""
    if not kind.has_classes:
        return []
    return sorted({name for s in train for name in label_names(s.label)})


def _class_names(raw: Any) -> list[str] | None:
    # `a|b` text, or a JSON list of names; empty means "none of the classes".
    if raw is None:
        return []
    if isinstance(raw, list):
        if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in raw):
            return None
        return sorted(dict.fromkeys(str(x).strip() for x in raw if str(x).strip()))
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        return sorted(dict.fromkeys(p.strip() for p in str(raw).split("|") if p.strip()))
    return None


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class RowProblems:
    """Rows that share a problem, so that one message lists all their line numbers.

    Example:
        >>> rows = RowProblems()
        >>> rows.add_label(parse_label("lots", LabelKind.VALUE), 3)
        >>> rows.report(problems, "data.csv")  # "data.csv: values that are not numbers (e.g. 'lots') in line 3: ..."
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[int]] = {}
        self._fix: dict[tuple[str, str], str] = {}
        self._example: dict[tuple[str, str], str] = {}

    def add(self, kind: str, what: str, row: int, fix: str, example: str | None = None) -> None:
        """Record line `row` under problem `what` (reported as `kind`, ending with `fix`)."""
        key = (kind, what)
        self._rows.setdefault(key, []).append(row)
        self._fix.setdefault(key, fix)
        if example is not None:
            self._example.setdefault(key, example)

    def add_label(self, bad: BadLabel, row: int) -> None:
        """Record line `row` as having the unparseable label `bad`."""
        self.add("bad labels", bad.what, row, bad.fix, bad.example)

    def report(self, problems: Problems, source: str | Path) -> None:
        """Add one message per problem to `problems`, in the order they were first seen."""
        for (kind, what), rows in self._rows.items():
            example = f" (e.g. {self._example[kind, what]!r})" if (kind, what) in self._example else ""
            problems.add(kind, f"{source}: {what}{example} in {line_list(rows)}: {self._fix[kind, what]}")


def line_list(rows: Sequence[int]) -> str:
    """`line 3`, `lines 3, 4` or `lines 1, ..., 10 and 5 more`."""
    shown = ", ".join(str(r) for r in rows[:_ROWS_SHOWN])
    more = f" and {len(rows) - _ROWS_SHOWN} more" if len(rows) > _ROWS_SHOWN else ""
    return f"{'line' if len(rows) == 1 else 'lines'} {shown}{more}"


# ----------------------------------------------------------------------------------------------
# The seeded split


def val_count(n: int, fraction: float) -> int:
    """How many of `n` samples go to validation: `n * fraction` rounded half up, at least 1 and at
    most `n - 1` (so something stays in train); 0 when `n < 2`.

    Example:
        >>> val_count(5, 0.5), val_count(10, 0.2), val_count(1, 0.5)
        (3, 2, 0)
    """
    if n < 2:
        return 0
    return min(n - 1, max(1, math.floor(n * fraction + 0.5)))


def split_key(seed: int, content: str) -> bytes:
    """The order of a sample in the seeded split: a hash of (seed, its content key)."""
    return hashlib.blake2b(f"{seed}\0{content}".encode("utf-8", "surrogatepass"), digest_size=8).digest()


def seeded_split(
    samples: Sequence[S], fraction: float, seed: int, *, kind: LabelKind, content: Callable[[S], str]
) -> tuple[list[S], list[S]]:
    """Split samples into train and val, deterministically for a seed.

    Samples are ordered by `split_key(seed, content(sample))`, so the split depends neither on the
    listing order nor on where the data lives, and adding a sample moves few others. Then:
    `CLASS` takes `val_count(n, fraction)` of each class (a class of 1 stays in train); `CLASSES`
    takes `val_count(N, fraction)` samples in that order, skipping any that holds the last training
    example of one of its labels (so every val label is a training class); other kinds take
    `val_count(N, fraction)` samples in that order.

    Args:
        samples: Parsed samples (labels as `parse_label` returns them).
        fraction: Share to put in val, between 0 and 1.
        seed: The split seed.
        kind: How the labels are written; decides the stratification.
        content: A sample's content key (a path relative to the data root, a text).

    Returns:
        `(train, val)`, each in the order of `samples`. `val` is empty when no sample can go there
        (fewer than 2 samples, or every class too small).

    Example:
        >>> train, val = seeded_split(samples, 0.2, 0, kind=LabelKind.CLASS, content=lambda s: s.text)
    """
    keys = [split_key(seed, content(s)) for s in samples]
    order = sorted(range(len(samples)), key=keys.__getitem__)  # stable: ties keep input order
    if kind.stratified:
        by_class: dict[str, list[int]] = {}
        for i in order:
            by_class.setdefault(str(samples[i].label), []).append(i)
        held = {i for members in by_class.values() for i in members[: val_count(len(members), fraction)]}
    elif kind is LabelKind.CLASSES:
        held = _held_keeping_every_class(samples, order, val_count(len(samples), fraction))
    else:
        held = set(order[: val_count(len(samples), fraction)])
    train = [s for i, s in enumerate(samples) if i not in held]
    val = [s for i, s in enumerate(samples) if i in held]
    return train, val


def _held_keeping_every_class(samples: Sequence[Labelled], order: list[int], k: int) -> set[int]:
    left: dict[str, int] = {}  # training examples each class would keep
    for s in samples:
        for name in label_names(s.label):
            left[name] = left.get(name, 0) + 1
    held: set[int] = set()
    for i in order:
        if len(held) == k:
            break
        names = label_names(samples[i].label)
        if all(left[name] > 1 for name in names):
            held.add(i)
            for name in names:
                left[name] -= 1
    return held


def split_description(kind: LabelKind, fraction: float, seed: int) -> str:
    """How a seeded split is named in graft.json: `seeded stratified 20% (seed 0)`, `seeded 20% (seed 0)`."""
    return f"seeded {'stratified ' if kind.stratified else ''}{fraction:.0%} (seed {seed})"


def check_seeded_val(val: Sequence[Any], n: int, problems: Problems, *, source: str | Path, noun: str) -> None:
    """Report a seeded split that could put nothing in validation (`n` samples were split)."""
    if val:
        return
    if n < 2:
        problems.add(
            "too few examples",
            f"{source}: {n} {noun}(s); a validation split needs at least 2: add rows or give a validation set with --val",
        )
    else:
        problems.add(
            "too few examples",
            f"{source}: every {noun} holds the only training example of one of its labels, so none can go "
            "to validation: add rows or give a validation set with --val",
        )


# ----------------------------------------------------------------------------------------------
# Label checks


def check_training_labels(
    classes: Sequence[str], n_train: int, kind: LabelKind, problems: Problems, *, where: str = "", fix: str = ""
) -> None:
    """Report a training split a task cannot learn from: fewer than 2 classes (`CLASS`), no class
    at all (`CLASSES`), no sample (other kinds).

    Args:
        classes: The training classes (`training_classes`).
        n_train: Training samples.
        kind: How the labels are written.
        problems: Where problems are recorded.
        where: Appended to "found N classes", e.g. " in train".
        fix: Appended to the message, e.g. " - add one folder (or label) per class".
    """
    if kind is LabelKind.CLASS and len(classes) < 2:
        found = ", ".join(repr(c) for c in classes) or "none"
        problems.add(
            "too few classes",
            f"found {len(classes)} class{'es' if len(classes) != 1 else ''}{where} ({found}): a classifier "
            f"needs at least 2{fix}",
        )
    elif kind is LabelKind.CLASSES and not classes:
        problems.add("too few classes", f"no labels{where}: a multi-label classifier needs at least 1 class{fix}")
    elif not kind.has_classes and n_train == 0:
        problems.add("too few examples", f"no training examples{where}: add rows")


def unknown_labels(samples: Sequence[S], known: set[str] | Sequence[str]) -> list[tuple[str, list[S]]]:
    """`(label, samples carrying it)` for every class label outside `known`, sorted by label.

    Example:
        >>> [(label, len(group)) for label, group in unknown_labels(data.val, set(data.classes))]
        [('fox', 2)]
    """
    known = set(known)
    found: dict[str, list[S]] = {}
    for s in samples:
        for name in dict.fromkeys(label_names(s.label)):
            if name not in known:
                found.setdefault(name, []).append(s)
    return sorted(found.items())


def report_unknown_labels(
    problems: Problems,
    samples: Sequence[S],
    known: set[str] | Sequence[str],
    *,
    split: str,
    members: Callable[[list[S]], str],
    fix: str,
    known_as: str = "a training class",
) -> None:
    """Add one `unknown labels` problem per label of `samples` outside `known`.

    Args:
        problems: Where problems are recorded.
        samples: Samples of one split (val, test, an evaluation set).
        known: The class names a model learns or knows.
        split: The split named in the message (`val`, `test`; empty for none).
        members: Describes the samples carrying a label: `2 file(s): a.jpg, b.jpg`, `1 row(s), line 3`.
        fix: How to fix it, ending the message.
        known_as: What `known` is: `a training class`, `one of the run's classes (a, b)`.

    Example:
        >>> report_unknown_labels(problems, data.val, data.classes, split="val", members=lambda g: f"{len(g)} file(s)",
        ...                       fix="remove these files from val")
        # "val label 'fox' is not a training class (2 file(s)): remove these files from val"
    """
    for label, group in unknown_labels(samples, known):
        prefix = f"{split} label" if split else "label"
        problems.add("unknown labels", f"{prefix} {label!r} is not {known_as} ({members(group)}): {fix}")


# ----------------------------------------------------------------------------------------------
# Counts and summaries


def split_counts(splits: Sequence[tuple[str, Sequence[Labelled]]], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Samples per class for each split (a multi-label sample counts once per label); {} without classes.

    Example:
        >>> split_counts([("train", data.train), ("val", data.val)], data.classes)
        {'train': {'cat': 8, 'dog': 4}, 'val': {'cat': 2, 'dog': 1}}
    """
    if not classes:
        return {}
    out: dict[str, dict[str, int]] = {}
    for name, samples in splits:
        per_class = dict.fromkeys(classes, 0)
        for s in samples:
            for label in label_names(s.label):
                per_class[label] = per_class.get(label, 0) + 1
        out[name] = per_class
    return out


def _value_stats(samples: Sequence[Labelled]) -> dict[str, float]:
    values = [float(s.label) for s in samples]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def label_summary(
    kind: LabelKind, classes: Sequence[str], splits: Sequence[tuple[str, Sequence[Labelled]]]
) -> dict[str, Any]:
    """The labels' part of a data set's `to_dict()`: kind, classes, totals, counts per class (class
    kinds) and the training targets' mean/std/min/max (`VALUE`)."""
    d: dict[str, Any] = {
        "label_kind": kind.value,
        "classes": list(classes),
        "totals": {name: len(samples) for name, samples in splits},
    }
    if classes:
        d["counts"] = split_counts(splits, classes)
    train = dict(splits).get("train") or []
    if kind is LabelKind.VALUE and train:
        d["target_stats"] = _value_stats(train)
    return d


_WHAT = {
    LabelKind.RECORD: "rows with several label columns",
    LabelKind.VALUE: "numeric targets",
    LabelKind.SEQUENCE: "source/target pairs",
    LabelKind.CONTINUATION: "texts",
}


def summary_lines(
    kind: LabelKind, classes: Sequence[str], splits: Sequence[tuple[str, Sequence[Labelled]]], detail: str
) -> list[str]:
    """A data set's `summary()`: sizes per split (with `detail`), then one line per class with its
    count in each split, or the training targets' statistics (`VALUE`)."""
    sizes = ", ".join(f"{name} {len(samples)}" for name, samples in splits)
    what = f"{len(classes)} classes" if kind.has_classes else _WHAT[kind]
    lines = [f"{what}; {sizes} ({detail})"]
    if classes:
        counts = split_counts(splits, classes)
        width = max(5, max(len(c) for c in classes))
        names = [name for name, _ in splits]
        lines.append(f"  {'class':<{width}}  " + " ".join(f"{n:>6}" for n in names))
        for c in classes:
            lines.append(f"  {c:<{width}}  " + " ".join(f"{counts[n][c]:>6}" for n in names))
    train = dict(splits).get("train") or []
    if kind is LabelKind.VALUE and train:
        stats = _value_stats(train)
        lines.append("  train targets: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    return lines


# ----------------------------------------------------------------------------------------------
# Duplicates: the same text or file twice, with the same label or with different ones


@dataclass(frozen=True)
class Duplicates:
    """Samples whose content (`find_duplicates`' key) occurs more than once."""

    repeated: int
    """Samples that repeat an earlier one with the same label (they weigh double in training)."""
    conflicting: int
    """Distinct contents found under more than one label (the model is told two things)."""
    conflict_examples: tuple[str, ...] = ()
    """A few conflicting ones, described for messages (`cat/1.png = dog/7.png (cat / dog)`)."""
    repeat_examples: tuple[str, ...] = ()
    """A few repeated ones (`line 4 = line 9`)."""

    def __bool__(self) -> bool:
        return bool(self.repeated or self.conflicting)

    def to_dict(self) -> dict[str, Any]:
        return {"repeated": self.repeated, "conflicting": self.conflicting,
                "examples": [*self.conflict_examples, *self.repeat_examples]}  # fmt: skip


def text_key(text: str) -> str:
    """The duplicate key of a text: its words, whitespace collapsed (case and punctuation kept)."""
    return " ".join(text.split())


def find_duplicates(samples: Sequence[S], key: Callable[[S], str], describe: Callable[[S], str], shown: int = 5) -> Duplicates:
    """Count repeated and conflicting samples among `samples` (all splits together).

    Args:
        samples: Parsed samples.
        key: A sample's content key (`text_key` of a text; a hash of a file's bytes).
        describe: How a sample is named in messages (a row number, a relative path).
        shown: At most this many examples.
    """
    groups: dict[str, list[S]] = {}
    for s in samples:
        groups.setdefault(key(s), []).append(s)
    repeated = conflicting = 0
    conflicts: list[str] = []
    repeats: list[str] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        labels = list(dict.fromkeys(str(m.label) for m in members))
        repeated += len(members) - len(labels)
        where = " = ".join(describe(m) for m in members[:3]) + (" ..." if len(members) > 3 else "")
        if len(labels) > 1:
            conflicting += 1
            conflicts.append(f"{where} ({' / '.join(labels[:3])})")
        else:
            repeats.append(where)
    return Duplicates(repeated, conflicting, tuple(conflicts[:shown]), tuple(repeats[:shown]))


def keep_together(train: Sequence[S], val: Sequence[S], key: Callable[[S], str]) -> tuple[list[S], list[S]]:
    """Move every validation sample whose content is also in train to train: a duplicate is never
    scored on a copy of itself.

    Returns:
        `(train, val)`, in their original orders.
    """
    seen = {key(s) for s in train}
    moved = [s for s in val if key(s) in seen]
    if not moved:
        return list(train), list(val)
    ids = {id(s) for s in moved}
    return [*train, *moved], [s for s in val if id(s) not in ids]


def report_duplicates(dups: Duplicates, source: str | Path, noun: str) -> None:
    """One warning line per kind of duplicate, with examples (nothing when there are none)."""
    from graftkit.engine.progress import warn

    if not dups:
        return
    if dups.conflicting:
        warn(
            f"{source}: {dups.conflicting} {noun}(s) appear under more than one label, e.g. {'; '.join(dups.conflict_examples[:3])}. "
            "Keep one label for each, or remove them; a seeded train/val split keeps them on one side."
        )
    if dups.repeated:
        warn(
            f"{source}: {dups.repeated} {noun}(s) repeat another one with the same label (they count twice in training), "
            f"e.g. {'; '.join((dups.repeat_examples or dups.conflict_examples)[:3])}. A seeded train/val split keeps them on one side."
        )
