"""Read labelled image data (DESIGN.md §6), validate all of it, and split it.

Accepted inputs:
- class folder: `ROOT/<class>/<file>` (files may sit in sub-folders of a class folder);
- split folder: `ROOT/train/<class>/<file>`, plus `val/` (or `valid/`, `validation/`) and `test/`;
- manifest: a `.csv` or `.jsonl` file with columns `path` and `label` (paths relative to the
  manifest's folder, or absolute) and optionally `split` (`train`, `val`/`valid`/`validation`,
  `test`).

What a label is comes from the task as a `LabelKind`: folders hold one class per image (`CLASS`);
manifests also hold several (`CLASSES`: `a|b`, or a JSON list) or a number (`VALUE`). Labels are
parsed, split, checked and counted by `graftkit.data.core`, as for texts.

Everything is validated before training starts and every problem is reported in one `DataError`
(at most 20 messages per kind, then a count). Hidden files (`.DS_Store`, `._x.jpg`, ...) and
`Thumbs.db`/`desktop.ini` are ignored silently. Without a validation split, a seeded split is made
(`core.seeded_split`: stratified by class for `CLASS`).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from graftkit.data import core
from graftkit.data._problems import Problems
from graftkit.data.core import SPLIT_ALIASES as _SPLIT_ALIASES
from graftkit.data.images import SUPPORTED_EXTENSIONS, check_image
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError

__all__ = [
    "Sample",
    "ImageData",
    "read_image_data",
    "read_labelled_images",
    "list_image_files",
    "stratified_split",
]

_IMAGE_KINDS = (LabelKind.CLASS, LabelKind.CLASSES, LabelKind.VALUE, LabelKind.RECORD)
_KIND_WORDS = {
    LabelKind.CLASSES: "several labels per image (like a|b, for --task multilabel)",
    LabelKind.VALUE: "numeric targets (for --task regression)",
    LabelKind.RECORD: "several label columns (for a multitask --task NAME:KIND,...; a 'path' column and one column per task)",
}
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_MANIFEST_SUFFIXES = (".csv", ".jsonl")
_SUPPORTED = ", ".join(sorted(SUPPORTED_EXTENSIONS))


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled image file."""

    path: Path
    """The image file (absolute when read by `read_image_data`)."""
    label: Any
    """Its label, parsed by its `LabelKind`: a class name, a sorted list of names, or a float
    (see `graftkit.data.core`)."""


@dataclass
class ImageData:
    """A validated, split image data set."""

    train: list[Sample]
    """Training samples, sorted by path."""
    val: list[Sample]
    """Validation samples, sorted by path."""
    test: list[Sample]
    """Test samples (may be empty), sorted by path."""
    classes: list[str]
    """Sorted training class names (every name of a multi-label set); [] for `VALUE` labels.
    The index of a name is its label id."""
    root: Path
    """The data folder (for a manifest: the manifest's folder)."""
    split: str
    """Where val came from: `given` or e.g. `seeded stratified 20% (seed 0)`."""
    layout: str = "class-folder"
    """`class-folder`, `split-folder` or `manifest`."""
    val_root: Path | None = None
    """The separate validation source passed as `val`, if any."""
    label_kind: LabelKind = LabelKind.CLASS
    """How the labels were read."""
    duplicates: core.Duplicates | None = None
    """Image files with the same bytes found more than once (all splits), if any."""

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label id."""
        return {name: i for i, name in enumerate(self.classes)}

    def splits(self) -> list[tuple[str, list[Sample]]]:
        """`[("train", ...), ("val", ...), ("test", ...)]`."""
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class for each split: `{"train": {"cat": 40, ...}, "val": {...}, "test": {...}}`
        (a multi-label image counts once per label; {} for `VALUE` labels)."""
        return core.split_counts(self.splits(), self.classes)

    def to_dict(self, include_files: bool = False) -> dict[str, Any]:
        """A JSON-ready description for graft.json and the report.

        Args:
            include_files: Also list every file per split (relative to `root` where possible), so
                the exact split can be recorded in the run directory.
        """
        d: dict[str, Any] = {
            "root": str(self.root),
            "layout": self.layout,
            "split": self.split,
            **core.label_summary(self.label_kind, self.classes, self.splits()),
        }
        if self.val_root is not None:
            d["val_root"] = str(self.val_root)
        if self.duplicates:
            d["duplicates"] = self.duplicates.to_dict()
        if include_files:
            d["files"] = {
                name: [[_relative(s.path, self.root), s.label] for s in samples] for name, samples in self.splits()
            }
        return d

    def summary(self) -> str:
        """A short human-readable table: one line per class with its count in each split."""
        detail = f"{self.split}; {self.layout} {self.root}"
        return "\n".join(core.summary_lines(self.label_kind, self.classes, self.splits(), detail))


