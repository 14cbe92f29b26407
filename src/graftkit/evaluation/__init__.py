"""Evaluation: classification metrics, plots and the run directory's report.html.

Importing this package is cheap: scikit-learn, matplotlib and rich are imported inside the
functions that use them.
"""

from __future__ import annotations

from graftkit.evaluation.metrics import (
    classification_metrics,
    format_metrics_table,
    headline_metrics,
    print_metrics,
)
from graftkit.evaluation.plots import (
    plot_confusion_matrix,
    plot_learning_curves,
    plot_per_class,
)
from graftkit.evaluation.report import write_report

__all__ = [
    "classification_metrics",
    "format_metrics_table",
    "headline_metrics",
    "print_metrics",
    "plot_confusion_matrix",
    "plot_learning_curves",
    "plot_per_class",
    "write_report",
]
