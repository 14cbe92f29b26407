"""Metrics pinned on a hand-computed example; plots and report.html written end to end."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score

from graftkit.evaluation import (
    classification_metrics,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_per_class,
    print_metrics,
    write_report,
)

# 4 classes, "d" absent from y_true and never predicted.
# argmax predictions: [0, 0, 1, 1, 2, 2]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.70, 0.10, 0.15, 0.05],
        [0.60, 0.20, 0.15, 0.05],
        [0.10, 0.50, 0.30, 0.20],  # true class ranked 4th: a top-3 miss
        [0.20, 0.50, 0.20, 0.10],
        [0.10, 0.30, 0.40, 0.20],  # true class ranked 2nd: a top-3 hit
        [0.10, 0.20, 0.60, 0.10],
    ]
)
NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def metrics() -> dict:
    return classification_metrics(Y_TRUE, PROBS, NAMES, loss=0.25)


def test_metrics_match_hand_computed_values(metrics: dict) -> None:
    # per class: a p=1 r=2/3 f1=.8 (support 3); b p=r=f1=.5 (2); c p=.5 r=1 f1=2/3 (1)
    assert metrics["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5 + 1) / 3, abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-6)
    assert metrics["weighted_f1"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3) / 6, abs=1e-6)
    # same convention as sklearn's default macro average (classes seen in y_true or y_pred)
    y_pred = PROBS.argmax(1)
    assert metrics["macro_f1"] == pytest.approx(f1_score(Y_TRUE, y_pred, average="macro"))
    assert metrics["top3_accuracy"] == pytest.approx(5 / 6, abs=1e-6)
    assert "top5_accuracy" not in metrics  # k >= number of classes is meaningless
    assert "top1_accuracy" not in metrics  # that is `accuracy`
    assert metrics["loss"] == 0.25
    assert metrics["n"] == 6
    per_class = metrics["per_class"]
    assert per_class["a"] == {"precision": 1.0, "recall": 0.666667, "f1": 0.8, "support": 3}
    assert per_class["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_confusion_matrix_keeps_absent_class_row(metrics: dict) -> None:
    assert metrics["confusion_matrix"] == [
        [2, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 0],
    ]


def test_metrics_are_plain_json(metrics: dict) -> None:
    assert json.loads(json.dumps(metrics)) == metrics


def test_binary_has_no_topk_and_no_loss() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    m = classification_metrics(np.array([0, 1, 1]), probs, ["n", "y"])
    assert m["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert not any(k.startswith("top") for k in m)
    assert "loss" not in m


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"probs must have shape \[N, C\] = \[6, 3\]"):
        classification_metrics(Y_TRUE, PROBS, ["a", "b", "c"])


def test_print_metrics_shows_headline_and_classes(metrics: dict) -> None:
    from rich.console import Console

    buf = io.StringIO()
    print_metrics(metrics, console=Console(file=buf, width=120), title="val")
    text = buf.getvalue()
    assert "macro_f1" in text and "top3_accuracy" in text
    assert all(name in text for name in NAMES)


def test_report_writes_html_and_plots_escaping_names(tmp_path) -> None:
    names = ["<b>x</b>", "cat $a_{b$", "dog"]  # "$...$" must not be parsed as mathtext
    y = np.array([0, 1, 2, 2, 1])
    probs = np.eye(3)[[0, 1, 2, 1, 1]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs, names)
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5 + e / 50,
         "val_accuracy": None if e == 1 else 0.4 + e / 50, "lr": 1e-3}
        for e in range(1, 6)
    ]  # fmt: skip
    path = write_report(
        tmp_path / "run",
        title="run <1>",
        metrics=m,
        history=history,
        best_epoch=4,
        settings={"lr": 1e-5, "strategy": {"name": "linear-probe", "groups": [1, 2]}},
        data_summary={"train": 10, "val": 5, "note": "a & b"},
    )
    assert path == tmp_path / "run" / "report.html"
    for png in ("learning_curves.png", "confusion_matrix.png", "per_class.png"):
        assert (tmp_path / "run" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = path.read_text(encoding="utf-8")
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "run &lt;1&gt;" in html and "a &amp; b" in html
    assert "strategy.name" in html and "linear-probe" in html and "1e-05" in html
    assert 'src="confusion_matrix.png"' in html and 'src="learning_curves.png"' in html


def test_report_without_history(tmp_path, metrics: dict) -> None:
    path = write_report(tmp_path, title="eval", metrics=metrics, split_name="test")
    assert path.exists()
    assert not (tmp_path / "learning_curves.png").exists()
    assert (tmp_path / "confusion_matrix.png").exists() and (tmp_path / "per_class.png").exists()
    assert "learning_curves.png" not in path.read_text()


def test_plots_cope_with_sparse_history_and_many_classes(tmp_path) -> None:
    sparse = [{"epoch": 1}, {"epoch": 2, "train_loss": 0.5, "val_loss": None}]
    assert plot_learning_curves(sparse, tmp_path / "lc.png").exists()
    c = 22  # no cell annotations above 20 classes
    names = [f"class_{i}" for i in range(c)]
    cm = np.diag(np.arange(c)) + 1
    assert plot_confusion_matrix(cm, names, tmp_path / "cm.png", normalize=False).exists()
    per_class = {n: {"precision": 0.5, "recall": 0.4, "f1": 0.45, "support": 3} for n in names}
    assert plot_per_class(per_class, tmp_path / "pc.png").exists()
    with pytest.raises(ValueError, match=r"cm must be \[2, 2\]"):
        plot_confusion_matrix(cm, ["a", "b"], tmp_path / "bad.png")


def test_importing_evaluation_is_cheap() -> None:
    code = (
        "import sys, graftkit.evaluation; "
        "print(sorted({'matplotlib', 'sklearn', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
