"""Clinical metrics: AUCs with bootstrap CIs, validation operating points, focal loss, the report and card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch.nn import functional as F

import graftkit
from graftkit.evaluation.clinical import choose_operating_point, clinical_metrics
from graftkit.tasks.classification import focal_cross_entropy
from graftkit.tasks.multilabel import MultiLabelTask
from tests.conftest import TINY_MODEL, make_image_folder


def _scores(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2  # 20 % prevalence
    s = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.15, n), 0, 1)
    return s, y


def test_youden_and_target_sensitivity_operating_points():
    s, y = _scores()
    youden = choose_operating_point(s, y)
    assert youden["sensitivity"] + youden["specificity"] > 1.5 and "Youden" in youden["rule"]
    strict = choose_operating_point(s, y, target_sensitivity=0.95)
    assert strict["sensitivity"] >= 0.95 and strict["threshold"] < youden["threshold"]
    assert ((s >= strict["threshold"]) & y).sum() / y.sum() >= 0.95  # the threshold really gives it


def test_clinical_metrics_match_scikit_learn_and_intervals_cover_them():
    s, y = _scores()
    m = clinical_metrics(s, y, choose_operating_point(s, y))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-4)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-4)
    assert m["roc_auc_ci"][0] < m["roc_auc"] < m["roc_auc_ci"][1] and m["roc_auc_ci"][1] - m["roc_auc_ci"][0] < 0.2
    assert m["pr_auc_ci"][0] < m["pr_auc"] < m["pr_auc_ci"][1]
    tp = ((s >= m["threshold"]) & y).sum()
    assert m["sensitivity"] == pytest.approx(tp / y.sum(), abs=1e-4) and m["prevalence"] == pytest.approx(y.mean(), abs=1e-4)
    assert m == clinical_metrics(s, y, choose_operating_point(s, y))  # seeded bootstrap: reproducible


def test_one_class_split_has_no_auc_but_still_rates():
    m = clinical_metrics(np.array([0.2, 0.8]), np.array([True, True]), {"threshold": 0.5, "rule": "x"})
    assert m["roc_auc"] is None and m["sensitivity"] == 0.5 and m["specificity"] is None


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_downweights_easy_examples():
    logits = torch.tensor([[4.0, -4.0], [0.2, 0.0]])
    targets = torch.tensor([0, 1])
    assert torch.allclose(focal_cross_entropy(logits, targets, gamma=0.0), F.cross_entropy(logits, targets))
    easy = focal_cross_entropy(logits[:1], targets[:1], gamma=2.0) / F.cross_entropy(logits[:1], targets[:1])
    hard = focal_cross_entropy(logits[1:], targets[1:], gamma=2.0) / F.cross_entropy(logits[1:], targets[1:])
    assert easy < 1e-3 < hard


def test_binary_run_reports_clinical_metrics_and_states_the_operating_point(tmp_path):
    data = make_image_folder(tmp_path / "xray", classes=("normal", "nodule"), per_class=10)
    for extra in list((data / "nodule").glob("*.png"))[:4]:  # imbalance: 10 normal, 6 nodule
        extra.unlink()
    run = graftkit.fit(data, out=tmp_path / "run", model=TINY_MODEL, epochs=6, lr=0.05, batch_size=4, num_workers=0,
                       class_weights="balanced", focal_gamma=2.0, target_sensitivity=0.95, val_fraction=0.4)  # fmt: skip
    metrics = json.loads((run.dir / "metrics.json").read_text())
    clinical = metrics["val"]["clinical"]
    assert {"roc_auc", "roc_auc_ci", "pr_auc", "pr_auc_ci", "sensitivity", "specificity", "roc_curve"} <= set(clinical)
    assert clinical["sensitivity"] >= 0.95  # chosen on validation to reach it; 6 validation images: in-sample, and said so
    assert "figures in-sample (validation has" in clinical["cross_fit"]
    point = json.loads((run.dir / "graft.json").read_text())["task"]["operating_point"]
    assert point["positive"] == "normal" or point["positive"] == "nodule"
    assert point["threshold"] == pytest.approx(clinical["threshold"], abs=1e-5)
    assert "sensitivity >= 0.95" in point["rule"]
    card = (run.dir / "MODEL_CARD.md").read_text()
    assert "Operating point for" in card and f"{point['threshold']:.4f}" in card
    report = (run.dir / "report.html").read_text()
    assert "Clinical metrics (val)" in report and "roc.png" in report and (run.dir / "roc.png").stat().st_size > 1000
    assert graftkit.load(run.dir).predict(sorted(data.glob("*/*.png"))[:2])  # the operating point reloads


def test_multilabel_reports_per_label_clinical_metrics_at_target_sensitivity():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 2)) < 0.3).astype(np.float32)
    probs = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, y.shape), 0, 1).astype(np.float32)
    task = MultiLabelTask(["effusion", "nodule"], target_sensitivity=0.9)
    final = task.finish({"val": (probs, y, 0.5)}, None, {}, 8)
    for c, name in enumerate(task.classes):
        m = final["val"]["clinical"][name]
        assert m["threshold"] == pytest.approx(task.thresholds[c], abs=1e-5)
        pos = y[:, c] > 0.5
        assert ((probs[:, c] >= m["threshold"]) & pos).sum() / pos.sum() >= 0.9  # in-sample, the rule guarantees it
        assert 0.8 <= m["sensitivity"] and m["roc_auc"] > 0.8  # reported: cross-fitted, so not guaranteed
        assert m["cross_fit"] == "fitted on all of validation; figures cross-fitted on halves"
    caveats = " ".join(task.card()["caveats"])
    assert "validation sensitivity >= 0.9" in caveats and "cross-fitted on halves" in caveats


def test_binary_validation_operating_point_figures_are_cross_fitted():
    """Scores that carry no information: Youden's J picked on the same data looks better than
    chance; the reported (cross-fitted) sensitivity + specificity - 1 stays near 0."""
    from graftkit.tasks.classification import ClassificationTask

    in_sample, reported = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        s, y = rng.random(200), rng.random(200) < 0.4
        task = ClassificationTask(["normal", "nodule"])
        m = task.finish({"val": (np.stack([1 - s, s], 1), y.astype(int), 0.5)}, None, {}, 8)["val"]["clinical"]
        point = choose_operating_point(s, y)
        assert m["threshold"] == pytest.approx(point["threshold"])  # the run uses the all-of-validation point
        in_sample.append(point["sensitivity"] + point["specificity"] - 1)
        reported.append(m["sensitivity"] + m["specificity"] - 1)
        assert task.operating_point["sensitivity"] == m["sensitivity"] and "cross-fitted" in task.operating_point["cross_fit"]
    assert np.mean(in_sample) > 0.08 and abs(np.mean(reported)) < 0.05 and np.mean(reported) < np.mean(in_sample) - 0.05
    assert "cross-fitted on halves" in task.card()["caveats"][-1]