# ----------------------------------------------------------------------------------------------
# Public readers


def read_image_data(
    path: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    label_kind: LabelKind = LabelKind.CLASS,
) -> ImageData:
    """Read, validate and split an image data set.

    Args:
        path: A class folder, a split folder (`train/`, `val/`, `test/`) or a CSV/JSONL manifest.
        val: A separate validation set (class folder or manifest without a split column); not
            allowed when `path` already has a validation split.
        val_fraction: Share moved to validation when no validation split is given (of each
            class for `CLASS` labels).
        seed: Seed of that split; the same files and seed always give the same split.
        label_kind: How labels are written: `CLASS` (folders or manifests), `CLASSES` (`a|b` or a
            JSON list) or `VALUE` (a number), both in manifests only.

    Returns:
        An `ImageData` with sorted samples and the sorted training class names.

    Raises:
        DataError: Listing every problem found: unreadable/empty images, unsupported files,
            empty classes, classes with fewer than 2 training images, fewer than 2 classes,
            val/test labels unknown to train, manifest rows with missing columns, files or
            malformed labels, a folder given for labels only a manifest can hold.
        ConfigError: `val_fraction` is not between 0 and 1; a label kind images cannot have.

    Example:
        >>> data = read_image_data("flowers/", val_fraction=0.2, seed=0)
        >>> data.classes, len(data.train), data.split
        (['daisy', 'rose'], 80, 'seeded stratified 20% (seed 0)')
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    label_kind = _check_image_kind(label_kind)
    path = Path(path).expanduser().absolute()
    problems = Problems()
    splits, root, layout = _read_source(path, problems, allow_splits=True, kind=label_kind)
    split_description = "given"
    val_root = None

    if val is not None:
        val_root = Path(val).expanduser().absolute()
        if splits.get("val"):
            problems.add(
                "conflicting validation sets",
                f"{path} already has a validation split and a separate val set {val_root} was given: pass only one",
            )
        val_splits, _, _ = _read_source(val_root, problems, allow_splits=False, kind=label_kind)
        splits["val"] = val_splits.get("all", [])
    train = splits.get("train", splits.get("all", []))
    given_val = splits.get("val")
    test = splits.get("test", [])

    if path.exists() and not problems.has_kind("unreadable sources"):
        _check_labels(train, given_val or [], test, label_kind, layout, given_val is not None, problems)
    _check_files([*train, *(given_val or []), *test], problems)
    problems.raise_if_any(path)

    keys = content_keys([s.path for s in (*train, *(given_val or []), *test)])
    key = lambda s: keys[s.path]  # noqa: E731  (same bytes, same key)
    duplicates = core.find_duplicates([*train, *(given_val or []), *test], key, lambda s: _relative(s.path, root))
    core.report_duplicates(duplicates, path, "image")
    if given_val is None:  # every class keeps a training image, so val and test labels stay known
        n = len(train)
        train, val_samples = core.seeded_split(
            train, val_fraction, seed, kind=label_kind, content=lambda s: _relative(s.path, root)
        )
        train, val_samples = core.keep_together(train, val_samples, key)  # a copy is never scored on itself
        core.check_seeded_val(val_samples, n, problems, source=path, noun="image")
        problems.raise_if_any(path)
        split_description = core.split_description(label_kind, val_fraction, seed)
    else:
        val_samples = given_val
    classes = core.training_classes(train, label_kind)
    return ImageData(
        train=_sorted(train),
        val=_sorted(val_samples),
        test=_sorted(test),
        classes=classes,
        root=root,
        split=split_description,
        layout=layout,
        val_root=val_root,
        label_kind=label_kind,
        duplicates=duplicates or None,
    )


def read_labelled_images(
    path: str | os.PathLike[str],
    classes: list[str] | None = None,
    *,
    split: str | None = None,
    label_kind: LabelKind = LabelKind.CLASS,
) -> tuple[list[Sample], list[str]]:
    """Read one labelled set, without splitting it (for `graft evaluate`).

    Args:
        path: A class folder or a CSV/JSONL manifest; a split folder or a manifest with a `split`
            column needs `split`.
        classes: The class names the model knows, in label-id order. Labels outside it are errors.
        split: Which split to read from a split folder or a manifest's `split` column
            (`train`, `val`, `test`).
        label_kind: How labels are written (see `read_image_data`).

    Returns:
        `(samples sorted by path, classes)`; `classes` is the given list, else the sorted labels.

    Raises:
        DataError: Every problem: unreadable or unsupported files, empty class folders, missing
            manifest columns or files, labels not in `classes` (naming them and their files).

    Example:
        >>> samples, classes = read_labelled_images("holdout/", classes=run.classes)
    """
    path = Path(path).expanduser().absolute()
    problems = Problems()
    if split is not None and split not in _SPLIT_ALIASES:
        raise ConfigError(f"split {split!r} is not a split name; choose one of: train, val, test")
    label_kind = _check_image_kind(label_kind)
    splits, _, _ = _read_source(path, problems, allow_splits=True, kind=label_kind)
    is_split = bool(splits) and "all" not in splits
    samples = splits.get("all", [])
    if split is None and is_split:
        problems.add(
            "ambiguous inputs",
            f"{path} is split into {', '.join(sorted(splits))}: choose one with split='test' "
            f"(or point at one split folder, e.g. {path / 'test'})",
        )
    elif split is not None:
        wanted = _SPLIT_ALIASES[split]
        if not is_split and splits:
            problems.add("missing splits", f"{path} is not split into train/val/test: drop split={split!r}")
        elif is_split and not splits.get(wanted):
            problems.add("missing splits", f"{path} has no {wanted!r} split (found: {', '.join(sorted(k for k in splits if splits[k]))})")
        samples = splits.get(wanted, []) if is_split else []

    if not problems.has_kind("unreadable sources") and not problems.has_kind("ambiguous inputs"):
        if not samples and not problems.has_kind("missing splits"):
            problems.add("empty inputs", f"{path}: no images found: check the path")
        if classes is not None and label_kind.has_classes:
            core.report_unknown_labels(
                problems, samples, classes, split="", members=_files, known_as=f"one of the run's classes ({', '.join(classes)})",
                fix="the model cannot predict it: remove these files or relabel them",
            )  # fmt: skip
    _check_files(samples, problems)
    problems.raise_if_any(path)
    names = list(classes) if classes is not None else core.training_classes(samples, label_kind)
    return _sorted(samples), names


def list_image_files(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, folders (recursively) and glob patterns into a list of image files.

    Args:
        inputs: Image files, folders and/or glob patterns (`"photos/**/*.jpg"`).

    Returns:
        Image files in input order (sorted within each folder or pattern), without duplicates.
        Files are not opened; non-image files inside folders and pattern matches are skipped.

    Raises:
        DataError: Listing every input that does not exist, is not a supported image file, or
            expands to no images.

    Example:
        >>> list_image_files(["a.jpg", "more/", "shots/*.png"])
        [PosixPath('a.jpg'), PosixPath('more/b.jpg'), PosixPath('shots/c.png')]
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    problems = Problems()
    found: dict[Path, None] = {}
    if not inputs:
        problems.add("empty inputs", "no input files or folders given: pass image files, folders or glob patterns")
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_file():
            if p.suffix.lower() in SUPPORTED_EXTENSIONS:
                found.setdefault(p)
            else:
                problems.add(
                    "unsupported files", f"{p}: unsupported file type {p.suffix or '(none)'!r} (supported: {_SUPPORTED})"
                )
        elif p.is_dir():
            images = sorted(f for f, _ in _walk_images(p))
            if not images:
                problems.add("empty inputs", f"{p}: folder contains no images ({_SUPPORTED})")
            found.update(dict.fromkeys(images))
        elif glob.has_magic(str(item)):
            matches: list[Path] = []
            for m in sorted(glob.glob(os.path.expanduser(str(item)), recursive=True)):
                mp = Path(m)
                if mp.is_dir():
                    matches.extend(sorted(f for f, _ in _walk_images(mp)))
                elif mp.suffix.lower() in SUPPORTED_EXTENSIONS and not _is_hidden(mp.name):
                    matches.append(mp)
            if not matches:
                problems.add("empty inputs", f"{item}: pattern matches no image files")
            found.update(dict.fromkeys(matches))
        else:
            problems.add("missing files", f"{p}: no such file or folder")
    problems.raise_if_any(", ".join(str(i) for i in inputs) or "inputs")
    return list(found)


def stratified_split(
    samples: list[Sample], val_fraction: float, seed: int, *, root: Path | None = None
) -> tuple[list[Sample], list[Sample]]:
    """Split single-label samples into train and val, class by class, deterministically for a seed
    (`core.seeded_split` with `LabelKind.CLASS`, hashing paths relative to `root`).

    Each class with n images gives `core.val_count(n, val_fraction)` to val: `n * val_fraction`
    rounded half up, at least 1 and at most n - 1 (so every class keeps one training image, and a
    class with 2 or more images has one in val). Files are ordered by a hash of (seed, path
    relative to `root`), so the split does not depend on listing order or on where the data folder
    lives, and adding a file moves few others.

    Args:
        samples: Labelled samples.
        val_fraction: Share of each class to put in val, between 0 and 1.
        seed: The split seed.
        root: Paths are hashed relative to this folder when given.

    Returns:
        `(train, val)`, each sorted by path.

    Example:
        >>> train, val = stratified_split(samples, 0.2, seed=0)
    """
    name = (lambda s: _relative(s.path, root)) if root is not None else (lambda s: s.path.as_posix())
    train, val = core.seeded_split(samples, val_fraction, seed, kind=LabelKind.CLASS, content=name)
    return _sorted(train), _sorted(val)


# ----------------------------------------------------------------------------------------------
# Sources: folder layouts and manifests -> {"all" | "train" | "val" | "test": [Sample]}


def _read_source(
    path: Path, problems: Problems, *, allow_splits: bool, kind: LabelKind
) -> tuple[dict[str, list[Sample]], Path, str]:
    """Read a folder or manifest into samples per split; problems are recorded, not raised."""
    if not path.exists():
        problems.add("unreadable sources", f"{path}: no such file or folder")
        return {}, path, "missing"
    if path.is_file():
        if path.suffix.lower() not in _MANIFEST_SUFFIXES:
            problems.add(
                "unreadable sources",
                f"{path}: not a folder or a .csv/.jsonl manifest: pass a class folder, a train/val/test folder or a manifest",
            )
            return {}, path.parent, "manifest"
        return _read_manifest(path, problems, allow_splits=allow_splits, kind=kind), path.parent, "manifest"
    if kind is not LabelKind.CLASS:
        problems.add(
            "unreadable sources",
            f"{path}: a folder gives each image one class (--task classification); {_KIND_WORDS[kind]} need a "
            "CSV or JSONL manifest with 'path' and 'label' columns: list the images in one and pass it",
        )
        return {}, path, "folder"

    subdirs = {e.name: Path(e.path) for e in os.scandir(path) if e.is_dir() and not _is_hidden(e.name)}
    split_dirs = {name: d for name, d in subdirs.items() if name.lower() in _SPLIT_ALIASES}
    if "train" in {n.lower() for n in split_dirs} and allow_splits:
        splits: dict[str, list[Sample]] = {}
        seen: dict[str, str] = {}
        for name, d in sorted(split_dirs.items()):
            canonical = _SPLIT_ALIASES[name.lower()]
            if canonical in seen:
                problems.add(
                    "conflicting validation sets",
                    f"{path}: both {seen[canonical]}/ and {name}/ are present: merge them into one {canonical} folder",
                )
                continue
            seen[canonical] = name
            splits[canonical] = _read_class_folder(d, problems, context=f"{name}/")
        for name in sorted(set(subdirs) - set(split_dirs)):
            problems.add(
                "unexpected folders",
                f"{path / name}: a split folder may only contain train/, val/ and test/: move or remove {name}/",
            )
        _report_loose_images(path, problems)
        return splits, path, "split-folder"
    if split_dirs and not allow_splits and "train" in {n.lower() for n in split_dirs}:
        problems.add("unreadable sources", f"{path}: is split into train/val/test folders; pass a single class folder")
        return {}, path, "split-folder"
    return {"all": _read_class_folder(path, problems, context="")}, path, "class-folder"


def _read_class_folder(root: Path, problems: Problems, *, context: str) -> list[Sample]:
    """`ROOT/<class>/**/<file>` -> samples; empty classes and unsupported files are problems."""
    samples: list[Sample] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if _is_hidden(entry.name) or not entry.is_dir():
            continue
        class_dir = Path(entry.path)
        count = 0
        for file, supported in _walk_files(class_dir):
            if supported:
                samples.append(Sample(file, entry.name))
                count += 1
            else:
                problems.add(
                    "unsupported files",
                    f"{file}: unsupported file type {file.suffix or '(none)'!r} in class folder "
                    f"{context}{entry.name}/ (supported: {_SUPPORTED}): remove it or convert it",
                )
        if count == 0:
            problems.add(
                "empty classes",
                f"class folder {context}{entry.name}/ ({class_dir}) has no images: add images or remove the folder",
            )
    _report_loose_images(root, problems)
    return samples


def _report_loose_images(root: Path, problems: Problems) -> None:
    """Images directly in ROOT belong to no class: report them rather than drop them silently."""
    for entry in os.scandir(root):
        if entry.is_file() and not _is_hidden(entry.name) and Path(entry.name).suffix.lower() in SUPPORTED_EXTENSIONS:
            problems.add(
                "images outside class folders",
                f"{entry.path}: image is not inside a class folder: move it into {root}/<class>/ or remove it",
            )


def _read_manifest(path: Path, problems: Problems, *, allow_splits: bool, kind: LabelKind) -> dict[str, list[Sample]]:
    """A CSV/JSONL manifest -> samples per split (`all` when it has no split column)."""
    try:
        rows, columns = _manifest_rows(path, problems)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems.add("unreadable sources", f"{path}: cannot be read ({e}): check the file")
        return {}
    if rows is None:
        return {}
    missing = [c for c in (("path",) if kind is LabelKind.RECORD else ("path", "label")) if c not in columns]  # RECORD: the task's columns
    for c in missing:
        problems.add(
            "missing columns",
            f"{path}: missing column {c!r} (found: {', '.join(sorted(columns)) or 'none'}): "
            f"add a {c!r} column (every manifest needs 'path' and 'label')",
        )
    if missing:
        return {}
    has_split = "split" in columns
    if has_split and not allow_splits:
        problems.add("ambiguous inputs", f"{path}: has a 'split' column; a separate val manifest must not have one")
        return {}
    base = path.parent
    out: dict[str, list[Sample]] = {}
    first_row: dict[Path, str] = {}
    bad_labels = core.RowProblems()
    for line, row in rows:
        where = f"line {line}"
        raw_path = row.get("path")
        bad = False
        if raw_path is None or (isinstance(raw_path, str) and not raw_path.strip()):
            problems.add("bad manifest rows", f"{path} {where}: empty 'path': fill it in or remove the row")
            bad = True
        elif not isinstance(raw_path, (str, int)) or isinstance(raw_path, bool):
            problems.add("bad manifest rows", f"{path} {where}: 'path' must be a string, got {json.dumps(raw_path)}")
            bad = True
        raw_label = {k: v for k, v in row.items() if k not in ("path", "split")} if kind is LabelKind.RECORD else row.get("label")
        label = core.parse_label(raw_label, kind)
        if isinstance(label, core.BadLabel):
            bad_labels.add_label(label, line)
            bad = True
        split_name = "all"
        if has_split:
            raw_split = str(row.get("split") or "").strip().lower()
            if raw_split not in _SPLIT_ALIASES:
                problems.add(
                    "bad manifest rows",
                    f"{path} {where}: split {row.get('split')!r} is not one of train, val, test: fix the value",
                )
                bad = True
            else:
                split_name = _SPLIT_ALIASES[raw_split]
        if bad:
            continue
        rel = str(raw_path).strip()
        file = Path(rel).expanduser()
        file = file if file.is_absolute() else base / file
        if file in first_row:
            problems.add(
                "duplicate manifest rows",
                f"{path} {where}: {rel!r} is already listed at {first_row[file]}: remove the duplicate row",
            )
            continue
        first_row[file] = where
        if file.suffix.lower() not in SUPPORTED_EXTENSIONS:
            problems.add(
                "unsupported files",
                f"{path} {where}: {rel!r} has unsupported file type {file.suffix or '(none)'!r} (supported: {_SUPPORTED})",
            )
            continue
        if not file.is_file():
            problems.add(
                "missing files",
                f"{path} {where}: file {rel!r} does not exist (paths are relative to {base}): fix the path or remove the row",
            )
            continue
        out.setdefault(split_name, []).append(Sample(file, label))
    bad_labels.report(problems, path)
    if has_split:
        out.setdefault("train", [])
    else:
        out.setdefault("all", [])
    return out


def _manifest_rows(path: Path, problems: Problems) -> tuple[list[tuple[int, dict]] | None, set[str]]:
    """Rows as `(line number, {column: value})` with lower-cased column names, and the set of columns."""
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fieldnames = [(n or "").strip().lower() for n in (reader.fieldnames or [])]
            for raw in reader:
                row = {(k or "").strip().lower(): v for k, v in raw.items() if k is not None}
                rows.append((reader.line_num, row))
        if not fieldnames:
            problems.add("unreadable sources", f"{path}: empty manifest: add a header line 'path,label' and rows")
            return None, set()
        return rows, set(fieldnames)
    columns: set[str] = set()
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.add("bad manifest rows", f"{path} line {number}: not valid JSON ({e.msg}): fix or remove the line")
                continue
            if not isinstance(obj, dict):
                problems.add("bad manifest rows", f"{path} line {number}: expected a JSON object with 'path' and 'label'")
                continue
            row = {str(k).strip().lower(): v for k, v in obj.items()}
            columns.update(row)
            rows.append((number, row))
    if not rows and not problems:
        problems.add("unreadable sources", f"{path}: empty manifest: add one JSON object per line with 'path' and 'label'")
        return None, set()
    return rows, columns


# ----------------------------------------------------------------------------------------------
# Validation


def _check_labels(
    train: list[Sample],
    val: list[Sample],
    test: list[Sample],
    kind: LabelKind,
    layout: str,
    val_given: bool,
    problems: Problems,
) -> None:
    """Class counts (every single-label class needs 2 training images) and label agreement between splits."""
    where = " in train" if layout == "split-folder" or val_given else ""
    if kind is LabelKind.CLASS:
        counts: dict[str, int] = {}
        for s in train:
            counts[s.label] = counts.get(s.label, 0) + 1
        for label, n in sorted(counts.items()):
            if n < 2:
                fix = "add images or remove the folder" if layout != "manifest" else "add rows or remove the class"
                problems.add("small classes", f"class {label!r} has 1 image{where} (need at least 2): {fix}")
    classes = core.training_classes(train, kind)
    if not problems.has_kind("missing columns") and not problems.has_kind("bad labels"):
        core.check_training_labels(classes, len(train), kind, problems, where=where, fix=" - add one folder (or label) per class")
    if kind.has_classes:
        for name, samples in (("val", val), ("test", test)):
            core.report_unknown_labels(
                problems, samples, classes, split=name, members=_files,
                fix=f"add training images of this class or remove these files from {name}",
            )  # fmt: skip


def _files(samples: list[Sample]) -> str:
    """`2 file(s): a.jpg, b.jpg` (at most 3 named), for messages about a group of samples."""
    files = ", ".join(str(s.path) for s in sorted(samples, key=lambda s: s.path)[:3])
    more = f" and {len(samples) - 3} more" if len(samples) > 3 else ""
    return f"{len(samples)} file(s): {files}{more}"


def _check_image_kind(kind: LabelKind) -> LabelKind:
    kind = core.to_label_kind(kind)
    if kind not in _IMAGE_KINDS:
        raise ConfigError(
            f"images have class labels, several class labels or numeric targets, not {kind.noun}s: "
            "choose --task classification, multilabel or regression for an image model"
        )
    return kind


def content_keys(paths: Iterable[Path]) -> dict[Path, str]:
    """A key per file that is equal exactly for files with the same bytes: the size, plus a hash
    of the bytes for files whose size another file shares (most files are only stat'ed)."""
    paths = list(dict.fromkeys(paths))
    sizes = {}
    for p in paths:
        try:
            sizes[p] = p.stat().st_size
        except OSError:
            sizes[p] = -1
    shared = Counter(sizes.values())
    keys = {}
    for p in paths:
        if shared[sizes[p]] < 2 or sizes[p] < 0:
            keys[p] = f"{sizes[p]}:{p}"
        else:
            keys[p] = f"{sizes[p]}:{hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()}"
    return keys


def _check_files(samples: list[Sample], problems: Problems) -> None:
    """Run `check_image` on every file (sequentially: about 0.1 ms a file; threads were slower),
    one at a time with a progress bar on terminals (a manifest of 100,000+ files: only each file's
    header is read, nothing is kept)."""
    from graftkit.engine.progress import EpochProgress

    with EpochProgress("checking images", total=len(samples), unit="file", enabled=len(samples) >= 1000) as bar:
        for s in samples:
            problem = check_image(s.path)
            if problem is not None:
                problems.add("unreadable files", problem)
            bar.advance(1)


# ----------------------------------------------------------------------------------------------
# Small helpers


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _walk_files(folder: Path) -> Iterable[tuple[Path, bool]]:
    """Every non-hidden file under `folder` (recursively, following links), with whether it is an image."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in sorted(filenames):
            if not _is_hidden(name):
                yield Path(dirpath) / name, Path(name).suffix.lower() in SUPPORTED_EXTENSIONS


def _walk_images(folder: Path) -> Iterable[tuple[Path, bool]]:
    return ((p, ok) for p, ok in _walk_files(folder) if ok)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _sorted(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: str(s.path))
