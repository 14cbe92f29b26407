"""Read labelled text data (DESIGN.md §6), validate all of it, and split it.

Accepted inputs:
- a `.csv` (delimiter comma, tab or semicolon, from the header line), `.tsv` or `.jsonl` file with
  a text column and a label column; the column names are guessed (`text`, `sentence`, `review`,
  `content`; `label`, `labels`, `score`, ...) or given with `--text-col` / `--label-col`;
- a `.txt` file for `CONTINUATION` labels (causal LM): paragraphs separated by blank lines, or one
  text per line when there is no blank line;
- a folder with `train.*` and optionally `val.*` (or `valid.*`, `validation.*`) and `test.*`.

What a label is comes from the task as a `LabelKind`: `CLASS` (one class name), `CLASSES` (names
joined by `|`, or a JSON list in JSONL), `VALUE` (a number), `SEQUENCE` (`source` -> `target`
text), `CONTINUATION` (plain `text`, or `prompt` + `response`: the loss is on the response only).
Labels are parsed, split, checked and counted by `graftkit.data.core`, as for images.

Files are read as UTF-8 (with or without a byte-order mark), else as latin-1 with a warning.
Every problem is reported in one `DataError`. Without a validation split, a seeded split is made
(`core.seeded_split`: stratified by class for `CLASS`, by a hash of (seed, text) so it does not
depend on row order).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graftkit.data import core
from graftkit.data._problems import Problems
from graftkit.data.core import SPLIT_ALIASES as _SPLIT_ALIASES
from graftkit.data.images import SUPPORTED_EXTENSIONS
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError

_IMAGE_HINT = "this is image data, and the --model given is a text model: choose an image model (e.g. --model efficientnet_lite0)"

__all__ = ["TextSample", "TextData", "read_text_data", "read_texts", "read_labelled_texts"]

_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")
_TEXT_COLUMNS = ("text", "sentence", "review", "content")
_TEXT_DEFAULTS = {
    LabelKind.CLASS: _TEXT_COLUMNS,
    LabelKind.CLASSES: _TEXT_COLUMNS,
    LabelKind.VALUE: _TEXT_COLUMNS,
    LabelKind.SEQUENCE: ("source", *_TEXT_COLUMNS),
    LabelKind.CONTINUATION: (*_TEXT_COLUMNS, "prompt"),
    LabelKind.RECORD: _TEXT_COLUMNS,
}
_LABEL_DEFAULTS = {
    LabelKind.CLASS: ("label", "labels", "class", "category"),
    LabelKind.CLASSES: ("labels", "label", "tags"),
    LabelKind.VALUE: ("score", "label", "target", "value"),
    LabelKind.SEQUENCE: ("target",),
    LabelKind.CONTINUATION: ("response",),
}
_TARGET_KINDS = (LabelKind.SEQUENCE, LabelKind.CONTINUATION)  # the label is a text, kept in `target`


@dataclass(frozen=True)
class TextSample:
    """One text example."""

    text: str
    """The input text (the source of a seq2seq pair; the prompt of a prompt/response pair)."""
    label: str | list[str] | float | None = None
    """Class name (`CLASS`), class names (`CLASSES`), number (`VALUE`), else None."""
    target: str | None = None
    """The seq2seq target, or the response of a prompt/response causal-LM pair."""
    row: int = 0
    """1-based line (CSV/TSV/JSONL/TXT line where the example starts) in its file, for messages."""


@dataclass
class TextData:
    """A validated, split text data set."""

    train: list[TextSample]
    """Training examples, in file order."""
    val: list[TextSample]
    """Validation examples, in file order."""
    test: list[TextSample]
    """Test examples (may be empty), in file order."""
    classes: list[str]
    """Sorted training class names (`CLASS`, `CLASSES`); [] for the other label kinds."""
    split: str
    """Where val came from: `given` or e.g. `seeded stratified 20% (seed 0)`."""
    label_kind: LabelKind
    """How the labels were read."""
    source: str
    """The file or folder read."""
    encoding: str
    """The encoding the files were read with (`utf-8`, `utf-8-sig`, `latin-1`, ...)."""
    columns: dict[str, str | None] = field(default_factory=dict)
    """The columns used: `{"text": "review", "label": "label"}` (None for TXT files)."""
    duplicates: core.Duplicates | None = None
    """Texts found more than once (all splits, whitespace collapsed), if any."""
    val_source: str | None = None
    """The separate validation file (`--val`), if one was given."""

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label id."""
        return {name: i for i, name in enumerate(self.classes)}

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per class for each split (class label kinds; empty otherwise)."""
        return core.split_counts(self.splits(), self.classes)

    def to_dict(self, include_files: bool = False) -> dict[str, Any]:
        """A JSON-ready description for graft.json and the report.

        Args:
            include_files: Also list the row numbers of each split, so the exact split can be
                recorded in the run directory.
        """
        d: dict[str, Any] = {
            "root": self.source,
            "layout": "text",
            "split": self.split,
            "encoding": self.encoding,
            "columns": dict(self.columns),
            **({"val_root": self.val_source} if self.val_source else {}),
            **core.label_summary(self.label_kind, self.classes, self.splits()),
        }
        if self.duplicates:
            d["duplicates"] = self.duplicates.to_dict()
        if include_files:
            d["rows"] = {name: [s.row for s in samples] for name, samples in self.splits()}
        return d

    def splits(self) -> list[tuple[str, list[TextSample]]]:
        """`[("train", ...), ("val", ...), ("test", ...)]`."""
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def summary(self) -> str:
        """A short human-readable description: sizes, split, and examples per class."""
        detail = f"{self.split}; {self.source}, {self.encoding}"
        return "\n".join(core.summary_lines(self.label_kind, self.classes, self.splits(), detail))


# ----------------------------------------------------------------------------------------------
# Public readers


def read_text_data(
    path: str | os.PathLike[str],
    *,
    label_kind: LabelKind = LabelKind.CLASS,
    text_col: str | None = None,
    label_col: str | None = None,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    encoding: str | None = None,
) -> TextData:
    """Read, validate and split a text data set.

    Args:
        path: A `.csv`/`.tsv`/`.jsonl`/`.txt` file, or a folder with `train.*` (and optionally
            `val.*`, `test.*`) files of those kinds.
        label_kind: How labels are written (the task's `label_kind`); decides which columns are
            read and how labels are parsed.
        text_col: The text column (`--text-col`); default: the first of `text`, `sentence`,
            `review`, `content` (`source` first for `SEQUENCE`; `prompt` for `CONTINUATION`).
        label_col: The label column (`--label-col`); default by kind: `label`/`labels` (`CLASS`,
            `CLASSES`), `score`/`label` (`VALUE`), `target` (`SEQUENCE`), `response`
            (`CONTINUATION`, optional).
        val: A separate validation file; not allowed when `path` is a folder with a val file.
        val_fraction: Share moved to validation when no validation set is given.
        seed: Seed of that split; the same rows and seed always give the same split.
        encoding: The files' encoding (`--encoding`); default: UTF-8 (BOM or not), else latin-1
            with a warning.

    Returns:
        A `TextData` with the samples of each split in file order.

    Raises:
        DataError: Every problem found: empty or unreadable files, missing columns (naming those
            present and the flag), empty texts, missing or malformed labels (with row numbers),
            classes with fewer than 2 examples when a split must be made, fewer than 2 classes,
            val/test labels unknown to train.
        ConfigError: `label_kind` is not a `LabelKind`, `val_fraction` not between 0 and 1,
            unknown encoding.

    Example:
        >>> data = read_text_data("reviews.csv", label_kind=LabelKind.CLASS, seed=0)
        >>> data.classes, len(data.train), data.split
        (['neg', 'pos'], 160, 'seeded stratified 20% (seed 0)')
    """
    label_kind = core.to_label_kind(label_kind)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    _check_encoding_name(encoding)
    path = Path(path).expanduser().absolute()
    problems = Problems()
    files = _split_files(path, problems)
    if val is not None:
        val_path = Path(val).expanduser().absolute()
        if "val" in files:
            problems.add(
                "conflicting validation sets",
                f"{path} already has a validation file ({files['val'].name}) and a separate val set "
                f"{val_path} was given: pass only one",
            )
        elif not val_path.is_file():
            problems.add("unreadable sources", f"{val_path}: no such file (the validation set)")
        else:
            files["val"] = val_path
    reader = _Reader(label_kind, text_col, label_col, encoding, problems)
    splits = {name: reader.read(file) for name, file in files.items()}
    problems.raise_if_any(path)  # column and row problems first: label checks need clean rows

    train, given_val, test = splits.get("train", []), splits.get("val"), splits.get("test", [])
    duplicates = None
    if label_kind.has_classes or label_kind is LabelKind.VALUE:
        duplicates = core.find_duplicates([*train, *(given_val or []), *test], _duplicate_key, lambda s: f"line {s.row}")
        core.report_duplicates(duplicates, path, "text")
    split_description = "given"
    if given_val is None:
        train, val_samples, split_description = _split(train, label_kind, val_fraction, seed, files["train"], problems)
        held = len(val_samples)
        if duplicates:  # labelled kinds: a copy is never scored on itself
            train, val_samples = core.keep_together(train, val_samples, _duplicate_key)
        if held and not val_samples:
            problems.add(
                "too few examples",
                f"{files['train']}: every validation example is a copy of a training one, so nothing is left to validate on: "
                "add distinct examples, or give a validation file with --val",
            )
    else:
        val_samples = given_val
    _check_labels(label_kind, train, val_samples, test, problems)
    problems.raise_if_any(path)
    return TextData(
        train=sorted(train, key=lambda s: s.row),
        val=sorted(val_samples, key=lambda s: s.row),
        test=sorted(test, key=lambda s: s.row),
        classes=core.training_classes(train, label_kind),
        split=split_description,
        label_kind=label_kind,
        source=str(path),
        encoding=reader.encoding_used(),
        columns=reader.columns,
        duplicates=duplicates or None,
        val_source=str(val_path) if val is not None else None,
    )


def read_texts(
    path: str | os.PathLike[str], *, text_col: str | None = None, encoding: str | None = None
) -> list[TextSample]:
    """Read unlabelled texts to predict on: a `.txt` file (one text per line) or the text column of
    a `.csv`/`.tsv`/`.jsonl` file.

    Args:
        path: The file.
        text_col: The text column for CSV/TSV/JSONL (`--text-col`); guessed as in `read_text_data`.
        encoding: The file's encoding (`--encoding`); default: UTF-8, else latin-1 with a warning.

    Returns:
        The texts as `TextSample`s (no labels), in file order.

    Raises:
        DataError: Empty or unreadable file, missing column, empty texts (with row numbers).

    Example:
        >>> [s.text for s in read_texts("new_reviews.txt")][:1]
        ['A quiet, lovely film.']
    """
    _check_encoding_name(encoding)
    path = Path(path).expanduser().absolute()
    problems = Problems()
    if not path.is_file():
        problems.add("unreadable sources", f"{path}: no such file")
        problems.raise_if_any(path)
    reader = _Reader(LabelKind.CLASS, text_col, None, encoding, problems, labelled=False, txt_lines=True)
    samples = reader.read(path)
    problems.raise_if_any(path)
    return samples


# ----------------------------------------------------------------------------------------------
# Files and decoding


def _check_encoding_name(encoding: str | None) -> None:
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError as e:
        raise ConfigError(f"--encoding {encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)") from e


def _split_files(path: Path, problems: Problems) -> dict[str, Path]:
    """`{"train": file, "val": file, "test": file}` for a folder; `{"train": path}` for a file."""
    if not path.exists():
        problems.add("unreadable sources", f"{path}: no such file or folder")
        return {}
    if path.is_file():
        if path.suffix.lower() not in _SUFFIXES:
            hint = _IMAGE_HINT if path.suffix.lower() in SUPPORTED_EXTENSIONS else "use .csv, .tsv, .jsonl or .txt"
            problems.add("unreadable sources", f"{path}: unsupported file type {path.suffix or '(none)'!r} for a text model: {hint}")
            return {}
        return {"train": path}
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        split = _SPLIT_ALIASES.get(file.stem.lower())
        if not file.is_file() or split is None or file.suffix.lower() not in _SUFFIXES:
            continue
        if split in found:
            problems.add(
                "conflicting files",
                f"{path}: both {found[split].name} and {file.name} hold the {split} split: keep one",
            )
            continue
        found[split] = file
    if "train" not in found:
        images = any(f.suffix.lower() in SUPPORTED_EXTENSIONS for f in _first_files(path, 200))
        problems.add(
            "unreadable sources",
            f"{path}: no train.csv, train.tsv, train.jsonl or train.txt in the folder: "
            + (_IMAGE_HINT if images else "pass a data file, or a folder with train.* (and val.*, test.*) files"),
        )
        return {}
    return found


def _first_files(folder: Path, limit: int) -> Iterator[Path]:
    """Up to `limit` files under `folder` (for telling an image folder from a text one)."""
    for i, (dirpath, _, names) in enumerate(os.walk(folder)):
        for name in names[:limit]:
            yield Path(dirpath) / name
        if i >= limit:
            return


def _decode(data: bytes, path: Path, encoding: str | None, problems: Problems) -> tuple[str | None, str]:
    """File bytes -> (text, encoding used); None with a problem when `encoding` does not fit."""
    if encoding is not None:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as e:
            problems.add(
                "unreadable files",
                f"{path}: not valid {encoding} (byte {e.start}): pass the file's real encoding with --encoding",
            )
            return None, encoding
    if data.startswith(codecs.BOM_UTF8):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8-sig"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        warnings.warn(
            f"{path} is not valid UTF-8 (byte {e.start}); it was read as latin-1. If accented "
            "letters look wrong, pass the file's encoding with --encoding (e.g. --encoding cp1252).",
            UserWarning,
            stacklevel=4,
        )
        return data.decode("latin-1"), "latin-1"


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # (1-based line number, line) on \n, \r\n or \r only (str.splitlines also splits on \x0b, \u2028...).
    yield from enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1)


@contextlib.contextmanager
def _large_csv_fields() -> Iterator[None]:
    # The csv module refuses fields over 128 KiB by default; documents can be longer.
    old = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _delimiter(header: str, path: Path) -> str:
    """The header line's most frequent delimiter among tab, comma and semicolon."""
    counts = {d: header.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] == 0:
        return "\t" if path.suffix.lower() == ".tsv" else ","
    return best


# ----------------------------------------------------------------------------------------------
# Rows -> samples


class _Reader:
    """Reads files of one data set with the same columns and label kind, collecting problems."""

    def __init__(self, kind: LabelKind, text_col: str | None, label_col: str | None, encoding: str | None,
                 problems: Problems, *, labelled: bool = True, txt_lines: bool = False) -> None:  # fmt: skip
        self.kind = kind
        self.text_col = text_col
        self.label_col = label_col
        self.encoding = encoding
        self.problems = problems
        self.labelled = labelled
        self.txt_lines = txt_lines  # .txt: always one text per line (unlabelled input)
        self.encodings: list[str] = []
        self.columns: dict[str, str | None] = {}

    def encoding_used(self) -> str:
        return ", ".join(dict.fromkeys(self.encodings)) or (self.encoding or "utf-8")

    def read(self, path: Path) -> list[TextSample]:
        try:
            data = path.read_bytes()
        except OSError as e:
            self.problems.add("unreadable sources", f"{path}: cannot be read ({e.strerror or e})")
            return []
        text, used = _decode(data, path, self.encoding, self.problems)
        self.encodings.append(used)
        if text is None:
            return []
        if not text.strip():
            self.problems.add("empty files", f"{path}: the file is empty: add rows")
            return []
        suffix = path.suffix.lower()
        if suffix == ".txt":
            return self._from_txt(path, text)
        rows = self._jsonl_rows(path, text) if suffix == ".jsonl" else self._csv_rows(path, text)
        if rows is None:
            return []
        return self._samples(path, *rows)

    # -- formats -----------------------------------------------------------------------------

    def _from_txt(self, path: Path, text: str) -> list[TextSample]:
        if self.labelled and self.kind is not LabelKind.CONTINUATION:
            self.problems.add(
                "unreadable sources",
                f"{path}: a .txt file has no labels; for {self.kind.noun}s use a .csv, .tsv or .jsonl "
                f"file with a text and a {self.kind.noun} column (a .txt file suits --task causal-lm)",
            )
            return []
        self.columns = {"text": None, "label": None}
        lines = list(_lines(text))
        filled = [i for i, (_, line) in enumerate(lines) if line.strip()]
        inner = lines[filled[0] : filled[-1] + 1] if filled else []
        paragraphs = not self.txt_lines and any(not line.strip() for _, line in inner)
        if not paragraphs:
            return [TextSample(line.strip(), row=n) for n, line in lines if line.strip()]
        samples: list[TextSample] = []
        start, block = 0, []
        for n, line in lines:
            if line.strip():
                if not block:
                    start = n
                block.append(line.rstrip())
            elif block:
                samples.append(TextSample("\n".join(block).strip(), row=start))
                block = []
        if block:
            samples.append(TextSample("\n".join(block).strip(), row=start))
        return samples

    def _csv_rows(self, path: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]] | None:
        header = next((line for _, line in _lines(text) if line.strip()), "")
        delimiter = _delimiter(header, path)
        rows: list[tuple[int, dict[str, Any]]] = []
        try:
            with _large_csv_fields():
                reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
                names: list[str] | None = None
                end = 0
                for record in reader:
                    start, end = end + 1, reader.line_num
                    if not any(cell.strip() for cell in record):
                        continue  # blank line
                    if names is None:
                        names = [cell.strip() for cell in record]
                        continue
                    if len(record) > len(names):
                        self.problems.add(
                            "bad rows",
                            f"{path} line {start}: {len(record)} fields but the header has {len(names)}: "
                            "quote fields that contain the delimiter",
                        )
                        continue
                    rows.append((start, dict(zip(names, record))))  # short rows: missing cells
        except csv.Error as e:
            self.problems.add("unreadable sources", f"{path}: not a valid CSV file ({e}): check quoting")
            return None
        if names is None:
            self.problems.add("empty files", f"{path}: the file is empty: add a header line and rows")
            return None
        if not rows:
            self.problems.add("empty files", f"{path}: only a header line, no rows: add rows")
            return None
        return rows, names

    def _jsonl_rows(self, path: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]] | None:
        rows: list[tuple[int, dict[str, Any]]] = []
        names: dict[str, None] = {}
        for n, line in _lines(text):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                self.problems.add("bad rows", f"{path} line {n}: not valid JSON ({e.msg}): fix or remove the line")
                continue
            if not isinstance(obj, dict):
                self.problems.add("bad rows", f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
                continue
            names.update(dict.fromkeys(str(k) for k in obj))
            rows.append((n, {str(k): v for k, v in obj.items()}))
        if not rows:
            if not self.problems.has_kind("bad rows"):
                self.problems.add("empty files", f"{path}: no JSON objects in the file: add one per line")
            return None
        return rows, list(names)

    # -- columns and values --------------------------------------------------------------------

    def _pick(self, path: Path, names: list[str], wanted: str | None, defaults: tuple[str, ...],
              role: str, flag: str, required: bool) -> str | None:  # fmt: skip
        by_lower = {n.strip().lower(): n for n in names}
        candidates = (wanted,) if wanted else defaults
        for c in candidates:
            if c.strip().lower() in by_lower:
                return by_lower[c.strip().lower()]
        if required:
            present = ", ".join(repr(n) for n in names) or "none"
            what = (
                f"no column {wanted!r}"
                if wanted
                else f"no {role} column (looked for {', '.join(repr(d) for d in defaults)})"
            )
            self.problems.add(
                "missing columns",
                f"{path}: {what}; the columns are {present}: name the {role} column with {flag}",
            )
        return None

    def _samples(self, path: Path, rows: list[tuple[int, dict[str, Any]]], names: list[str]) -> list[TextSample]:
        kind = self.kind
        text_defaults = _TEXT_DEFAULTS[kind]
        continuation = kind is LabelKind.CONTINUATION
        if continuation and not self.text_col and not any(n.strip().lower() == "text" for n in names):
            text_defaults = ("prompt", *_TEXT_COLUMNS)  # prompt/response pairs
        text_name = self._pick(path, names, self.text_col, text_defaults, "text", "--text-col", True)
        # A continuation is read only for prompts, or when --label-col names one.
        is_prompt = (text_name or "").strip().lower() == "prompt"
        wants_label = self.labelled and (not continuation or self.label_col is not None or is_prompt)
        record = kind is LabelKind.RECORD  # multitask: every other column is a label column the task reads
        if record:
            wants_label = False
        label_name = None
        if wants_label:
            label_name = self._pick(path, names, self.label_col, _LABEL_DEFAULTS[kind], kind.noun, "--label-col", True)
        self.columns = {"text": text_name, "label": label_name}
        if text_name is None or (wants_label and label_name is None):
            return []
        bad = core.RowProblems()
        samples: list[TextSample] = []
        for row, values in rows:
            text = values.get(text_name)
            if not isinstance(text, str) or not text.strip():
                what = "empty or whitespace-only text" if isinstance(text, str) else "text is not a string"
                what = "no text" if text is None else what
                bad.add("empty texts", what, row, "fill in the text or remove these rows")
                continue
            if record and self.labelled:
                samples.append(TextSample(text, label={k: v for k, v in values.items() if k != text_name and k.strip().lower() != "split"}, row=row))
                continue
            if label_name is None:
                samples.append(TextSample(text, row=row))
                continue
            label = core.parse_label(values.get(label_name), kind)
            if isinstance(label, core.BadLabel):
                bad.add_label(label, row)
            elif kind in _TARGET_KINDS:
                samples.append(TextSample(text, target=label, row=row))
            else:
                samples.append(TextSample(text, label=label, row=row))
        bad.report(self.problems, path)
        return samples


# ----------------------------------------------------------------------------------------------
# Splits and label checks


def _content(sample: TextSample) -> str:
    # Content only, not the row: reordering the file does not change the split (ties keep file order).
    return f"{sample.text}\0{sample.target or ''}"


def _duplicate_key(s: TextSample) -> str:
    return core.text_key(s.text)


def _split(train: list[TextSample], kind: LabelKind, fraction: float, seed: int, file: Path,
           problems: Problems) -> tuple[list[TextSample], list[TextSample], str]:  # fmt: skip
    """Seeded split (`core.seeded_split`); single-label classes need 2 examples each."""
    if kind.stratified:
        by_class: dict[str, list[TextSample]] = {}
        for s in train:
            by_class.setdefault(str(s.label), []).append(s)
        small = sorted(c for c, members in by_class.items() if len(members) < 2)
        for c in small:
            rows = ", ".join(str(s.row) for s in by_class[c][:3])
            problems.add(
                "small classes",
                f"class {c!r} has 1 example ({file} line {rows}); a validation split needs at least 2 per "
                "class: add examples, remove the class, or give a validation file with --val",
            )
        if small:
            return train, [], ""
    keep, held = core.seeded_split(train, fraction, seed, kind=kind, content=_content)
    core.check_seeded_val(held, len(train), problems, source=file, noun="example")
    return keep, held, core.split_description(kind, fraction, seed)


def _check_labels(kind: LabelKind, train: list[TextSample], val: list[TextSample], test: list[TextSample],
                  problems: Problems) -> None:  # fmt: skip
    if not kind.has_classes or problems.has_kind("small classes"):
        return
    known = core.training_classes(train, kind)
    core.check_training_labels(known, len(train), kind, problems, where=" in train")
    for name, samples in (("val", val), ("test", test)):
        core.report_unknown_labels(
            problems, samples, known, split=name, members=_rows,
            fix=f"add training examples of it or remove these rows from {name}",
        )  # fmt: skip


def _rows(samples: list[TextSample]) -> str:
    """`2 row(s), lines 3, 4`, for messages about a group of samples."""
    return f"{len(samples)} row(s), {core.line_list([s.row for s in samples])}"


def read_labelled_texts(
    path: str | os.PathLike[str],
    *,
    label_kind: LabelKind,
    classes: list[str],
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str | None = None,
    split: str | None = None,
) -> list[TextSample]:
    """Read every labelled row of a file to score a trained run on it (`graft evaluate`).

    Args:
        path: A CSV/TSV/JSONL/TXT file, or a folder of `train.*`/`val.*`/`test.*` files (then
            `split`, default `test`, picks one).
        label_kind: How the run's task reads labels (its `label_kind`).
        classes: The run's classes; a label outside them is reported with its rows.
        text_col: The text column (`--text-col`), as in `read_text_data`.
        label_col: The label column (`--label-col`), as in `read_text_data`.
        encoding: The file's encoding (`--encoding`), as in `read_text_data`.
        split: Which file of a folder to read (`train`, `val`, `test`).

    Returns:
        The labelled samples, in file order.

    Raises:
        DataError: unreadable file, missing columns, empty texts, labels the run does not know.

    Example:
        >>> samples = read_labelled_texts("holdout.csv", label_kind=LabelKind.CLASS, classes=["neg", "pos"])
    """
    label_kind = core.to_label_kind(label_kind)
    _check_encoding_name(encoding)
    path = Path(path).expanduser().absolute()
    problems = Problems()
    if path.is_dir():
        files = _split_files(path, problems)
        wanted = split or ("test" if "test" in files else "val")
        if wanted not in files:
            problems.add("unreadable sources", f"{path}: no {wanted}.* file (found: {', '.join(sorted(files)) or 'none'})")
            problems.raise_if_any(path)
        path = files[wanted]
    elif not path.is_file():
        problems.add("unreadable sources", f"{path}: no such file")
        problems.raise_if_any(path)
    samples = _Reader(label_kind, text_col, label_col, encoding, problems).read(path)
    if label_kind.has_classes:
        core.report_unknown_labels(
            problems, samples, classes, split="", members=_rows, known_as=f"one of the run's classes ({', '.join(classes)})",
            fix="fix or remove these rows, or train a run that knows this class",
        )  # fmt: skip
    problems.raise_if_any(path)
    return samples
