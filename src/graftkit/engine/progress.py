"""Progress display: a live bar (loss, accuracy, throughput, ETA) on terminals, one line per epoch always."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

console = Console(stderr=True, highlight=False)


class EpochProgress:
    """A rich progress bar for one epoch; silent when stderr is not a terminal."""

    def __init__(self, description: str, total: int, unit: str = "img", enabled: bool = True) -> None:
        self.enabled = enabled and console.is_terminal
        self.description, self.total, self.unit = description, total, unit
        self._progress = None
        self._seen = 0
        self._t0 = time.perf_counter()

    def __enter__(self) -> "EpochProgress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, stats="")
        return self

    def advance(self, n: int, **stats: float) -> None:
        self._seen += n
        if self._progress is None:
            return
        rate = self._seen / max(time.perf_counter() - self._t0, 1e-9)
        text = " ".join(f"{k} {v:.3f}" for k, v in stats.items()) + f" {rate:.0f} {self.unit}/s"
        self._progress.update(self._task, advance=1, stats=text)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    @staticmethod
    def summary(row: dict[str, Any], epochs: int, unit: str = "img", phase: str = "epoch") -> None:
        """Print one line for a finished epoch (`phase` names it: `epoch`, `head warm-up`)."""
        star = "  [green]★ best[/green]" if row.get("best") else ""
        short = {"accuracy": "acc", "macro_f1": "f1", "token_accuracy": "tok-acc", "label_accuracy": "label-acc"}

        def scores(prefix: str) -> str:
            keys = [k for k in row if k.startswith(prefix) and k != f"{prefix}loss" and k != "val_balanced_accuracy"]
            return " ".join(f"{short.get(k[len(prefix):], k[len(prefix):])} {row[k]:.3f}" for k in keys if row[k] is not None)

        val = f"  │ val loss {row['val_loss']:.4f} {scores('val_')}" if "val_loss" in row else ""  # a loop without validation
        console.print(
            f"{phase} {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} {scores('train_')}{val}"
            f"  │ {row['throughput']:.0f} {unit}/s {row['seconds']:.1f}s{star}"
        )


def info(message: str) -> None:
    """A status line on stderr (stdout is kept for results that scripts parse)."""
    console.print(message)


def warn(message: str) -> None:
    """A `warning:` line on stderr: the one way graftkit (and, through the CLI, any library's
    `warnings.warn`) tells the user about something that does not stop the command."""
    from rich.markup import escape

    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def results_console(file=None) -> Console:
    """A console for results on stdout (tables, metrics): the terminal's width on a terminal;
    unlimited when piped or redirected, so ids and paths are never cut to 80 columns."""
    import sys

    file = file if file is not None else sys.stdout
    if file.isatty():
        return Console(file=file)
    return Console(file=file, width=100_000, color_system=None, soft_wrap=True)
