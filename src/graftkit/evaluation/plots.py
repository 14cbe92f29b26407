"""PNG plots for the run directory: learning curves, confusion matrix, per-class scores.

matplotlib is imported inside each function so that importing graftkit never pulls it in; each
figure is drawn on its own non-interactive ``Agg`` canvas and cleared after saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
FONTS = ["DejaVu Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Droid Sans Fallback",
         "Noto Sans", "Noto Sans Arabic", "Noto Sans Devanagari", "FreeSans"]  # fmt: skip
"""Font fallback chain: a glyph missing from DejaVu Sans (CJK, ...) is drawn from the next installed font."""
_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--")]
"""Marker and line style per series: lines that coincide stay distinguishable."""
_LABEL_WIDTH = 18
"""Class names longer than this wrap onto further lines instead of running off the figure."""
_LOSS_KEYS = ("train_loss", "val_loss")
_METRIC_KEYS = ("train_accuracy", "val_accuracy", "val_macro_f1")


def new_figure(
    width: float, height: float, ncols: int = 1, layout: str | None = "constrained"
) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas, and its axes (one, or an array of `ncols`).

    A bare Figure instead of pyplot: no global figure registry (nothing can leak between calls)
    and no matplotlib.use(), which would change the backend of a caller's notebook or GUI session.

    Args:
        width: Inches.
        height: Inches.
        ncols: Axes side by side.
        layout: matplotlib layout engine; None to place the axes yourself.

    Returns:
        `(figure, axes)`; write it with `save_figure`.

    Example:
        >>> fig, ax = new_figure(6.4, 4.0)
        >>> ax.plot([1, 2], [3, 4])
        >>> save_figure(fig, "out/plot.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import matplotlib

    if matplotlib.rcParams["font.family"] in (["sans-serif"], _FONTS_FOUND):  # a caller's own font choice is kept
        matplotlib.rcParams["font.family"] = _installed_fonts()
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _installed_fonts() -> list[str]:
    """The names in `FONTS` that are installed here (matplotlib warns for each missing one)."""
    global _FONTS_FOUND
    if _FONTS_FOUND is None:
        from matplotlib import font_manager

        have = {f.name for f in font_manager.fontManager.ttflist}
        _FONTS_FOUND = [name for name in FONTS if name in have] or ["DejaVu Sans"]
    return _FONTS_FOUND


_FONTS_FOUND: list[str] | None = None


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG (folders created), then clear it.

    Args:
        fig: From `new_figure`.
        path: The PNG to write.

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})  # fast zlib: 2x quicker, ~20% larger
    finally:
        fig.clear()
    return path


def _labels(names: Sequence[str]) -> list[str]:
    """Class names as tick labels: long ones wrapped, `$` kept literal (not mathtext)."""
    import textwrap

    return [textwrap.fill(str(n), _LABEL_WIDTH, break_long_words=True).replace("$", r"\$") for n in names]


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        value = row.get(key)
        if value is None:
            continue
        xs.append(float(row.get("epoch", i + 1)))
        ys.append(float(value))
    return xs, ys


def plot_learning_curves(
    history: list[dict[str, Any]], path: str | Path, best_epoch: int | None = None
) -> Path:
    """Plot loss (left) and accuracy / macro-F1 (right) against epoch.

    Keys missing from a row, or set to None, are skipped; a panel with nothing to show says so.

    Args:
        history: One dict per epoch, e.g. ``{"epoch": 1, "train_loss": ..., "val_loss": ...,
            "train_accuracy": ..., "val_accuracy": ..., "val_macro_f1": ...}``.
        path: Where to write the PNG.
        best_epoch: Epoch to mark with a dashed vertical line (the checkpoint that was kept).

    Returns:
        ``path`` as a `Path`.

    Example:
        >>> plot_learning_curves([{"epoch": 1, "train_loss": 0.7}], "curves.png")  # doctest: +SKIP
    """
    # Fixed margins: the labels here are short and known, and the layout engine's measuring pass
    # would cost about a third of the plot's time.
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_metric) = new_figure(9.0, 3.6, ncols=2, layout=None)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.14, top=0.91, wspace=0.22)
    # Every task's metrics: classification's accuracy / F1, regression's MAE, a language model's
    # token accuracy... whatever the rows hold besides losses and timings.
    metric_keys = [k for k in _METRIC_KEYS if any(k in row for row in history)]
    for row in history:
        metric_keys += [
            k for k in row
            if k.startswith(("train_", "val_")) and not k.endswith("_loss") and k not in metric_keys and k != "val_perplexity"
        ]
    for ax, keys, ylabel in (
        (ax_loss, _LOSS_KEYS, "loss"),
        (ax_metric, tuple(metric_keys), "score"),
    ):
        plotted = False
        for i, key in enumerate(keys):
            xs, ys = _series(history, key)
            if xs:
                marker, style = _STYLES[i % len(_STYLES)]
                ax.plot(xs, ys, marker=marker if len(xs) <= 30 else None, ms=4, mfc="none", ls=style, label=key)
                plotted = True
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.4", ls="--", lw=1, label=f"best (epoch {best_epoch})")
        if plotted:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_loss.set_title("loss")
    ax_metric.set_title("metrics")
    return save_figure(fig, path)


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: list[str],
    path: str | Path,
    normalize: bool = True,
) -> Path:
    """Plot a confusion matrix as a heat map (rows = true class, columns = predicted class).

    Args:
        cm: Square matrix of counts, ``[C, C]``.
        class_names: The ``C`` class names, in label order.
        path: Where to write the PNG.
        normalize: Colour and annotate each row as a fraction of that class's samples
            (rows with no samples stay 0) instead of raw counts. Cells are annotated up to
            20 classes; cells with no samples are left blank.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: If ``cm`` is not ``[C, C]`` with ``C = len(class_names)``.

    Example:
        >>> plot_confusion_matrix([[5, 1], [0, 4]], ["cat", "dog"], "cm.png")  # doctest: +SKIP
    """
    counts = np.asarray(cm, dtype=np.float64)
    c = len(class_names)
    if counts.shape != (c, c):
        raise ValueError(f"cm must be [{c}, {c}] for {c} class names; got {list(counts.shape)}")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        values = counts

    side = float(np.clip(2.0 + 0.3 * c, 4.0, 13.0))  # inches; ~0.26 in per cell at 50 classes
    fig, ax = new_figure(side + 1.2, side)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    fontsize = 9 if c <= 10 else 8 if c <= 25 else 6
    ticks, labels = np.arange(c), _labels(class_names)
    ax.set_xticks(ticks, labels=labels, rotation=90 if c > 6 else 0, fontsize=fontsize)
    ax.set_yticks(ticks, labels=labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if c <= 20:
        # white text on the darker half of the colour scale; empty cells (exactly 0) stay blank
        threshold = 0.5 if normalize else values.max() / 2
        for i in range(c):
            for j in range(c):
                v = values[i, j]
                if counts[i, j] == 0:
                    continue
                text = f"{v:.2f}" if normalize else f"{int(v)}"
                # in_layout=False: cell labels sit inside the axes, and measuring hundreds of
                # them in the layout pass would double the time to save.
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=fontsize - 1,
                    color="white" if v > threshold else "black", in_layout=False,
                )  # fmt: skip
    return save_figure(fig, path)


def plot_per_class(per_class: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Plot precision, recall and F1 for each class as grouped bars.

    Args:
        per_class: ``{name: {"precision": ..., "recall": ..., "f1": ..., "support": ...}}``,
            as in `classification_metrics`'s ``per_class``.
        path: Where to write the PNG.

    Returns:
        ``path`` as a `Path`.

    Example:
        >>> plot_per_class(metrics["per_class"], "per_class.png")  # doctest: +SKIP
    """
    names = list(per_class)
    c = len(names)
    width = float(np.clip(2.0 + 0.45 * c, 5.0, 24.0))
    fig, ax = new_figure(width, 3.8)
    x = np.arange(c)
    bar = 0.27
    for offset, key in zip((-bar, 0.0, bar), ("precision", "recall", "f1")):
        ax.bar(x + offset, [float(per_class[n].get(key, 0.0)) for n in names], bar, label=key)
    fontsize = 9 if c <= 10 else 8 if c <= 25 else 6
    ax.set_xticks(x, labels=_labels(names), rotation=90 if c > 6 else 0, fontsize=fontsize)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("per-class precision / recall / F1")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=3, loc="lower right")
    return save_figure(fig, path)
