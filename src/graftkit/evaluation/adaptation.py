"""Label-free target scores and domain-shift diagnostics (numpy + scikit-learn).

Scores of a model on unlabelled target data, used to pick the adaptation method and epoch without
target labels:

- `mean_entropy`: the mean prediction entropy on target (lower: more confident);
- `information_maximisation`: `H(mean p) - mean H(p)` (Shi & Sha 2012; SHOT): confident *and*
  diverse predictions (higher is better; a model that puts every target sample in one class scores 0);
- `dev_risk`: Deep Embedded Validation (You et al. 2019): the source validation loss importance-
  weighted towards the target by a domain classifier on features, with a control variate (lower
  is better).

Diagnostics: `proxy_a_distance` (Ben-David et al. 2007: `2 (1 - 2 err)` of a linear domain
classifier) and `plot_domain_embedding` (t-SNE of source vs target features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LABEL_FREE_SCORES = {"source_val_accuracy": "higher", "target_im": "higher", "target_dev": "lower"}
"""The label-free scores `--adapt auto` ranks by, and which way is better (`target_entropy` is
reported but not ranked: information maximisation already contains it and penalises collapse)."""


def _entropy_rows(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def mean_entropy(probs: np.ndarray) -> float:
    """Mean per-sample entropy (nats) of probabilities `[N, C]`."""
    return float(_entropy_rows(probs).mean()) if len(probs) else float("nan")


def information_maximisation(probs: np.ndarray) -> float:
    """`H(mean p) - mean H(p)` in nats: high when each prediction is confident and the classes are
    used evenly across the target set."""
    if not len(probs):
        return float("nan")
    marginal = probs.mean(axis=0, keepdims=True)
    return float(_entropy_rows(marginal)[0] - _entropy_rows(probs).mean())


def _domain_probabilities(source: np.ndarray, target: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold P(target | x) of a logistic-regression domain classifier, for source then target
    rows. Features are standardised and reduced to at most 32 principal components first (fitted on
    both domains, no domain labels), which keeps the classifier fast and regularised."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    x = np.concatenate([source, target]).astype(np.float64)
    y = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    k = min(32, x.shape[1], len(x) - 1)
    x = PCA(n_components=k, random_state=seed).fit_transform(x)
    folds = max(2, min(3, len(source), len(target)))
    out = np.zeros(len(x))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = LogisticRegression(C=0.1, max_iter=500).fit(x[train], y[train])
        out[test] = clf.predict_proba(x[test])[:, 1]
    return out


def dev_risk(source_features: np.ndarray, source_losses: np.ndarray, target_features: np.ndarray, seed: int = 0) -> float:
    """Deep Embedded Validation: an estimate of the target risk from labelled source validation
    samples, each loss weighted by `w = P(t|x) / P(s|x) · n_s / n_t` with a control variate
    `eta = -Cov(wL, w) / Var(w)` that cuts the variance of the weighted mean (lower is better).

    Args:
        source_features: Source validation features `[n_s, d]`.
        source_losses: Their per-sample task losses `[n_s]`.
        target_features: Target features `[n_t, d]`.
    """
    if len(source_features) < 2 or len(target_features) < 2:
        return float("nan")
    p = np.clip(_domain_probabilities(source_features, target_features, seed)[: len(source_features)], 1e-3, 1 - 1e-3)
    w = p / (1 - p) * len(source_features) / len(target_features)
    weighted = w * source_losses
    var = np.var(w, ddof=1)
    eta = 0.0 if var < 1e-12 else -np.cov(weighted, w)[0, 1] / var
    return float(weighted.mean() + eta * w.mean() - eta)


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, max_per_domain: int = 500) -> float:
    """`2 (1 - 2 err)` with `err` the held-out (cross-validated) error of a linear classifier that
    tells source from target features: about 0 when the domains are indistinguishable, 2 when
    perfectly separable (the balanced sample keeps chance at err = 0.5)."""
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_per_domain)
    if n < 2:
        return float("nan")
    s = source[rng.choice(len(source), n, replace=False)]
    t = target[rng.choice(len(target), n, replace=False)]
    p = _domain_probabilities(s, t, seed)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    err = float(((p > 0.5) != y).mean())
    return 2.0 * (1.0 - 2.0 * err)


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation of two equally long lists (None below 3 finite pairs or for a constant list)."""
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)]
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return None
    return float(spearmanr([x for x, _ in pairs], [y for _, y in pairs]).statistic)


def mean_rank(rows: list[dict[str, Any]], scores: dict[str, str] = LABEL_FREE_SCORES) -> list[float]:
    """Each row's mean rank (0 = best) over the `scores` it has (NaN-free), ties sharing a rank."""
    from scipy.stats import rankdata

    ranks = np.zeros(len(rows))
    counted = np.zeros(len(rows))
    for key, better in scores.items():
        values = np.array([r.get(key, np.nan) if r.get(key) is not None else np.nan for r in rows], dtype=np.float64)
        ok = np.isfinite(values)
        if ok.sum() < 1:
            continue
        v = -values[ok] if better == "higher" else values[ok]
        ranks[ok] += rankdata(v, method="average") - 1
        counted[ok] += 1
    return [float(r / c) if c else float("inf") for r, c in zip(ranks, counted)]


