"""Temperature scaling, ECE and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest

from graftkit.evaluation.calibration import (
    CROSS_FIT_NOTE,
    apply_temperature,
    calibrate,
    calibrate_run,
    expected_calibration_error,
    fit_temperature,
    halves,
    plot_reliability_diagram,
)


def _overconfident(n: int = 3000, c: int = 5, temperature: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(logits); predictions softmax(T × logits): too sharp by T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 1.5
    p_true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(p_true, 1)).sum(1)
    sharp = np.exp(temperature * logits)
    return sharp / sharp.sum(1, keepdims=True), y, p_true


def test_ece_by_hand():
    probs = np.array([[0.8, 0.2], [0.8, 0.2], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # bin of 0.8: accuracy 0.5 -> |0.5 - 0.8| x 2/4; bin of 0.6: accuracy 1 -> |1 - 0.6| x 2/4
    assert expected_calibration_error(probs, y, n_bins=15) == pytest.approx(0.15 + 0.2)


def test_temperature_recovers_the_overconfidence_and_lowers_ece():
    probs, y, p_true = _overconfident()
    t = fit_temperature(probs, y)
    assert t == pytest.approx(2.5, rel=0.1)
    result = calibrate(probs, y)
    assert result["ece_calibrated"] < result["ece"] / 3 and result["nll_calibrated"] < result["nll"]
    assert expected_calibration_error(p_true, y) < 0.03  # the true probabilities are calibrated
    scaled = apply_temperature(probs, t)
    assert np.array_equal(scaled.argmax(1), probs.argmax(1)) and np.allclose(scaled.sum(1), 1)


def test_underconfident_predictions_get_a_temperature_below_one():
    probs, y, _ = _overconfident(temperature=0.5)
    assert fit_temperature(probs, y) == pytest.approx(0.5, rel=0.1)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 2]))
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(np.full((2, 2), 0.5), 0.0)


def test_reliability_diagram_is_written(tmp_path):
    probs, y, _ = _overconfident(n=300)
    path = plot_reliability_diagram(probs, y, tmp_path / "rel.png", temperature=2.0)
    assert path.is_file() and path.stat().st_size > 5000


def _halves_that_disagree(n: int = 40):
    """3 classes, every top-class confidence 0.8; the first cross-fitting half is right 90 % of the
    time, the second 60 %. In-sample one temperature matches the pooled 75 % exactly (ECE ~0);
    cross-fitted, each half is scaled to the other's accuracy (ECE 0.3)."""
    y = np.arange(n) % 3
    a, b = halves(n, labels=y)
    pred = y.copy()
    for half, right in ((a, 0.9), (b, 0.6)):
        wrong = half[int(round(right * len(half))):]
        pred[wrong] = (y[wrong] + 1) % 3
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), pred] = 0.8
    return probs, y


def test_reported_ece_after_scaling_is_scored_on_held_out_halves():
    probs, y = _halves_that_disagree()
    result = calibrate(probs, y)
    assert result["ece_calibrated_in_sample"] < 1e-3  # what an in-sample report would claim
    assert result["ece_calibrated"] == pytest.approx(0.3, abs=0.01)  # held out: each half at the other's accuracy
    assert result["cross_fit"] == CROSS_FIT_NOTE == "fitted on all of validation; figures cross-fitted on halves"
    assert result["nll_calibrated"] > result["nll_calibrated_in_sample"] + 0.05
    t_a, t_b = result["half_temperatures"]
    assert t_a < t_b  # the 90 %-right half needs less softening than the 60 %-right one


def test_the_temperature_used_is_the_all_of_validation_fit(tmp_path):
    probs, y, _ = _overconfident(n=600)
    metrics = {"val": {}, "test": {}}
    record = calibrate_run({"val": (probs, y, 0.0), "test": (probs[:100], y[:100], 0.0)}, metrics, tmp_path)
    assert record["temperature"] == pytest.approx(fit_temperature(probs, y), abs=1e-5)
    assert all(abs(t - record["temperature"]) > 1e-4 for t in record["half_temperatures"])
    assert metrics["val"]["temperature"] == record["temperature"] and metrics["val"]["calibration"] == CROSS_FIT_NOTE
    assert metrics["val"]["ece_calibrated"] == record["ece_calibrated"] != record["ece_calibrated_in_sample"]
    scaled = apply_temperature(probs[:100], record["temperature"])  # other splits: the temperature the run applies
    assert metrics["test"]["ece_calibrated"] == pytest.approx(expected_calibration_error(scaled, y[:100]), abs=1e-6)
    assert (tmp_path / "reliability.png").is_file()


def test_halves_are_seeded_disjoint_and_stratified():
    y = np.array([0] * 12 + [1] * 6 + [2] * 3)
    a, b = halves(len(y), labels=y)
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(len(y))) and not set(a) & set(b)
    assert all(abs((y[a] == c).sum() - (y[b] == c).sum()) <= 1 for c in range(3))
    a2, _ = halves(len(y), labels=y)
    assert a.tolist() == a2.tolist()
    assert "a half would miss it" in halves(len(y), labels=np.r_[y[:-3], 0, 0, 3], every_class=True)


def test_tiny_validation_falls_back_to_in_sample_and_says_so():
    probs, y = _halves_that_disagree()
    probs, y = probs[:9], y[:9]
    result = calibrate(probs, y)
    assert result["half_temperatures"] is None and "in-sample" in result["cross_fit"] and "9 < 10" in result["cross_fit"]
    assert result["ece_calibrated"] == result["ece_calibrated_in_sample"]


def test_report_states_how_the_calibration_figures_were_obtained(tmp_path):
    from graftkit.evaluation.report import write_report

    probs, y, _ = _overconfident(n=300)
    record = calibrate(probs, y)
    html = open(write_report(tmp_path / "new", title="t", metrics={"accuracy": 0.5}, calibration=record)).read()
    assert f"{record['ece_calibrated']:.4f} after (fitted on all of validation; figures cross-fitted on halves)" in html
    old = {k: record[k] for k in ("temperature", "ece", "ece_calibrated", "nll", "nll_calibrated")}  # a run from before cross-fitting
    html = open(write_report(tmp_path / "old", title="t", metrics={"accuracy": 0.5}, calibration=old)).read()
    assert "after (fitted on the validation split; figures in-sample)" in html
