"""Classification metrics as a plain, JSON-serialisable dict, and a compact rich summary."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # rich is only needed to print
    from rich.console import Console
    from rich.table import Table

_HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


def _r(x: float) -> float:
    # 6 decimals is far below any meaningful difference and keeps metrics.json readable.
    return round(float(x), 6)


def classification_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    *,
    top_k: tuple[int, ...] = (1, 3, 5),
    loss: float | None = None,
) -> dict[str, Any]:
    """Score class probabilities against integer labels.

    Classes absent from ``y_true`` still get a confusion-matrix row and a per-class entry
    (support 0, scores 0), because every label in ``range(len(class_names))`` is passed to
    scikit-learn explicitly.

    Args:
        y_true: Integer labels, shape ``[N]``, values in ``[0, C)``.
        probs: Scores or probabilities, shape ``[N, C]``; the prediction is the argmax.
        class_names: The ``C`` class names, in label order.
        top_k: Which top-k accuracies to report; k=1 is ``accuracy`` itself, and k >= C is
            skipped (it would always be 1).
        loss: Mean loss on the same samples, copied into the result when given.

    Returns:
        A dict of plain Python values: ``accuracy``, ``balanced_accuracy``, ``macro_f1``,
        ``weighted_f1``, ``top{k}_accuracy`` for each reported k, ``loss`` (when given), ``n``,
        ``per_class`` (``{name: {"precision", "recall", "f1", "support"}}``) and
        ``confusion_matrix`` (list of lists, rows = true class, columns = predicted class).

    Raises:
        ValueError: If the shapes disagree, there are no samples, or a label is out of range.

    Example:
        >>> m = classification_metrics(np.array([0, 1]), np.array([[.9, .1], [.2, .8]]), ["a", "b"])
        >>> m["accuracy"]
        1.0
    """
    from sklearn.metrics import (
        confusion_matrix,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = len(class_names)
    if probs.ndim != 2 or probs.shape != (y_true.shape[0], num_classes):
        raise ValueError(
            f"probs must have shape [N, C] = [{y_true.shape[0]}, {num_classes}] "
            f"(N labels, C class names); got {list(probs.shape)}"
        )
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got min {y_true.min()}, max {y_true.max()}"
        )

    labels = list(range(num_classes))
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    # Macro averages over classes that occur in y_true or y_pred (sklearn's convention for
    # `labels=None`): a class that is neither present nor predicted says nothing about the model.
    seen = np.zeros(num_classes, dtype=bool)
    seen[np.unique(y_true)] = True
    seen[np.unique(y_pred)] = True
    macro_f1 = float(f1[seen].mean())
    weighted_f1 = float((f1 * support).sum() / support.sum())

    out: dict[str, Any] = {
        "accuracy": _r((y_pred == y_true).mean()),
        # Balanced accuracy = mean recall over the classes present in y_true (as sklearn's
        # balanced_accuracy_score, without its warning when a prediction is an absent class).
        "balanced_accuracy": _r(recall[support > 0].mean()),
        "macro_f1": _r(macro_f1),
        "weighted_f1": _r(weighted_f1),
    }
    for k in sorted(set(top_k)):
        if k <= 1 or k >= num_classes:
            continue
        out[f"top{k}_accuracy"] = _r(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
    if loss is not None:
        out["loss"] = _r(loss)
    out["n"] = int(y_true.shape[0])
    out["per_class"] = {
        name: {
            "precision": _r(precision[i]),
            "recall": _r(recall[i]),
            "f1": _r(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    out["confusion_matrix"] = [[int(v) for v in row] for row in cm]
    return out


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of a metrics dict, in display order (accuracy, F1s, top-k, loss).

    Args:
        metrics: A dict from `classification_metrics`.

    Returns:
        ``{name: value}`` for every scalar metric present, ``n`` excluded.

    Example:
        >>> headline_metrics({"accuracy": 0.5, "n": 4, "per_class": {}})
        {'accuracy': 0.5}
    """
    names = [k for k in _HEADLINE if k in metrics]
    names += sorted(
        (k for k in metrics if re.fullmatch(r"top\d+_accuracy", k)), key=lambda k: int(k[3:-9])
    )
    names += [
        k
        for k, v in metrics.items()
        if k not in names and k != "n" and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return {k: metrics[k] for k in names if metrics[k] is not None}


def format_metrics_table(metrics: dict[str, Any], title: str = "metrics") -> Table:
    """A rich table: headline metrics on top, then one row per class.

    Args:
        metrics: A dict from `classification_metrics`.
        title: The table's title (e.g. ``"val"``).

    Returns:
        A `rich.table.Table` ready for ``console.print``.

    Example:
        >>> table = format_metrics_table(metrics, "val")  # doctest: +SKIP
    """
    from rich.table import Table

    heads = headline_metrics(metrics)
    n = metrics.get("n")
    summary = "  ".join(f"{k} [bold]{v:.4f}[/bold]" for k, v in heads.items())
    caption = f"{summary}  (n={n})" if n is not None else summary
    table = Table(title=title, caption=caption, caption_justify="left")
    table.add_column("class")
    for col in ("precision", "recall", "f1"):
        table.add_column(col, justify="right")
    table.add_column("support", justify="right")
    for name, row in metrics.get("per_class", {}).items():
        table.add_row(
            _escape_markup(str(name)),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    return table


def _escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_metrics(
    metrics: dict[str, Any], console: Console | None = None, title: str = "metrics"
) -> None:
    """Print headline metrics and the per-class table with rich.

    Args:
        metrics: A dict from `classification_metrics`.
        console: Where to print; a new stdout console when None.
        title: Shown above the table (e.g. ``"val"``, ``"test"``).

    Example:
        >>> print_metrics(classification_metrics(y, p, names), title="val")  # doctest: +SKIP
    """
    from graftkit.engine.progress import results_console

    console = console or results_console()
    console.print(format_metrics_table(metrics, title))


def multilabel_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    thresholds: np.ndarray,
    *,
    loss: float | None = None,
) -> dict[str, Any]:
    """Score per-label probabilities against multi-hot targets, at per-class thresholds.

    Args:
        y_true: multi-hot targets, ``[N, C]``.
        probs: sigmoid probabilities, ``[N, C]``.
        class_names: the ``C`` label names.
        thresholds: per-class decision thresholds, ``[C]``, or per sample and class ``[N, C]``
            (cross-fitted validation figures; then no ``thresholds`` entry is returned).
        loss: mean loss, copied into the result when given.

    Returns:
        ``micro_f1``, ``macro_f1`` (over labels present or predicted), ``subset_accuracy`` (all
        labels of a sample right), ``label_accuracy``, ``mean_average_precision`` (threshold-free,
        over labels with positives), ``n``, ``thresholds`` and ``per_class`` P/R/F1/support.

    Example:
        >>> m = multilabel_metrics(np.array([[1, 0]]), np.array([[.9, .2]]), ["a", "b"], np.array([.5, .5]))
        >>> m["subset_accuracy"]
        1.0
    """
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.shape != probs.shape or y_true.ndim != 2 or y_true.shape[0] == 0:
        raise ValueError(f"targets and probs must both be [N, C] with N > 0; got {list(y_true.shape)} and {list(probs.shape)}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    pred = (probs >= (thresholds if thresholds.ndim == 2 else thresholds[None, :])).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, pred, zero_division=0)
    seen = (support > 0) | (pred.sum(axis=0) > 0)
    tp = (pred & y_true).sum()
    micro_p = tp / max(pred.sum(), 1)
    micro_r = tp / max(y_true.sum(), 1)
    has_pos = support > 0
    out: dict[str, Any] = {
        "macro_f1": _r(f1[seen].mean() if seen.any() else 0.0),
        "micro_f1": _r(2 * micro_p * micro_r / max(micro_p + micro_r, 1e-12)),
        "subset_accuracy": _r((pred == y_true).all(axis=1).mean()),
        "label_accuracy": _r((pred == y_true).mean()),
        "mean_average_precision": _r(
            np.mean([average_precision_score(y_true[:, i], probs[:, i]) for i in np.flatnonzero(has_pos)]) if has_pos.any() else 0.0
        ),
    }
    if loss is not None:
        out["loss"] = _r(loss)
    out["n"] = int(y_true.shape[0])
    if thresholds.ndim == 1:  # per-sample thresholds (cross-fitting) have no single value to report
        out["thresholds"] = {name: _r(t) for name, t in zip(class_names, thresholds)}
    out["per_class"] = {
        name: {"precision": _r(precision[i]), "recall": _r(recall[i]), "f1": _r(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, *, loss: float | None = None) -> dict[str, Any]:
    """Mean absolute error, root mean squared error, R² and Pearson correlation.

    Example:
        >>> regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0]))["mae"]
        0.0
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"targets and predictions must both be [N] with N > 0; got {y_true.shape} and {y_pred.shape}")
    err = y_pred - y_true
    var = y_true.var()
    out: dict[str, Any] = {
        "mae": _r(np.abs(err).mean()),
        "rmse": _r(np.sqrt((err**2).mean())),
        "r2": _r(1 - (err**2).mean() / var) if var > 0 else 0.0,
        "pearson": _r(np.corrcoef(y_true, y_pred)[0, 1]) if y_true.size > 1 and y_pred.std() > 0 and var > 0 else 0.0,
    }
    if loss is not None:
        out["loss"] = _r(loss)
    out["n"] = int(y_true.size)
    return out
