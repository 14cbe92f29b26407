"""Temperature scaling, ECE and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest

from graftkit.evaluation.calibration import (
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
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
