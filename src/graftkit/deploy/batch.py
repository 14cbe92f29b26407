"""What `graft predict` reads: files, folders, globs, CSV/JSONL manifests, or stdin.

| input                 | image run                                            | text run                                    |
|-----------------------|------------------------------------------------------|---------------------------------------------|
| `-`                   | one path (file, folder or glob) per line of stdin    | one text per line of stdin                  |
| `data.csv` / `.jsonl` | the `path` column, relative to the manifest's folder | the `text` column (or `--column`)           |
| `notes.txt`           | (not an image)                                       | one text per line                           |
| folder, glob, file    | image files, folders searched recursively           | (taken literally as a text)                 |
| anything else         | reported as missing                                  | the text itself                             |
"""

from __future__ import annotations

import csv
import itertools
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO

from graftkit.errors import DataError

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl")
_PATH_COLUMNS = ("path", "file", "filename", "image")


def expand_inputs(inputs: list[str], modality: str = "image", *, column: str | None = None, stdin: TextIO | None = None) -> list[Any]:
    """Expand command-line inputs into the items to predict on, in order.

    Args:
        inputs: Paths, folders, globs, manifests, `-` (stdin) or, for text runs, texts.
        modality: `image` or `text` (the run's).
        column: The manifest column to read (default: `path` for images, guessed for texts).
        stdin: Where `-` reads from (default `sys.stdin`).

    Returns:
        Image `Path`s, or texts.

    Raises:
        DataError: Every input that is missing, unreadable, or expands to nothing, at once.
        ConfigError: An unknown modality.

    Example:
        >>> expand_inputs(["photos/", "more.csv"])
        [PosixPath('photos/a.jpg'), PosixPath('data/b.png')]
    """
    stdin = stdin if stdin is not None else sys.stdin
    read = _READERS.get(modality)
    if read is None:
        from graftkit.errors import ConfigError

        raise ConfigError(f"cannot read inputs for a {modality!r} run; known modalities: {', '.join(_READERS)}")
    return read(inputs, column, stdin)


def _image_paths(inputs: list[str], column: str | None, stdin: TextIO) -> list[Any]:
    from graftkit.data import list_image_files

    items: list[str] = []
    problems: list[str] = []
    for item in inputs:
        if item == "-":
            items += [line.strip() for line in stdin if line.strip()]
        elif Path(item).suffix.lower() in MANIFEST_SUFFIXES and Path(item).is_file():
            try:
                items += [str(p) for p in _manifest_paths(Path(item), column)]
            except DataError as e:
                problems += e.problems
        else:
            items.append(item)
    if problems:
        raise DataError(problems, "the inputs")
    return list_image_files(items)


def _texts(inputs: list[str], column: str | None, stdin: TextIO) -> list[str]:
    from graftkit.data.text import read_texts

    out: list[str] = []
    for item in inputs:
        if item == "-":
            out += [line.rstrip("\r\n") for line in stdin if line.strip()]
        elif Path(item).suffix.lower() in (*MANIFEST_SUFFIXES, ".txt") and Path(item).is_file():
            out += [s.text for s in read_texts(item, text_col=column)]
        else:
            out.append(item)
    return out


