"""`graft runs [FOLDER]`: one row per run directory in a folder, to compare runs.

A row is read from the run's graft.json and metrics.json only (no weights are loaded). A folder
that looks like a run (graft.json, metrics.json, checkpoints/ or model.safetensors) but cannot be
read is listed with status `damaged` and the reason, never a crash.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from graftkit.errors import ConfigError
from graftkit.rundir.spec import SPEC_FILE, RunSpec

COLUMNS = ("run", "status", "model", "strategy", "task", "metric", "value", "finished", "train", "val", "seconds")
"""What `--sort` accepts (and the order of the columns)."""
_MARKERS = (SPEC_FILE, "metrics.json", "model.safetensors", "checkpoints")


@dataclass(frozen=True)
class RunRow:
    run: str
    status: str
    """`done`, `training` (unfinished: `--resume` continues it) or `damaged: <why>`."""
    model: str = ""
    strategy: str = ""
    task: str = ""
    metric: str = ""
    """The task's headline validation metric (accuracy, mae, ...)."""
    value: float | None = None
    finished: str = ""
    """When the run finished (when it started, for an unfinished run), ISO 8601 UTC."""
    train: int | None = None
    """Training samples."""
    val: int | None = None
    seconds: float | None = None
    """Training time (planning to the final metrics)."""


def list_runs(folder: str | Path = "runs", sort: str = "finished") -> list[RunRow]:
    """The run directories directly inside `folder`, sorted by a column (`COLUMNS`).

    `value`, `train` and `val` sort descending (largest first), everything else ascending; rows
    without the column (unfinished or damaged runs) come last.

    Raises:
        ConfigError: `folder` is not a folder, or `sort` is not a column.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of runs; give the folder your runs are in (default: runs)")
    if sort not in COLUMNS:
        raise ConfigError(f"--sort {sort!r} is not a column; choose one of {', '.join(COLUMNS)}")
    rows = [read_row(d) for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".") and _looks_like_run(d)]
    present = [r for r in rows if getattr(r, sort) not in (None, "")]
    missing = [r for r in rows if getattr(r, sort) in (None, "")]
    present.sort(key=lambda r: getattr(r, sort), reverse=sort in ("value", "train", "val"))
    return present + missing


def _looks_like_run(d: Path) -> bool:
    return any((d / m).exists() for m in _MARKERS)


def read_row(run_dir: Path) -> RunRow:
    """One run's row; a run that cannot be read is `damaged` with the reason."""
    try:
        spec = RunSpec.read(run_dir)
    except Exception as e:  # a missing, truncated or foreign graft.json: listed, never a crash
        return RunRow(run_dir.name, f"damaged: {_first_line(e)}")
    task = spec.task.get("name", "")
    totals = spec.data.get("totals", {}) if isinstance(spec.data, dict) else {}
    row = dict(run=run_dir.name, status=spec.status, model=spec.model.model_id, strategy=spec.strategy,
               task=task, finished=spec.finished or spec.created, train=totals.get("train"), val=totals.get("val"))  # fmt: skip
    if spec.status != "done":
        return RunRow(**row)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metric = _headline(task)
        value = metrics.get("val", {}).get(metric)
        return RunRow(**row, metric=metric, value=None if value is None else float(value), seconds=metrics.get("train_seconds"))
    except Exception as e:
        return RunRow(**{**row, "status": f"damaged: metrics.json: {_first_line(e)}"})


def _headline(task: str) -> str:
    from graftkit.tasks import get_task

    try:
        return get_task(task).headline[0]
    except Exception:
        return "loss"


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:160]


def format_runs(rows: list[RunRow], fmt: str = "table") -> str | Any:
    """`csv` / `json` text, or for `table` a rich `Table`."""
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
        return buf.getvalue()
    from rich.table import Table

    table = Table()
    for c in COLUMNS:
        table.add_column(c, max_width=48 if c == "status" else None, overflow="fold")
    for r in rows:
        cells = asdict(r)
        cells["value"] = "" if r.value is None else f"{r.value:.4g}"
        cells["seconds"] = "" if r.seconds is None else f"{r.seconds:.1f}"
        table.add_row(*("" if cells[c] is None else str(cells[c]) for c in COLUMNS))
    return table
