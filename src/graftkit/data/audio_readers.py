"""Read labelled audio data (DESIGN.md §6), validate all of it, and split it.

Accepted inputs:
- class folder `ROOT/<class>/<file>` of wav/flac/ogg/mp3 files, or a split folder
  `ROOT/{train,val,test}/<class>/<file>`;
- a CSV or JSONL manifest with `path` and `label` (classification) or `path` and `text`
  (transcripts), optionally `split`; paths relative to the manifest;
- a NeMo manifest: JSONL with `audio_filepath`, `text` (and `duration`, which is re-measured);
- a Hugging Face `audiofolder`: a folder holding `metadata.csv` (or `metadata.jsonl`) with
  `file_name` and a label or transcription column.

Every file is decoded once during validation, so unreadable, empty and silent files and clips
longer than the limit are all reported together, with their names, before training starts. Labels
are parsed, split and checked by `graftkit.data.core`, as for images and texts.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graftkit.data import core
from graftkit.data._problems import Problems
from graftkit.data.audio import AUDIO_EXTENSIONS, audio_problem, probe_audio
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError

__all__ = ["AudioSample", "AudioData", "read_audio_data", "read_labelled_audio", "PATH_COLUMNS", "LABEL_COLUMNS"]

PATH_COLUMNS = ("path", "audio_filepath", "file_name", "audio", "file")
"""Manifest columns read as the audio file, first match wins (NeMo: `audio_filepath`; HF: `file_name`)."""
LABEL_COLUMNS = {
    "class": ("label", "labels", "class"),
    "text": ("text", "transcription", "transcript", "sentence", "label"),
}
"""Manifest columns read as the label: class names for classification, transcripts otherwise."""
_SUPPORTED = ", ".join(sorted(AUDIO_EXTENSIONS))


@dataclass(frozen=True)
class AudioSample:
    """One labelled audio file."""

    path: Path
    """The audio file (absolute)."""
    label: Any
    """Its label, parsed by its `LabelKind` (a class name, a list of names, a number, a transcript)."""


@dataclass
class AudioData:
    """A validated, split audio data set."""

    train: list[AudioSample]
    val: list[AudioSample]
    test: list[AudioSample]
    classes: list[str]
    """Sorted training class names; [] for transcripts and numbers."""
    root: Path
    split: str
    """Where val came from: `given` or e.g. `seeded stratified 20% (seed 0)`."""
    layout: str
    """`class-folder`, `split-folder`, `manifest`, `nemo` or `audiofolder`."""
    seconds: dict[Path, float] = field(default_factory=dict)
    """Each file's duration, measured while validating."""
    native_rates: dict[int, int] = field(default_factory=dict)
    """Sample rate as recorded → number of files."""
    label_kind: LabelKind = LabelKind.CLASS

    def splits(self) -> list[tuple[str, list[AudioSample]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    @property
    def longest_seconds(self) -> float:
        """The longest clip in any split, in seconds."""
        return max(self.seconds.values(), default=0.0)

    def to_dict(self, include_files: bool = False) -> dict[str, Any]:
        """A JSON-ready description for graft.json and the report (`include_files`: every file per split)."""
        d: dict[str, Any] = {
            "root": str(self.root),
            "layout": self.layout,
            "split": self.split,
            "longest_seconds": round(self.longest_seconds, 3),
            **core.label_summary(self.label_kind, self.classes, self.splits()),
        }
        if include_files:
            d["files"] = {name: [[_relative(s.path, self.root), s.label] for s in samples] for name, samples in self.splits()}
        return d

    def summary(self) -> str:
        detail = f"{self.split}; {self.layout} {self.root}; longest clip {self.longest_seconds:.2f} s"
        return "\n".join(core.summary_lines(self.label_kind, self.classes, self.splits(), detail))


def read_audio_data(
    path: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    label_kind: LabelKind = LabelKind.CLASS,
    max_seconds: float | None = None,
) -> AudioData:
    """Read, validate and split an audio data set.

    Args:
        path: A class folder, a split folder, a CSV/JSONL manifest (NeMo JSONL included) or an
            `audiofolder` with `metadata.csv`.
        val: A separate validation set (class folder or manifest).
        val_fraction: Share moved to validation when no validation split is given.
        seed: Seed of that split.
        label_kind: How labels are written (the task's `label_kind`): class names for
            classification, `SEQUENCE` for transcripts.
        max_seconds: Clips longer than this are reported (None: no limit here).

    Returns:
        An `AudioData`, samples sorted by path, with every file's duration.

    Raises:
        DataError: Every problem at once: unreadable, empty or silent files, too long clips,
            unsupported files, missing columns, too few classes, val/test labels unknown to train.
        ConfigError: `val_fraction` not between 0 and 1.

    Example:
        >>> data = read_audio_data("clips/", seed=0)
        >>> data.classes
        ['no', 'yes']
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    path = Path(path).expanduser().absolute()
    problems = Problems()
    splits, root, layout = _read_source(path, problems, label_kind)
    if val is not None:
        val_splits, _, _ = _read_source(Path(val).expanduser().absolute(), problems, label_kind)
        if splits.get("val"):
            problems.add("conflicting validation sets", f"{path} already has a validation split and --val {val} was given: pass only one")
        splits["val"] = [s for group in val_splits.values() for s in group]
    train = splits.get("train", []) + splits.get("all", [])
    given_val, test = splits.get("val"), splits.get("test", [])
    everything = [*train, *(given_val or []), *test]
    seconds, rates = _check_files(everything, max_seconds, problems)
    if not problems.has_kind("unreadable sources"):
        classes = core.training_classes(train, label_kind)
        core.check_training_labels(classes, len(train), label_kind, problems, fix=" - add one folder (or label) per class")
        for name, group in (("val", given_val or []), ("test", test)):
            if label_kind.has_classes:
                core.report_unknown_labels(problems, group, classes, split=name, members=_members, fix=f"remove these files from {name} or add them to train")
    problems.raise_if_any(path)
    description = "given"
    if given_val is None:
        n = len(train)
        train, given_val = core.seeded_split(train, val_fraction, seed, kind=label_kind, content=lambda s: _relative(s.path, root))
        core.check_seeded_val(given_val, n, problems, source=path, noun="clip")
        problems.raise_if_any(path)
        description = core.split_description(label_kind, val_fraction, seed)
    key = lambda s: str(s.path)  # noqa: E731
    return AudioData(
        sorted(train, key=key), sorted(given_val, key=key), sorted(test, key=key), core.training_classes(train, label_kind),
        root, description, layout, seconds, rates, label_kind,
    )  # fmt: skip


def read_labelled_audio(path: str | os.PathLike[str], *, label_kind: LabelKind, classes: list[str], split: str | None = None, max_seconds: float | None = None) -> list[AudioSample]:
    """Read one labelled audio set without splitting it (for `graft evaluate`).

    Raises:
        DataError: Every problem, including labels the run does not know.
    """
    path = Path(path).expanduser().absolute()
    problems = Problems()
    splits, _, _ = _read_source(path, problems, label_kind)
    if split is not None:
        samples = splits.get(core.SPLIT_ALIASES.get(split, split), [])
    else:
        samples = [s for group in splits.values() for s in group]
    _check_files(samples, max_seconds, problems)  # problems only
    if label_kind.has_classes and classes:
        core.report_unknown_labels(problems, samples, classes, split="", members=_members, fix="remove these files",
                                   known_as=f"one of the run's classes ({', '.join(classes)})")  # fmt: skip
    problems.raise_if_any(path)
    return sorted(samples, key=lambda s: str(s.path))


# ----------------------------------------------------------------------------------------------
# Sources


def _read_source(path: Path, problems: Problems, kind: LabelKind) -> tuple[dict[str, list[AudioSample]], Path, str]:
    if not path.exists():
        problems.add("unreadable sources", f"{path}: no such file or folder")
        return {}, path, "missing"
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
            problems.add("unreadable sources", f"{path}: not a CSV/JSONL manifest or a folder of audio")
            return {}, path.parent, "missing"
        return _read_manifest(path, problems, kind), path.parent, _manifest_layout(path)
    for name in ("metadata.csv", "metadata.jsonl"):
        if (path / name).is_file():
            return _read_manifest(path / name, problems, kind), path, "audiofolder"
    if kind is not LabelKind.CLASS:
        problems.add("unreadable sources", f"{path}: class folders hold one class per clip; {kind.noun}s need a manifest (CSV/JSONL with path,text, or metadata.csv with file_name,transcription)")
        return {}, path, "missing"
    subdirs = {d.name.lower(): d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if "train" in subdirs:
        out = {core.SPLIT_ALIASES[n]: _read_class_folder(d, problems) for n, d in subdirs.items() if n in core.SPLIT_ALIASES}
        return out, path, "split-folder"
    return {"all": _read_class_folder(path, problems)}, path, "class-folder"


def _read_class_folder(root: Path, problems: Problems) -> list[AudioSample]:
    samples = []
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = [f for f in sorted(class_dir.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        audio = [f for f in files if f.suffix.lower() in AUDIO_EXTENSIONS]
        for f in files:
            if f.suffix.lower() not in AUDIO_EXTENSIONS and f.name.lower() not in ("thumbs.db", "desktop.ini"):
                problems.add("unsupported files", f"{f}: unsupported file type {f.suffix or '(none)'!r} (supported: {_SUPPORTED})")
        if not audio:
            problems.add("empty classes", f"{class_dir}: class {class_dir.name!r} has no audio files")
        samples += [AudioSample(f.absolute(), class_dir.name) for f in audio]
    return samples


def _manifest_layout(path: Path) -> str:
    if path.suffix.lower() in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        if '"audio_filepath"' in first:
            return "nemo"
    return "manifest"


def _rows(path: Path, problems: Problems) -> list[tuple[int, dict[str, Any]]]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                return [(i + 2, row) for i, row in enumerate(csv.DictReader(f))]
        rows = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append((i, json.loads(line)))
                    except json.JSONDecodeError as e:
                        problems.add("malformed rows", f"{path} line {i}: not JSON ({e.msg})")
        return rows
    except (OSError, UnicodeDecodeError) as e:
        problems.add("unreadable sources", f"{path}: cannot read ({e})")
        return []


def _read_manifest(path: Path, problems: Problems, kind: LabelKind) -> dict[str, list[AudioSample]]:
    rows = _rows(path, problems)
    if not rows:
        if not problems.has_kind("unreadable sources"):
            problems.add("unreadable sources", f"{path}: no rows")
        return {}
    columns = set().union(*(r.keys() for _, r in rows))
    path_col = next((c for c in PATH_COLUMNS if c in columns), None)
    label_col = next((c for c in LABEL_COLUMNS[_label_family(kind)] if c in columns), None)
    if path_col is None or label_col is None:
        missing = " and ".join(what for what, col in (("a file column (" + "/".join(PATH_COLUMNS) + ")", path_col),
                                                       ("a label column (" + "/".join(LABEL_COLUMNS[_label_family(kind)]) + ")", label_col)) if col is None)  # fmt: skip
        problems.add("missing columns", f"{path}: needs {missing}; found columns {', '.join(sorted(map(str, columns)))}")
        return {}
    out: dict[str, list[AudioSample]] = {}
    for line, row in rows:
        file, raw = row.get(path_col), row.get(label_col)
        if not file or raw is None or (isinstance(raw, str) and not raw.strip()):
            problems.add("incomplete rows", f"{path} line {line}: empty {path_col if not file else label_col!r}: fill it in or remove the row")
            continue
        label = core.parse_label(raw, kind)
        if isinstance(label, core.BadLabel):
            problems.add("malformed labels", f"{path} line {line}: {label.what}: {label.fix}")
            continue
        split = core.SPLIT_ALIASES.get(str(row.get("split") or "").strip().lower(), "all") if "split" in columns else "all"
        file_path = Path(str(file)).expanduser()
        file_path = file_path if file_path.is_absolute() else path.parent / file_path
        if file_path.suffix.lower() not in AUDIO_EXTENSIONS:
            problems.add("unsupported files", f"{path} line {line}: {file!r} has unsupported file type {file_path.suffix or '(none)'!r} (supported: {_SUPPORTED})")
            continue
        out.setdefault(split, []).append(AudioSample(file_path.absolute(), label))
    return out


def _label_family(kind: LabelKind) -> str:
    return "text" if kind in (LabelKind.SEQUENCE, LabelKind.CONTINUATION) else "class"


def _check_files(samples: list[AudioSample], max_seconds: float | None, problems: Problems) -> tuple[dict[Path, float], dict[int, int]]:
    """Decode every file once (threads: libsndfile releases the GIL); record problems and durations."""
    missing = [s for s in samples if not s.path.is_file()]
    for s in missing:
        problems.add("missing files", f"{s.path}: no such file")
    present = [s.path for s in samples if s.path.is_file()]
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) * 2)) as pool:
        found = list(pool.map(lambda p: audio_problem(p, max_seconds), present))
    for problem in found:
        if problem is not None:
            problems.add(*problem)
    bad = {p for p, f in zip(present, found) if f is not None and f[0] != "too long clips"}
    infos = {p: _info(p) for p in present if p not in bad}
    rates: dict[int, int] = {}
    for _, rate in infos.values():
        rates[rate] = rates.get(rate, 0) + 1
    return {p: s for p, (s, _) in infos.items()}, rates


def _info(path: Path) -> tuple[float, int]:
    import soundfile as sf

    info = sf.info(str(path))
    return (info.frames / float(info.samplerate) if info.samplerate else probe_audio(path).seconds), int(info.samplerate)


def _members(group: list[AudioSample]) -> str:
    shown = ", ".join(s.path.name for s in group[:5])
    return f"{len(group)} file(s): {shown}{', ...' if len(group) > 5 else ''}"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
