"""Clinical metrics for binary and multi-label findings (scikit-learn underneath).

- ROC-AUC and PR-AUC (average precision) with percentile bootstrap 95 % confidence intervals
  (500 stratified resamples, seeded: the same predictions always give the same interval);
- an **operating point chosen on validation**: Youden's J (max sensitivity + specificity - 1), or
  the highest threshold whose validation sensitivity reaches a target (`--target-sensitivity`);
- sensitivity, specificity, PPV and NPV at that threshold on every split (on test, the threshold
  is the one chosen on validation, never refitted). On validation itself the threshold the run
  uses is chosen on all of it, but the figures are **cross-fitted** (`cross_fit_thresholds`):
  each seeded, stratified half is scored at the threshold chosen on the other half, so the
  reported validation sensitivity is not the in-sample one that the rule guarantees;
- the ROC curve (at most 101 points), which the report plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["choose_operating_point", "clinical_metrics", "bootstrap_ci", "cross_fit_thresholds"]

_BOOTSTRAP = 500
_CURVE_POINTS = 101


def choose_operating_point(scores: np.ndarray, positives: np.ndarray, target_sensitivity: float | None = None) -> dict[str, Any]:
    """The decision threshold on `scores`, chosen on these (validation) predictions.

    Args:
        scores: Probability of the finding, `[N]`.
        positives: True where the finding is present, `[N]`.
        target_sensitivity: None for Youden's J; else the highest threshold whose sensitivity is at
            least this (e.g. 0.95).

    Returns:
        `{"threshold", "rule", "sensitivity", "specificity"}` (the validation values at the threshold).

    Example:
        >>> choose_operating_point(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 0, 1, 1]))["threshold"]
        0.6
    """
    from sklearn.metrics import roc_curve

    positives = np.asarray(positives).astype(bool)
    if positives.all() or not positives.any():
        return {"threshold": 0.5, "rule": "0.5 (validation has one class only)", "sensitivity": None, "specificity": None}
    fpr, tpr, thresholds = roc_curve(positives, scores)
    thresholds = np.minimum(thresholds, 1.0)  # scikit-learn's first threshold is +inf
    if target_sensitivity is None:
        i = int(np.argmax(tpr - fpr))
        rule = "Youden's J (max sensitivity + specificity - 1) on validation"
    else:
        i = int(np.flatnonzero(tpr >= target_sensitivity)[0])
        rule = f"highest threshold with validation sensitivity >= {target_sensitivity:g}"
    return {"threshold": float(thresholds[i]), "rule": rule, "sensitivity": float(tpr[i]), "specificity": float(1 - fpr[i])}


def cross_fit_thresholds(scores: np.ndarray, positives: np.ndarray, target_sensitivity: float | None = None) -> tuple[np.ndarray | None, str]:
    """Per-sample held-out thresholds: each half of validation gets the operating point chosen on the other.

    Halves are seeded and stratified by `positives` (`evaluation.calibration.halves`); with fewer
    than `MIN_CROSS_FIT` samples, or fewer than 2 positives or negatives (a half would have one
    class only), there are none and the figures stay in-sample.

    Args:
        scores: Probability of the finding, `[N]`.
        positives: True where the finding is present, `[N]`.
        target_sensitivity: As `choose_operating_point`.

    Returns:
        `(thresholds [N] or None, note)`: pass the thresholds to `clinical_metrics(row_thresholds=...)`.

    Example:
        >>> rows, note = cross_fit_thresholds(val_scores, val_positives, 0.95)  # doctest: +SKIP
    """
    from graftkit.evaluation.calibration import CROSS_FIT_NOTE, halves, in_sample_note

    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives).astype(bool)
    split = halves(len(scores), labels=positives, every_class=True)
    if isinstance(split, str):
        return None, in_sample_note(split)
    rows = np.empty(len(scores))
    for fit_on, score_on in (split, split[::-1]):
        rows[score_on] = choose_operating_point(scores[fit_on], positives[fit_on], target_sensitivity)["threshold"]
    return rows, CROSS_FIT_NOTE


def bootstrap_ci(scores: np.ndarray, positives: np.ndarray, metric, *, n: int = _BOOTSTRAP, seed: int = 0) -> list[float] | None:
    """Percentile 95 % interval of `metric(positives, scores)` over stratified bootstrap resamples."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(positives), np.flatnonzero(~positives)
    if len(pos) < 2 or len(neg) < 2:
        return None
    values = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        values.append(metric(positives[idx], scores[idx]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def clinical_metrics(
    scores: np.ndarray,
    positives: np.ndarray,
    operating_point: dict[str, Any],
    *,
    seed: int = 0,
    row_thresholds: np.ndarray | None = None,
    cross_fit: str | None = None,
) -> dict[str, Any]:
    """ROC-AUC, PR-AUC (with bootstrap CIs), and sensitivity / specificity / PPV / NPV at the threshold.

    Args:
        scores: Probability of the finding, `[N]`.
        positives: True where the finding is present, `[N]`.
        operating_point: From `choose_operating_point` on validation.
        seed: Seeds the bootstrap.
        row_thresholds: Per-sample thresholds `[N]` (validation: `cross_fit_thresholds`) for
            sensitivity / specificity / PPV / NPV; `threshold` still reports the operating point's.
        cross_fit: The note stored as `cross_fit` (how the validation figures were obtained).

    Returns:
        A dict for metrics.json (`roc_auc`, `roc_auc_ci`, `pr_auc`, `pr_auc_ci`, `prevalence`,
        `threshold`, `sensitivity`, `specificity`, `ppv`, `npv`, `roc_curve`); AUCs are None when
        the split has one class only.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives).astype(bool)
    threshold = float(operating_point["threshold"])
    predicted = scores >= (threshold if row_thresholds is None else np.asarray(row_thresholds, dtype=np.float64))
    tp, fn = int((predicted & positives).sum()), int((~predicted & positives).sum())
    tn, fp = int((~predicted & ~positives).sum()), int((predicted & ~positives).sum())
    out: dict[str, Any] = {
        "n": int(len(scores)), "prevalence": round(float(positives.mean()), 4) if len(scores) else None,
        "threshold": threshold, "rule": operating_point["rule"],
        "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
        "roc_auc": None, "roc_auc_ci": None, "pr_auc": None, "pr_auc_ci": None, "roc_curve": None,
    }  # fmt: skip
    if cross_fit is not None:
        out["cross_fit"] = cross_fit
    if positives.any() and not positives.all():
        out["roc_auc"] = round(float(roc_auc_score(positives, scores)), 4)
        out["pr_auc"] = round(float(average_precision_score(positives, scores)), 4)
        out["roc_auc_ci"] = bootstrap_ci(scores, positives, roc_auc_score, seed=seed)
        out["pr_auc_ci"] = bootstrap_ci(scores, positives, average_precision_score, seed=seed)
        fpr, tpr, _ = roc_curve(positives, scores)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _CURVE_POINTS)).round().astype(int))
        out["roc_curve"] = {"fpr": [round(float(x), 4) for x in fpr[keep]], "tpr": [round(float(x), 4) for x in tpr[keep]]}
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def findings(clinical: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A split's `clinical` entry as finding name → metrics (binary runs have one, named `finding`)."""
    return {"finding": clinical} if "roc_auc" in clinical else dict(clinical)


def plot_roc(clinical: dict[str, Any], path: Any) -> Any:
    """ROC curve per finding, with its operating point marked; written as a PNG."""
    from graftkit.evaluation.plots import new_figure, save_figure

    fig, ax = new_figure(5.0, 4.6)
    for name, m in findings(clinical).items():
        curve = m.get("roc_curve")
        if not curve:
            continue
        auc = f"AUC {m['roc_auc']:.3f}" + (f" [{m['roc_auc_ci'][0]:.3f}, {m['roc_auc_ci'][1]:.3f}]" if m.get("roc_auc_ci") else "")
        (line,) = ax.plot(curve["fpr"], curve["tpr"], label=f"{name}: {auc}")
        if m.get("sensitivity") is not None and m.get("specificity") is not None:
            ax.plot([1 - m["specificity"]], [m["sensitivity"]], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title("ROC (dot: operating point chosen on validation)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)