def plot_domain_embedding(source: np.ndarray, target: np.ndarray, path: str | Path, *, title: str, seed: int = 0, max_per_domain: int = 150) -> Path:
    """A 2-D t-SNE of source and target features (up to `max_per_domain` each, sampled with
    `seed`), coloured by domain, saved as PNG. Exact t-SNE, 300 iterations: at these sizes it is
    faster than Barnes-Hut and deterministic."""
    from sklearn.manifold import TSNE

    from graftkit.evaluation.plots import new_figure, save_figure

    rng = np.random.default_rng(seed)
    s = source[rng.choice(len(source), min(len(source), max_per_domain), replace=False)]
    t = target[rng.choice(len(target), min(len(target), max_per_domain), replace=False)]
    x = np.concatenate([s, t]).astype(np.float32)
    perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
    import inspect

    steps = {"max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter": 300}  # renamed in scikit-learn 1.5
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", method="exact", random_state=seed, **steps).fit_transform(x)
    fig, ax = new_figure(5.5, 4.5)
    ax.scatter(xy[: len(s), 0], xy[: len(s), 1], s=8, alpha=0.6, label=f"source ({len(s)})")
    ax.scatter(xy[len(s):, 0], xy[len(s):, 1], s=8, alpha=0.6, marker="^", label=f"target ({len(t)})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)
    return Path(path)


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    from html import escape

    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(_num(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


SCORE_COLUMNS = ("source_val_accuracy", "target_entropy", "target_im", "target_dev", "target_accuracy")


def adaptation_html(record: dict[str, Any], img: Any) -> list[str]:
    """The report's "Domain adaptation" sections from `metrics.json`'s `adaptation` record.

    Args:
        record: From `training/adapt.py`.
        img: `(file, alt) -> <img> html` of the report.
    """
    from html import escape

    parts = ["<h2>Domain adaptation</h2>", f"<p>{escape(str(record.get('why', '')))}</p>",
             '<p class="meta">Label-free scores on the unlabelled target: target_entropy (mean prediction entropy, lower = more confident), '
             "target_im (information maximisation H(mean p) − mean H(p), higher is better), target_dev (Deep Embedded Validation: source "
             "validation loss importance-weighted towards the target, lower is better). target_accuracy uses --target-labelled "
             "and is for checking only: nothing is chosen by it.</p>"]  # fmt: skip
    cols = [c for c in SCORE_COLUMNS if any(c in r for h in record.get("histories", []) for r in h["rows"])]
    for h in record.get("histories", []):
        rows = [[r.get("epoch")] + [r.get(c) for c in cols] for r in h["rows"]]
        parts += [f"<h3>Per epoch: {escape(h['method'])}, seed {h['seed']}</h3>", _table(["epoch", *cols], rows)]
    cands = record.get("candidates", [])
    if len(cands) > 1:
        keys = [c for c in (*SCORE_COLUMNS, "pad_after", "mean_rank") if any(c in r for r in cands)]
        parts += ["<h3>Trained models (the kept epoch of each)</h3>",
                  _table(["method", "seed", "epoch", *keys], [[r["method"], r["seed"], r.get("epoch"), *[r.get(k) for k in keys]] for r in cands])]  # fmt: skip
    seeds = record.get("seeds")
    if seeds:
        rows = [[k, v["mean"], v["std"], v["n"]] for k, v in seeds["mean_std"].items() if v]
        parts += [f"<h3>Seeds: mean ± std over {seeds['n']} seeds</h3>", _table(["metric", "mean", "std", "n"], rows)]
    if record.get("agreement"):
        rows = [[k, v["epochs"], v["n_epochs"], v["models"], v["n_models"]] for k, v in record["agreement"].items()]
        parts += ["<h3>Agreement of the label-free scores with the true target accuracy</h3>",
                  '<p class="meta">Spearman rank correlation, signed so that +1 means the score orders epochs (or trained models) '
                  "exactly as their target accuracy does; – where fewer than 3 values or a constant.</p>",
                  _table(["score", "over epochs", "epochs", "over models", "models"], rows)]  # fmt: skip
    parts += ["<h3>Proxy A-distance</h3>",
              f'<p>Source vs target features: {_num(record.get("pad_before"))} with the pretrained backbone, '
              f'{_num(record.get("pad_after"))} after training (2(1 − 2·err) of a cross-validated linear domain classifier: '
              "0 = indistinguishable, 2 = separable).</p>"]  # fmt: skip
    for fig in record.get("figures", []):
        parts += [f"<h3>{escape(fig['title'])}</h3>", img(fig["file"], fig["title"])]
    return parts