def _audio_paths(inputs: list[str], column: str | None, stdin: TextIO) -> list[Any]:
    from graftkit.data.audio import AUDIO_EXTENSIONS

    items: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        if item == "-":
            items += [Path(line.strip()) for line in stdin if line.strip()]
        elif p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file():
            try:
                items += _manifest_paths(p, column) if column else _audio_manifest(p)
            except DataError as e:
                problems += e.problems
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            items += found
            if not found:
                problems.append(f"{p}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        elif not p.is_file():
            problems.append(f"{p}: no such file")
        else:
            items.append(p)
    if problems:
        raise DataError(problems, "the inputs")
    return items


def _audio_manifest(path: Path) -> list[Path]:
    from graftkit.data.audio_readers import PATH_COLUMNS

    rows, names = _read_rows(path)
    col = next((c for c in PATH_COLUMNS if c in names), None)
    if col is None:
        raise DataError([f"{path}: no {' or '.join(repr(c) for c in PATH_COLUMNS)} column (columns: {', '.join(names) or 'none'}); name it with --column"], str(path))
    return [p if p.is_absolute() else path.parent / p for p in (Path(str(r[col])) for _, r in rows if r.get(col))]


_READERS = {"image": _image_paths, "text": _texts, "audio": _audio_paths}
"""A run's modality → how its command-line inputs are read (see the table at the top)."""


def _manifest_paths(path: Path, column: str | None) -> list[Path]:
    rows, names = _read_rows(path)
    wanted = [column] if column else list(_PATH_COLUMNS)
    col = next((c for c in wanted if c in names), None)
    if col is None:
        raise DataError([f"{path}: no {' or '.join(repr(c) for c in wanted)} column (columns: {', '.join(names) or 'none'}); "
                         "name the column with --column"], str(path))  # fmt: skip
    out, empty = [], []
    for line, row in rows:
        value = str(row.get(col) or "").strip()
        if not value:
            empty.append(line)
            continue
        p = Path(value).expanduser()
        out.append(p if p.is_absolute() else path.parent / p)
    if empty:
        raise DataError([f"{path}: empty {col!r} on line(s) {', '.join(map(str, empty[:10]))}"], str(path))
    return out


def _read_rows(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".jsonl":
        rows, names, bad = [], {}, []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad.append(i)
                continue
            if not isinstance(obj, dict):
                bad.append(i)
                continue
            rows.append((i, obj))
            names.update(dict.fromkeys(obj))
        if bad:
            raise DataError([f"{path}: line(s) {', '.join(map(str, bad[:10]))} are not JSON objects"], str(path))
        return rows, list(names)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows = [(i + 2, r) for i, r in enumerate(reader)]  # line 1 is the header
    return rows, list(reader.fieldnames or [])


def predict_in_chunks(predict: Callable[..., list[Any]], inputs: Sequence[Any], *, top_k: int, batch_size: int, progress: bool,
                      unit: str) -> Iterator[Any]:  # fmt: skip
    """`predict(part, top_k=, batch_size=)` over `inputs`, four batches at a time, with a progress
    bar on a terminal for more than four batches (every backend's `predict_iter`)."""
    from graftkit.engine.progress import EpochProgress

    chunk = batch_size * 4
    with EpochProgress("predict", total=-(-len(inputs) // chunk), unit=unit, enabled=progress and len(inputs) > chunk) as bar:
        for start in range(0, len(inputs), chunk):
            part = list(inputs[start : start + chunk])
            yield from predict(part, top_k=top_k, batch_size=batch_size)
            bar.advance(len(part))


def draw_predictions(predictions: Iterable[Any], out_dir: str | Path, min_score: float = 0.3) -> Iterator[Any]:
    """Pass predictions through, writing `OUT/<image name>.png` with each one's boxes (score ≥
    `min_score`) drawn, for predictions that have boxes (detection runs)."""
    from graftkit.data import load_image
    from graftkit.evaluation.detection import draw_boxes, save_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for p in predictions:
        boxes = [b for b in getattr(p, "boxes", []) if b["score"] >= min_score]
        if Path(p.input).is_file():
            image = draw_boxes(load_image(p.input).contiguous(), [b["box"] for b in boxes], [f"{b['label']} {b['score']:.2f}" for b in boxes])
            save_image(image, out / f"{Path(p.input).stem}.png")
        yield p


def write_predictions(predictions: Iterable[Any], fmt: str, top_k: int, out: TextIO | None = None) -> int:
    """Write predictions as they come: `json` (one object per line), `csv`, or a `table` at the end.

    Args:
        predictions: `Prediction`s (an iterator is consumed lazily for json and csv).
        fmt: `table`, `json` or `csv`.
        top_k: Columns of the table and the CSV.
        out: Where to write (default stdout).

    Returns:
        How many predictions were written.
    """
    out = out if out is not None else sys.stdout
    n = 0
    if fmt == "json":
        for p in predictions:
            out.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    elif fmt == "csv":
        w = csv.writer(out)
        predictions = iter(predictions)
        first = next(predictions, None)
        extra = list(first.fields()) if hasattr(first, "fields") else []  # multitask: one column per task
        w.writerow(["input", "label", "score"] + [f"top{i + 1}_{c}" for i in range(top_k) for c in ("label", "score")][2:] + extra)
        for p in itertools.chain([first] if first is not None else [], predictions):
            rest = [x for label, s in p.top_k[1:top_k] for x in (label, f"{s:.6f}")]
            if extra:  # the task columns come after the top-k ones: pad a short top-k list
                rest += [""] * (2 * (top_k - 1) - len(rest))
            w.writerow([p.input, p.label, f"{p.score:.6f}", *rest, *(p.fields()[c] for c in extra)])
            n += 1
    else:
        from rich.table import Table

        from graftkit.engine.progress import results_console

        table = Table("input", *[f"top {i + 1}" for i in range(top_k)])
        table.columns[0].overflow = "fold"
        for p in predictions:
            table.add_row(p.input, *[f"{label} ({s:.1%})" for label, s in p.top_k])
            n += 1
        results_console(out).print(table)
    return n
