"""Read labelled text data (DESIGN.md §6), validate all of it, and split it.

Accepted inputs:
- a `.csv` (delimiter comma, tab or semicolon, from the header line), `.tsv` or `.jsonl` file with
  a text column and a label column; the column names are guessed (`text`, `sentence`, `review`,
  `content`; `label`, `labels`, `score`, ...) or given with `--text-col` / `--label-col`;
- a `.txt` file for `causal-lm`: paragraphs separated by blank lines, or one text per line when
  there is no blank line;
- a folder with `train.*` and optionally `val.*` (or `valid.*`, `validation.*`) and `test.*`.

Tasks and their labels: `classification` (one class name), `multilabel` (names joined by `|`, or a
JSON list in JSONL), `regression` (a number), `seq2seq` (`source` -> `target` text), `causal-lm`
(plain `text`, or `prompt` + `response`: the loss is on the response only).

Files are read as UTF-8 (with or without a byte-order mark), else as latin-1 with a warning.
Every problem is reported in one `DataError`. Without a validation split, a seeded split is made:
stratified by class for classification, by a hash of (seed, text) so it does not depend on row
order.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graftkit.data._problems import Problems
from graftkit.errors import ConfigError

__all__ = ["TextSample", "TextData", "TEXT_TASKS", "read_text_data", "read_texts", "read_labelled_texts"]

TEXT_TASKS = ("classification", "multilabel", "regression", "seq2seq", "causal-lm")
"""The tasks `read_text_data` reads labels for."""

_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_TEXT_COLUMNS = ("text", "sentence", "review", "content")
_TEXT_DEFAULTS = {
    "classification": _TEXT_COLUMNS,
    "multilabel": _TEXT_COLUMNS,
    "regression": _TEXT_COLUMNS,
    "seq2seq": ("source", *_TEXT_COLUMNS),
    "causal-lm": (*_TEXT_COLUMNS, "prompt"),
}
_LABEL_DEFAULTS = {
    "classification": ("label", "labels", "class", "category"),
    "multilabel": ("labels", "label", "tags"),
    "regression": ("score", "label", "target", "value"),
    "seq2seq": ("target",),
    "causal-lm": ("response",),
}
_ROWS_SHOWN = 10  # row numbers listed per problem before "and N more"


@dataclass(frozen=True)
class TextSample:
    """One text example."""

    text: str
    """The input text (the source of a seq2seq pair; the prompt of a prompt/response pair)."""
    label: str | list[str] | float | None = None
    """Class name (classification), class names (multilabel), number (regression), else None."""
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
    """Sorted training class names (classification, multilabel); [] for the other tasks."""
    split: str
    """Where val came from: `given` or e.g. `seeded stratified 20% (seed 0)`."""
    task: str
    """One of `TEXT_TASKS`."""
    source: str
    """The file or folder read."""
    encoding: str
    """The encoding the files were read with (`utf-8`, `utf-8-sig`, `latin-1`, ...)."""
    columns: dict[str, str | None] = field(default_factory=dict)
    """The columns used: `{"text": "review", "label": "label"}` (None for TXT files)."""

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label id."""
        return {name: i for i, name in enumerate(self.classes)}

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per class for each split (classification and multilabel; empty otherwise)."""
        out: dict[str, dict[str, int]] = {}
        if not self.classes:
            return out
        for name, samples in (("train", self.train), ("val", self.val), ("test", self.test)):
            per_class = dict.fromkeys(self.classes, 0)
            for s in samples:
                for label in s.label if isinstance(s.label, list) else [s.label]:
                    per_class[str(label)] = per_class.get(str(label), 0) + 1
            out[name] = per_class
        return out

    def to_dict(self, include_files: bool = False) -> dict[str, Any]:
        """A JSON-ready description for graft.json and the report.

        Args:
            include_files: Also list the row numbers of each split, so the exact split can be
                recorded in the run directory.
        """
        d: dict[str, Any] = {
            "root": self.source,
            "layout": "text",
            "task": self.task,
            "split": self.split,
            "encoding": self.encoding,
            "columns": dict(self.columns),
            "classes": list(self.classes),
            "totals": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
        }
        if self.classes:
            d["counts"] = self.counts()
        if self.task == "regression" and self.train:
            values = [float(s.label) for s in self.train]  # type: ignore[arg-type]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            d["target_stats"] = {"mean": mean, "std": std, "min": min(values), "max": max(values)}
        if include_files:
            d["rows"] = {name: [s.row for s in samples] for name, samples in self.splits()}
        return d

    def splits(self) -> list[tuple[str, list[TextSample]]]:
        """`[("train", ...), ("val", ...), ("test", ...)]`."""
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def summary(self) -> str:
        """A short human-readable description: sizes, split, and examples per class."""
        head = (
            f"{self.task}: train {len(self.train)}, val {len(self.val)}, test {len(self.test)} "
            f"({self.split}; {self.source}, {self.encoding})"
        )
        if not self.classes:
            return head
        counts = self.counts()
        width = max(len(c) for c in self.classes)
        rows = [f"  {'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
        for c in self.classes:
            rows.append(f"  {c:<{width}}  {counts['train'][c]:>6} {counts['val'][c]:>6} {counts['test'][c]:>6}")
        return "\n".join([f"{len(self.classes)} classes; " + head, *rows])


# ----------------------------------------------------------------------------------------------
# Public readers


def read_text_data(
    path: str | os.PathLike[str],
    *,
    task: str = "classification",
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
        task: One of `TEXT_TASKS`; decides which columns are read and how labels are parsed.
        text_col: The text column (`--text-col`); default: the first of `text`, `sentence`,
            `review`, `content` (`source` first for seq2seq; `prompt` for causal-lm).
        label_col: The label column (`--label-col`); default by task: `label`/`labels`
            (classification, multilabel), `score`/`label` (regression), `target` (seq2seq),
            `response` (causal-lm, optional).
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
        ConfigError: Unknown task, `val_fraction` not between 0 and 1, unknown encoding.

    Example:
        >>> data = read_text_data("reviews.csv", task="classification", seed=0)
        >>> data.classes, len(data.train), data.split
        (['neg', 'pos'], 160, 'seeded stratified 20% (seed 0)')
    """
    if task not in TEXT_TASKS:
        raise ConfigError(f"--task {task!r} is not a text task; choose one of: {', '.join(TEXT_TASKS)}")
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
    reader = _Reader(task, text_col, label_col, encoding, problems)
    splits = {name: reader.read(file) for name, file in files.items()}
    problems.raise_if_any(path)  # column and row problems first: label checks need clean rows

    train, given_val, test = splits.get("train", []), splits.get("val"), splits.get("test", [])
    split_description = "given"
    if given_val is None:
        train, val_samples, split_description = _split(train, task, val_fraction, seed, files["train"], problems)
    else:
        val_samples = given_val
    _check_labels(task, train, val_samples, test, given_val is None, problems)
    problems.raise_if_any(path)
    return TextData(
        train=sorted(train, key=lambda s: s.row),
        val=sorted(val_samples, key=lambda s: s.row),
        test=sorted(test, key=lambda s: s.row),
        classes=_classes(task, train),
        split=split_description,
        task=task,
        source=str(path),
        encoding=reader.encoding_used(),
        columns=reader.columns,
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
    reader = _Reader("classification", text_col, None, encoding, problems, labelled=False, txt_lines=True)
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
            problems.add(
                "unreadable sources",
                f"{path}: unsupported file type {path.suffix or '(none)'!r}: use .csv, .tsv, .jsonl or .txt",
            )
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
        problems.add(
            "unreadable sources",
            f"{path}: no train.csv, train.tsv, train.jsonl or train.txt in the folder: "
            "pass a data file, or a folder with train.* (and val.*, test.*) files",
        )
        return {}
    return found


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
    """Reads files of one data set with the same columns and task, collecting problems."""

    def __init__(self, task: str, text_col: str | None, label_col: str | None, encoding: str | None,
                 problems: Problems, *, labelled: bool = True, txt_lines: bool = False) -> None:  # fmt: skip
        self.task = task
        self.text_col = text_col
        self.label_col = label_col
        self.encoding = encoding
        self.problems = problems
        self.labelled = labelled
        self.txt_lines = txt_lines  # .txt: always one text per line (unlabelled input)
        self.encodings: list[str] = []
        self.columns: dict[str, str | None] = {}
        self._examples: dict[str, str] = {}

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
        if self.labelled and self.task != "causal-lm":
            self.problems.add(
                "unreadable sources",
                f"{path}: a .txt file has no labels; for --task {self.task} use a .csv, .tsv or .jsonl "
                "file with a text and a label column",
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
        task = self.task
        text_defaults = _TEXT_DEFAULTS[task]
        if task == "causal-lm" and not self.text_col and not any(n.strip().lower() == "text" for n in names):
            text_defaults = ("prompt", *_TEXT_COLUMNS)  # prompt/response pairs
        text_name = self._pick(path, names, self.text_col, text_defaults, "text", "--text-col", True)
        # causal-lm reads a response only for prompts, or when --label-col names one.
        is_prompt = (text_name or "").strip().lower() == "prompt"
        wants_label = self.labelled and (task != "causal-lm" or self.label_col is not None or is_prompt)
        label_name = None
        if wants_label:
            label_name = self._pick(path, names, self.label_col, _LABEL_DEFAULTS[task], _label_role(task),
                                    "--label-col", True)  # fmt: skip
        self.columns = {"text": text_name, "label": label_name}
        if text_name is None or (wants_label and label_name is None):
            return []
        bad: dict[str, list[int]] = {}  # what is wrong -> row numbers
        self._examples: dict[str, str] = {}  # what is wrong -> the first bad value
        samples: list[TextSample] = []
        for row, values in rows:
            text = values.get(text_name)
            if not isinstance(text, str):
                bad.setdefault("no text" if text is None else "text is not a string", []).append(row)
                continue
            if not text.strip():
                bad.setdefault("empty or whitespace-only text", []).append(row)
                continue
            if label_name is None:
                samples.append(TextSample(text, row=row))
                continue
            sample = self._labelled(text, values.get(label_name), row, bad)
            if sample is not None:
                samples.append(sample)
        for what, numbers in bad.items():
            shown = ", ".join(str(n) for n in numbers[:_ROWS_SHOWN])
            more = f" and {len(numbers) - _ROWS_SHOWN} more" if len(numbers) > _ROWS_SHOWN else ""
            kind = "empty texts" if "text" in what else "bad labels"
            example = f" (e.g. {self._examples[what]!r})" if what in self._examples else ""
            self.problems.add(
                kind, f"{path}: {what}{example} in {_rows_word(numbers)} {shown}{more}: {_fix(what)}"
            )
        return samples

    def _labelled(self, text: str, raw: Any, row: int, bad: dict[str, list[int]]) -> TextSample | None:
        task = self.task
        if task == "multilabel":
            labels = _multilabel(raw)
            if labels is None:
                bad.setdefault("labels that are neither text nor a list of names", []).append(row)
                return None
            return TextSample(text, label=labels, row=row)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            bad.setdefault(_missing(task), []).append(row)
            return None
        if task == "regression":
            value = _number(raw)
            if value is None:
                bad.setdefault("values that are not numbers", []).append(row)
                self._examples.setdefault("values that are not numbers", str(raw)[:30])
                return None
            return TextSample(text, label=value, row=row)
        if isinstance(raw, (dict, list, bool)):
            bad.setdefault(f"{_label_role(task)}s that are not text", []).append(row)
            return None
        value = raw.strip() if isinstance(raw, str) else str(raw)
        if task == "classification":
            return TextSample(text, label=value, row=row)
        return TextSample(text, target=raw if isinstance(raw, str) else value, row=row)  # seq2seq, causal-lm


def _label_role(task: str) -> str:
    return {"seq2seq": "target", "causal-lm": "response", "regression": "value"}.get(task, "label")


def _missing(task: str) -> str:
    return {"seq2seq": "missing target", "causal-lm": "missing response", "regression": "missing value"}.get(
        task, "missing label"
    )


def _rows_word(numbers: list[int]) -> str:
    return "line" if len(numbers) == 1 else "lines"


def _fix(what: str) -> str:
    if "text" in what:
        return "fill in the text or remove these rows"
    if "number" in what:
        return "use plain numbers like 3.5 or remove these rows"
    return "fill them in or remove these rows"


def _multilabel(raw: Any) -> list[str] | None:
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


# ----------------------------------------------------------------------------------------------
# Splits and label checks


def _key(sample: TextSample, seed: int) -> bytes:
    # Content only, not the row: reordering the file does not change the split (ties keep file order).
    content = f"{seed}\0{sample.text}\0{sample.target or ''}"
    return hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _take(n: int, fraction: float) -> int:
    return min(max(1, round(n * fraction)), n - 1)


def _split(train: list[TextSample], task: str, fraction: float, seed: int, file: Path,
           problems: Problems) -> tuple[list[TextSample], list[TextSample], str]:  # fmt: skip
    """Seeded split: stratified by class for classification, else over all rows."""
    if task == "classification":
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
        keep, held = [], []
        for c in sorted(by_class):
            ordered = sorted(by_class[c], key=lambda s: _key(s, seed))
            k = _take(len(ordered), fraction)
            held += ordered[:k]
            keep += ordered[k:]
        return keep, held, f"seeded stratified {fraction:.0%} (seed {seed})"
    if len(train) < 2:
        problems.add(
            "too few examples",
            f"{file}: {len(train)} example(s); a validation split needs at least 2: add rows or give --val",
        )
        return train, [], ""
    ordered = sorted(train, key=lambda s: _key(s, seed))
    k = _take(len(ordered), fraction)
    return ordered[k:], ordered[:k], f"seeded {fraction:.0%} (seed {seed})"


def _check_labels(task: str, train: list[TextSample], val: list[TextSample], test: list[TextSample],
                  seeded: bool, problems: Problems) -> None:  # fmt: skip
    if task not in ("classification", "multilabel") or problems.has_kind("small classes"):
        return
    known = set(_classes(task, train))
    if task == "classification" and len(known) < 2:
        found = ", ".join(repr(c) for c in sorted(known)) or "none"
        problems.add(
            "too few classes",
            f"found {len(known)} class{'es' if len(known) != 1 else ''} in train ({found}): a classifier "
            "needs at least 2",
        )
    if task == "multilabel" and not known:
        problems.add("too few classes", "no labels in train: a multi-label classifier needs at least 1 class")
    if seeded:
        return
    for name, samples in (("val", val), ("test", test)):
        for label, rows in _unknown_labels(samples, known):
            shown = ", ".join(str(r) for r in rows[:_ROWS_SHOWN]) + (" ..." if len(rows) > _ROWS_SHOWN else "")
            problems.add(
                "unknown labels",
                f"{name} label {label!r} is not a training class ({len(rows)} row(s), lines {shown}): "
                f"add training examples of it or remove these rows from {name}",
            )


def _unknown_labels(samples: list[TextSample], known: set[str]) -> list[tuple[str, list[int]]]:
    """(label, rows) for every label in `samples` outside `known`, sorted by label."""
    unknown: dict[str, list[int]] = {}
    for s in samples:
        for label in s.label if isinstance(s.label, list) else [s.label]:
            if str(label) not in known:
                unknown.setdefault(str(label), []).append(s.row)
    return sorted(unknown.items())


def _classes(task: str, train: list[TextSample]) -> list[str]:
    if task == "classification":
        return sorted({str(s.label) for s in train})
    if task == "multilabel":
        return sorted({label for s in train for label in (s.label or [])})  # type: ignore[union-attr]
    return []


def read_labelled_texts(
    path: str | os.PathLike[str],
    *,
    task: str,
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
        task: The run's task.
        classes: The run's classes; a label outside them is reported with its rows.

    Raises:
        DataError: unreadable file, missing columns, empty texts, labels the run does not know.
    """
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
    samples = _Reader(task, text_col, label_col, encoding, problems).read(path)
    if task in ("classification", "multilabel") and samples:
        for label, rows in _unknown_labels(samples, set(classes)):
            shown = ", ".join(str(r) for r in rows[:_ROWS_SHOWN]) + (" ..." if len(rows) > _ROWS_SHOWN else "")
            problems.add(
                "unknown labels",
                f"label {label!r} is not one of the run's classes ({', '.join(classes)}): {len(rows)} row(s), lines {shown}; "
                "fix or remove these rows, or train a run that knows this class",
            )
    problems.raise_if_any(path)
    return samples
