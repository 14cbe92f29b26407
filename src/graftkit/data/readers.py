"""Read labelled image data (DESIGN.md §6), validate all of it, and split it.

Accepted inputs:
- class folder: `ROOT/<class>/<file>` (files may sit in sub-folders of a class folder);
- split folder: `ROOT/train/<class>/<file>`, plus `val/` (or `valid/`, `validation/`) and `test/`;
- manifest: a `.csv` or `.jsonl` file with columns `path` and `label` (paths relative to the
  manifest's folder, or absolute) and optionally `split` (`train`, `val`/`valid`/`validation`,
  `test`).

Everything is validated before training starts and every problem is reported in one `DataError`
(at most 20 messages per kind, then a count). Hidden files (`.DS_Store`, `._x.jpg`, ...) and
`Thumbs.db`/`desktop.ini` are ignored silently. Without a validation split, a seeded stratified
split is made (see `stratified_split`).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from graftkit.data._problems import Problems
from graftkit.data.images import SUPPORTED_EXTENSIONS, check_image
from graftkit.errors import ConfigError

__all__ = [
    "Sample",
    "ImageData",
    "read_image_data",
    "read_labelled_images",
    "list_image_files",
    "stratified_split",
]

_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_MANIFEST_SUFFIXES = (".csv", ".jsonl")
_SUPPORTED = ", ".join(sorted(SUPPORTED_EXTENSIONS))


@dataclass(frozen=True)
class Sample:
    """One labelled image file."""

    path: Path
    """The image file (absolute when read by `read_image_data`)."""
    label: str
    """Its class name."""


@dataclass
class ImageData:
    """A validated, split image-classification data set."""

    train: list[Sample]
    """Training samples, sorted by path."""
    val: list[Sample]
    """Validation samples, sorted by path."""
    test: list[Sample]
    """Test samples (may be empty), sorted by path."""
    classes: list[str]
    """Sorted training class names; the index of a name is its label id."""
    root: Path
    """The data folder (for a manifest: the manifest's folder)."""
    split: str
    """Where val came from: `given` or e.g. `seeded stratified 20% (seed 0)`."""
    layout: str = "class-folder"
    """`class-folder`, `split-folder` or `manifest`."""
    val_root: Path | None = None
    """The separate validation source passed as `val`, if any."""

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label id."""
        return {name: i for i, name in enumerate(self.classes)}

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class for each split: `{"train": {"cat": 40, ...}, "val": {...}, "test": {...}}`."""
        out: dict[str, dict[str, int]] = {}
        for name, samples in (("train", self.train), ("val", self.val), ("test", self.test)):
            per_class = dict.fromkeys(self.classes, 0)
            for s in samples:
                per_class[s.label] = per_class.get(s.label, 0) + 1
            out[name] = per_class
        return out

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
            "classes": list(self.classes),
            "totals": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "counts": self.counts(),
        }
        if self.val_root is not None:
            d["val_root"] = str(self.val_root)
        if include_files:
            d["files"] = {
                name: [[_relative(s.path, self.root), s.label] for s in samples]
                for name, samples in (("train", self.train), ("val", self.val), ("test", self.test))
            }
        return d

    def summary(self) -> str:
        """A short human-readable table: one line per class with its count in each split."""
        counts = self.counts()
        width = max(len(c) for c in self.classes) if self.classes else 5
        head = (
            f"{len(self.classes)} classes; train {len(self.train)}, val {len(self.val)}, test {len(self.test)} "
            f"({self.split}; {self.layout} {self.root})"
        )
        rows = [f"  {'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
        for c in self.classes:
            rows.append(f"  {c:<{width}}  {counts['train'][c]:>6} {counts['val'][c]:>6} {counts['test'][c]:>6}")
        return "\n".join([head, *rows])


# ----------------------------------------------------------------------------------------------
# Public readers


def read_image_data(
    path: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ImageData:
    """Read, validate and split an image-classification data set.

    Args:
        path: A class folder, a split folder (`train/`, `val/`, `test/`) or a CSV/JSONL manifest.
        val: A separate validation set (class folder or manifest without a split column); not
            allowed when `path` already has a validation split.
        val_fraction: Share of each class moved to validation when no validation split is given.
        seed: Seed of that split; the same files and seed always give the same split.

    Returns:
        An `ImageData` with sorted samples and the sorted training class names.

    Raises:
        DataError: Listing every problem found: unreadable/empty images, unsupported files,
            empty classes, classes with fewer than 2 training images, fewer than 2 classes,
            val/test labels unknown to train, manifest rows with missing columns or files.
        ConfigError: `val_fraction` is not between 0 and 1.

    Example:
        >>> data = read_image_data("flowers/", val_fraction=0.2, seed=0)
        >>> data.classes, len(data.train), data.split
        (['daisy', 'rose'], 80, 'seeded stratified 20% (seed 0)')
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    path = Path(path).expanduser().absolute()
    problems = Problems()
    splits, root, layout = _read_source(path, problems, allow_splits=True)
    split_description = "given"
    val_root = None

    if val is not None:
        val_root = Path(val).expanduser().absolute()
        if splits.get("val"):
            problems.add(
                "conflicting validation sets",
                f"{path} already has a validation split and a separate val set {val_root} was given: pass only one",
            )
        val_splits, _, _ = _read_source(val_root, problems, allow_splits=False)
        splits["val"] = val_splits.get("all", [])
    train = splits.get("train", splits.get("all", []))
    given_val = splits.get("val")
    test = splits.get("test", [])

    if path.exists() and not problems.has_kind("unreadable sources"):
        _check_labels(train, given_val or [], test, root, layout, given_val is not None, problems)
    _check_files([*train, *(given_val or []), *test], problems)
    problems.raise_if_any(path)

    if given_val is None:
        train, val_samples = stratified_split(train, val_fraction, seed, root=root)
        split_description = f"seeded stratified {val_fraction:.0%} (seed {seed})"
    else:
        val_samples = given_val
    classes = sorted({s.label for s in train})
    return ImageData(
        train=_sorted(train),
        val=_sorted(val_samples),
        test=_sorted(test),
        classes=classes,
        root=root,
        split=split_description,
        layout=layout,
        val_root=val_root,
    )


def read_labelled_images(
    path: str | os.PathLike[str],
    classes: list[str] | None = None,
    *,
    split: str | None = None,
) -> tuple[list[Sample], list[str]]:
    """Read one labelled set, without splitting it (for `graft evaluate`).

    Args:
        path: A class folder or a CSV/JSONL manifest; a split folder or a manifest with a `split`
            column needs `split`.
        classes: The class names the model knows, in label-id order. Labels outside it are errors.
        split: Which split to read from a split folder or a manifest's `split` column
            (`train`, `val`, `test`).

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
    splits, _, _ = _read_source(path, problems, allow_splits=True)
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
        if classes is not None:
            known = set(classes)
            _unknown_labels(
                samples, known, "evaluation", problems, fix="the model cannot predict it: remove these files or relabel them"
            )
    _check_files(samples, problems)
    problems.raise_if_any(path)
    names = list(classes) if classes is not None else sorted({s.label for s in samples})
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
    """Split samples into train and val, class by class, deterministically for a seed.

    Each class with n images gives `round(n * val_fraction)` to val, at least 1 and at most n - 1
    (so every class keeps one training image, and a class with 2 or more images has one in val).
    Files are ordered by a hash of (seed, path relative to `root`), so the split does not depend
    on listing order or on where the data folder lives, and adding a file moves few others.

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
    by_class: dict[str, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda s: _split_key(s.path, seed, root))
        n = len(members)
        n_val = 0 if n < 2 else min(n - 1, max(1, int(n * val_fraction + 0.5)))
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return _sorted(train), _sorted(val)


# ----------------------------------------------------------------------------------------------
# Sources: folder layouts and manifests -> {"all" | "train" | "val" | "test": [Sample]}


def _read_source(path: Path, problems: Problems, *, allow_splits: bool) -> tuple[dict[str, list[Sample]], Path, str]:
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
        return _read_manifest(path, problems, allow_splits=allow_splits), path.parent, "manifest"

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


def _read_manifest(path: Path, problems: Problems, *, allow_splits: bool) -> dict[str, list[Sample]]:
    """A CSV/JSONL manifest -> samples per split (`all` when it has no split column)."""
    try:
        rows, columns = _manifest_rows(path, problems)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems.add("unreadable sources", f"{path}: cannot be read ({e}): check the file")
        return {}
    if rows is None:
        return {}
    missing = [c for c in ("path", "label") if c not in columns]
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
    for where, row in rows:
        raw_path, raw_label = row.get("path"), row.get("label")
        bad = False
        for col, value in (("path", raw_path), ("label", raw_label)):
            if value is None or (isinstance(value, str) and not value.strip()):
                problems.add("bad manifest rows", f"{path} {where}: empty {col!r}: fill it in or remove the row")
                bad = True
            elif not isinstance(value, (str, int)) or isinstance(value, bool):
                problems.add(
                    "bad manifest rows", f"{path} {where}: {col!r} must be a string, got {json.dumps(value)}"
                )
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
        out.setdefault(split_name, []).append(Sample(file, str(raw_label).strip()))
    if has_split:
        out.setdefault("train", [])
    else:
        out.setdefault("all", [])
    return out


def _manifest_rows(path: Path, problems: Problems) -> tuple[list[tuple[str, dict]] | None, set[str]]:
    """Rows as `(where, {column: value})` with lower-cased column names, and the set of columns."""
    rows: list[tuple[str, dict]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fieldnames = [(n or "").strip().lower() for n in (reader.fieldnames or [])]
            for raw in reader:
                row = {(k or "").strip().lower(): v for k, v in raw.items() if k is not None}
                rows.append((f"line {reader.line_num}", row))
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
            rows.append((f"line {number}", row))
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
    root: Path,
    layout: str,
    val_given: bool,
    problems: Problems,
) -> None:
    """Class counts and label agreement between splits."""
    counts: dict[str, int] = {}
    for s in train:
        counts[s.label] = counts.get(s.label, 0) + 1
    where = " in train" if layout == "split-folder" or val_given else ""
    for label, n in sorted(counts.items()):
        if n < 2:
            fix = "add images or remove the folder" if layout != "manifest" else "add rows or remove the class"
            problems.add("small classes", f"class {label!r} has 1 image{where} (need at least 2): {fix}")
    if len(counts) < 2 and not problems.has_kind("missing columns"):
        found = ", ".join(repr(c) for c in sorted(counts)) or "none"
        problems.add(
            "too few classes",
            f"found {len(counts)} class{'es' if len(counts) != 1 else ''}{where} ({found}): a classifier needs "
            "at least 2 - add one folder (or label) per class",
        )
    known = set(counts)
    _unknown_labels(val, known, "val", problems, fix="add training images of this class or remove these files from val")
    _unknown_labels(test, known, "test", problems, fix="add training images of this class or remove these files from test")


def _unknown_labels(samples: list[Sample], known: set[str], split: str, problems: Problems, *, fix: str) -> None:
    by_label: dict[str, list[Sample]] = {}
    for s in samples:
        if s.label not in known:
            by_label.setdefault(s.label, []).append(s)
    for label, members in sorted(by_label.items()):
        files = ", ".join(str(s.path) for s in sorted(members, key=lambda s: s.path)[:3])
        more = f" and {len(members) - 3} more" if len(members) > 3 else ""
        problems.add(
            "unknown labels",
            f"{split} label {label!r} is not a training class ({len(members)} file(s): {files}{more}): {fix}",
        )


def _check_files(samples: list[Sample], problems: Problems) -> None:
    """Run `check_image` on every file (sequentially: about 0.1 ms a file; threads were slower)."""
    for s in samples:
        problem = check_image(s.path)
        if problem is not None:
            problems.add("unreadable files", problem)


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


def _split_key(path: Path, seed: int, root: Path | None) -> bytes:
    name = _relative(path, root) if root is not None else path.as_posix()
    return hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _sorted(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: (str(s.path), s.label))
