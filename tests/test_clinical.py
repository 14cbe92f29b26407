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
    assert clinical["sensitivity"] >= 0.95  # chosen on validation to reach it
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
        assert m["sensitivity"] >= 0.9 and m["roc_auc"] > 0.8
        assert m["threshold"] == pytest.approx(task.thresholds[c], abs=1e-5)
    assert "validation sensitivity >= 0.9" in " ".join(task.card()["caveats"])
