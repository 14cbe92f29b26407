"""Calibration of a classifier's probabilities: temperature scaling, ECE, reliability diagram.

A leaf module like `metrics.py`: numpy and scipy only (matplotlib inside the plot function).

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides
the logits by one scalar `T > 0` fitted to minimise the negative log-likelihood on held-out
(validation) data. It never changes which class is predicted — accuracy is untouched — only how
confident the probabilities are. Softmax probabilities are enough: `log p` equals the logits up
to a per-row constant, which softmax ignores, so `softmax(log p / T)` is the scaled prediction.
The NLL is convex in `1/T`, so a bounded one-dimensional search finds the optimum.

**Cross-fitting.** The temperature a run *uses* is fitted on all of validation; the figures it
*reports* about it (ECE and NLL after scaling) are cross-fitted: validation is split into two
seeded halves (stratified by class), the temperature fitted on one half scales the other, both
ways, and the pooled held-out predictions are scored. No reported figure is in-sample. Below
`MIN_CROSS_FIT` samples the figures are in-sample and the record says so. `halves` and the notes
are shared with the threshold fitting of `evaluation/clinical.py` and `tasks/multilabel.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ECE_BINS = 15
_T_RANGE = (0.05, 20.0)
MIN_CROSS_FIT = 10
"""Fewer validation samples than this: fitted parameters are scored in-sample (and the record says so)."""
CROSS_FIT_NOTE = "fitted on all of validation; figures cross-fitted on halves"
CROSS_FIT_SEED = 0


def in_sample_note(reason: str) -> str:
    """The record's line when the figures could not be cross-fitted.

    Args:
        reason: Why not (from `halves`).

    Returns:
        The line for metrics.json, graft.json, the report and the model card.

    Example:
        >>> in_sample_note("validation has 8 < 10 samples")
        'fitted on all of validation; figures in-sample (validation has 8 < 10 samples)'
    """
    return f"fitted on all of validation; figures in-sample ({reason})"


def halves(n: int, *, labels: np.ndarray | None = None, seed: int = CROSS_FIT_SEED, every_class: bool = False) -> tuple[np.ndarray, np.ndarray] | str:
    """Two seeded, disjoint halves of `range(n)` for cross-fitting, or why there are none.

    Args:
        n: Number of validation samples.
        labels: `[n]` class labels to stratify by (each class's samples alternate between the
            halves after a seeded shuffle); None for a plain seeded permutation (multi-label).
        seed: Seeds the shuffle: the same validation set always gives the same halves.
        every_class: Refuse (return a reason) when a class has fewer than 2 samples, i.e. would
            be missing from one half.

    Returns:
        `(first, second)` sorted index arrays, or a string saying why validation is too small.

    Example:
        >>> a, b = halves(10)
        >>> sorted(np.concatenate([a, b]).tolist()) == list(range(10))
        True
    """
    if n < MIN_CROSS_FIT:
        return f"validation has {n} < {MIN_CROSS_FIT} samples"
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
    else:
        labels = np.asarray(labels).reshape(-1)
        classes, counts = np.unique(labels, return_counts=True)
        if every_class and (counts < 2).any():
            return f"class {classes[np.argmin(counts)]!r} has {counts.min()} validation sample(s), so a half would miss it"
        order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in classes])
    return np.sort(order[0::2]), np.sort(order[1::2])


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be [N, C] with N = len(labels) = {y.shape[0]}; got {list(p.shape)}")
    if y.size == 0:
        raise ValueError("cannot calibrate on zero samples")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1]}); got min {y.min()}, max {y.max()}")
    return p, y


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`softmax(log(probs) / temperature)`: the probabilities of logits divided by `temperature`.

    Args:
        probs: `[N, C]` probabilities.
        temperature: `T > 0`; above 1 softens, below 1 sharpens.

    Returns:
        `[N, C]` probabilities, same argmax as `probs`.

    Example:
        >>> apply_temperature(np.array([[0.9, 0.1]]), 1.0).round(3)
        array([[0.9, 0.1]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(labels.size), labels], 1e-12, None))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`.

    A bounded scalar search over `log T` in [log 0.05, log 20] (Brent's method on a convex
    function; about 30 evaluations).

    Args:
        probs: `[N, C]` validation probabilities (softmax outputs).
        labels: `[N]` integer labels.

    Returns:
        The fitted temperature `T`.

    Example:
        >>> t = fit_temperature(val_probs, val_labels)  # doctest: +SKIP
    """
    from scipy.optimize import minimize_scalar

    p, y = _check(probs, labels)
    result = minimize_scalar(
        lambda log_t: _nll(apply_temperature(p, float(np.exp(log_t))), y),
        bounds=(np.log(_T_RANGE[0]), np.log(_T_RANGE[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def _bins(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # Bins (k/B, (k+1)/B]; a confidence of exactly 0 joins the first bin.
    idx = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    return count, conf_sum, acc_sum


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: `Σ_b |B_b|/N · |accuracy(B_b) − confidence(B_b)|`.

    The top-class confidence is split into `n_bins` equal-width bins `(k/B, (k+1)/B]`
    (Naeini et al. 2015; Guo et al. 2017 use 15).

    Args:
        probs: `[N, C]` probabilities.
        labels: `[N]` integer labels.
        n_bins: Number of equal-width confidence bins.

    Returns:
        ECE in [0, 1] (0: confidence matches accuracy in every bin).

    Example:
        >>> round(expected_calibration_error(np.array([[0.8, 0.2], [0.8, 0.2]]), np.array([0, 1])), 3)
        0.3
    """
    p, y = _check(probs, labels)
    count, conf_sum, acc_sum = _bins(p, y, n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / y.size)


def cross_fit_temperature(probs: np.ndarray, labels: np.ndarray, *, seed: int = CROSS_FIT_SEED) -> tuple[np.ndarray, list[float] | None, str]:
    """Held-out scaled probabilities: each half scaled by the temperature fitted on the other half.

    Args:
        probs: `[N, C]` validation probabilities.
        labels: `[N]` integer labels.
        seed: Seeds the halves.

    Returns:
        `(scaled [N, C], [T fitted on half 1, T fitted on half 2] or None, note)`; with too few
        samples the in-sample scaled probabilities (all-of-validation temperature) and a note
        that says so.

    Example:
        >>> scaled, temps, note = cross_fit_temperature(val_probs, val_labels)  # doctest: +SKIP
    """
    p, y = _check(probs, labels)
    split = halves(len(y), labels=y, seed=seed)
    if isinstance(split, str):
        return apply_temperature(p, fit_temperature(p, y)), None, in_sample_note(split)
    scaled = np.empty_like(p)
    temps = []
    for fit_on, score_on in (split, split[::-1]):
        t = fit_temperature(p[fit_on], y[fit_on])
        scaled[score_on] = apply_temperature(p[score_on], t)
        temps.append(round(t, 6))
    return scaled, temps, CROSS_FIT_NOTE


def calibrate(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS, *, seed: int = CROSS_FIT_SEED) -> dict[str, Any]:
    """Fit a temperature on all of these (validation) predictions; measure ECE/NLL before and after.

    The temperature is the all-of-validation fit (the one a run applies); the "after" figures are
    cross-fitted (`cross_fit_temperature`), so they are never scored on the data that fitted them.

    Args:
        probs: `[N, C]` validation probabilities.
        labels: `[N]` integer labels.
        n_bins: ECE bins.
        seed: Seeds the halves.

    Returns:
        `{"temperature": T, "ece": before, "ece_calibrated": after, "nll": before, "nll_calibrated": after,
        "half_temperatures": [T1, T2] or None, "cross_fit": note, "ece_calibrated_in_sample", "nll_calibrated_in_sample"}`,
        values rounded to 6 decimals.

    Example:
        >>> calibrate(val_probs, val_labels)["temperature"]  # doctest: +SKIP
        1.41
    """
    p, y = _check(probs, labels)
    t = fit_temperature(p, y)
    in_sample = apply_temperature(p, t)
    held_out, temps, note = cross_fit_temperature(p, y, seed=seed)
    return {
        "temperature": round(t, 6),
        "ece": round(expected_calibration_error(p, y, n_bins), 6),
        "ece_calibrated": round(expected_calibration_error(held_out, y, n_bins), 6),
        "nll": round(_nll(p, y), 6),
        "nll_calibrated": round(_nll(held_out, y), 6),
        "half_temperatures": temps,
        "cross_fit": note,
        "ece_calibrated_in_sample": round(expected_calibration_error(in_sample, y, n_bins), 6),
        "nll_calibrated_in_sample": round(_nll(in_sample, y), 6),
    }


def plot_reliability_diagram(
    probs: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    temperature: float | None = None,
    calibrated: np.ndarray | None = None,
    n_bins: int = ECE_BINS,
) -> Path:
    """Accuracy vs confidence per bin (the diagonal is perfect calibration), before and after scaling.

    Args:
        probs: `[N, C]` probabilities.
        labels: `[N]` integer labels.
        path: Where to write the PNG.
        temperature: Also draw the curve after dividing the logits by this temperature.
        calibrated: The scaled probabilities to draw for that curve (e.g. the cross-fitted ones);
            default `apply_temperature(probs, temperature)`.
        n_bins: Confidence bins.

    Returns:
        `path` as a `Path`.

    Example:
        >>> plot_reliability_diagram(val_probs, val_labels, "reliability.png", temperature=1.4)  # doctest: +SKIP
    """
    from graftkit.evaluation.plots import new_figure, save_figure

    p, y = _check(probs, labels)
    fig, ax = new_figure(4.8, 4.4)
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
    curves = [("uncalibrated", p, "tab:red")]
    if temperature is not None:
        q = apply_temperature(p, temperature) if calibrated is None else np.asarray(calibrated, dtype=np.float64)
        name = f"temperature {temperature:.2f}" + (" (cross-fitted)" if calibrated is not None else "")
        curves.append((name, q, "tab:blue"))
    for name, q, colour in curves:
        count, conf_sum, acc_sum = _bins(q, y, n_bins)
        used = count > 0
        ece = float(np.abs(acc_sum - conf_sum).sum() / y.size)
        ax.plot(conf_sum[used] / count[used], acc_sum[used] / count[used], marker="o", ms=4, color=colour, label=f"{name} (ECE {ece:.3f})")
    edges = np.linspace(0, 1, n_bins + 1)
    count, _, _ = _bins(p, y, n_bins)
    ax.bar(edges[:-1], count / count.sum(), width=1 / n_bins, align="edge", color="0.85", label="share of samples", zorder=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability diagram")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


RELIABILITY_PNG = "reliability.png"


def calibrate_run(outputs: dict[str, Any], metrics: dict[str, dict[str, Any]], out_dir: str | Path) -> dict[str, Any] | None:
    """Fit the temperature on a run's validation predictions; add ECE to every split's metrics.

    Adds `temperature`, `ece`, `ece_calibrated` (cross-fitted on halves) and `calibration`
    (the one-line note) to `metrics["val"]`, and `ece` / `ece_calibrated` (with the
    all-of-validation temperature, out-of-sample there by construction) to the other splits'
    metrics, and draws `reliability.png` (validation, the calibrated curve cross-fitted) into `out_dir`.

    Args:
        outputs: Per split, `(probs [N, C], labels [N], loss)` of the kept weights.
        metrics: Per split, the metrics dict to extend (modified in place).
        out_dir: The run directory.

    Returns:
        `{"temperature", "fitted_on": "val", "ece", "ece_calibrated", "nll", "nll_calibrated",
        "cross_fit", ...}` (`calibrate`'s result) for graft.json, or None without validation predictions.

    Example:
        >>> meta["calibration"] = calibrate_run(outputs, final, run_dir)  # doctest: +SKIP
    """
    if "val" not in outputs or len(outputs["val"][1]) == 0:
        return None
    probs, labels = np.asarray(outputs["val"][0]), np.asarray(outputs["val"][1])
    result = calibrate(probs, labels)
    t = result["temperature"]
    metrics["val"].update(temperature=t, ece=result["ece"], ece_calibrated=result["ece_calibrated"], calibration=result["cross_fit"])
    for split, (p, y, *_) in outputs.items():
        if split != "val" and split in metrics and len(y):
            metrics[split].update(
                ece=round(expected_calibration_error(p, y), 6),
                ece_calibrated=round(expected_calibration_error(apply_temperature(p, t), y), 6),
            )
    held_out, _, _ = cross_fit_temperature(probs, labels)
    plot_reliability_diagram(probs, labels, Path(out_dir) / RELIABILITY_PNG, temperature=t, calibrated=held_out)
    return {"fitted_on": "val", **result}
