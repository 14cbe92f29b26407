"""Multi-label thresholds: fitted on all of validation, their validation figures cross-fitted on halves."""

from __future__ import annotations

import numpy as np
import pytest

from graftkit.evaluation.calibration import CROSS_FIT_NOTE
from graftkit.evaluation.report import write_report
from graftkit.tasks.multilabel import MultiLabelTask


def _random(n: int = 200, c: int = 10, prevalence: float = 0.2, seed: int = 0):
    """Probabilities independent of the labels: any gain over chance is the threshold overfitting."""
    rng = np.random.default_rng(seed)
    return rng.random((n, c)).astype(np.float32), (rng.random((n, c)) < prevalence).astype(np.float32)


def test_reported_f1_on_random_labels_is_out_of_sample_and_near_chance():
    probs, y = _random()
    task = MultiLabelTask([f"l{i}" for i in range(10)])
    val = task.finish({"val": (probs, y, 0.5)}, None, {}, 8)["val"]
    in_sample = task.full_metrics(probs, y)  # the figures at the thresholds, scored on the data that chose them
    chance = 2 * 0.2 / 1.2  # F1 of calling every label present
    assert in_sample["macro_f1"] > val["macro_f1"] + 0.02
    assert val["macro_f1"] < chance + 0.01 and val["micro_f1"] < in_sample["micro_f1"]
    assert val["cross_fit"] == CROSS_FIT_NOTE
    assert val["n"] == 200 and set(val["per_class"]) == set(task.classes)


def test_thresholds_used_are_the_all_of_validation_fit():
    probs, y = _random(seed=1)
    task = MultiLabelTask([f"l{i}" for i in range(10)])
    final = task.finish({"val": (probs, y, 0.5), "test": (probs[:50], y[:50], 0.5)}, None, {}, 8)
    reference = MultiLabelTask(task.classes)
    reference.fit_thresholds(probs, y)
    assert task.thresholds.tolist() == reference.thresholds.tolist()
    assert task.to_dict()["thresholds"] == [round(float(t), 6) for t in reference.thresholds]
    assert list(final["val"]["thresholds"].values()) == pytest.approx(reference.thresholds.tolist())
    assert final["test"] == {**reference.full_metrics(probs[:50], y[:50], 0.5), "clinical": final["test"]["clinical"]}  # test: plain
    assert "cross_fit" not in final["test"] and "cross_fit" not in final["test"]["clinical"]["l0"]
    per_label = final["val"]["clinical"]["l3"]
    assert per_label["threshold"] == pytest.approx(task.thresholds[3]) and per_label["cross_fit"] == CROSS_FIT_NOTE


def test_tiny_validation_is_scored_in_sample_and_says_so(tmp_path):
    probs, y = _random(n=8, c=3, seed=2)
    task = MultiLabelTask(["a", "b", "c"])
    val = task.finish({"val": (probs, y, 0.5)}, None, {}, 8)["val"]
    assert val["cross_fit"] == "fitted on all of validation; figures in-sample (validation has 8 < 10 samples)"
    assert val["macro_f1"] == task.full_metrics(probs, y)["macro_f1"]
    html = write_report(tmp_path, title="t", metrics=val)
    assert "Decision thresholds: fitted on all of validation; figures in-sample" in open(html).read()
