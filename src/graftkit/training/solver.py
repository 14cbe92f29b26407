"""The linear probe as a convex solve: scaled features, L2, full-batch L-BFGS, the feature scaling
and the strength chosen on held-out data (two scalings, a log grid of strengths), then a refit on
train + validation.

A linear head on frozen features is a convex problem when the task's loss is convex in the
logits (softmax cross-entropy: multinomial logistic regression; per-label sigmoid BCE: one
logistic regression per label; squared error: ridge regression). The objective is

    mean(task.loss(Z W^T + b, y)) + strength / 2 * ||W||^2,     Z = (X - mean) / scale,

where `scale` is either each feature's own standard deviation (`per-feature`: every feature
counts alike) or one scalar for all, the RMS of the centred features (`global`: the relative
variances are kept, as in an unscaled fit, so near-constant noisy channels stay small, while the
strength grid keeps its meaning). Both are tried when the strength is chosen by k-fold (few rows),
and the held-out rows choose; a holdout choice keeps the per-feature scaling (see `SCALINGS`).
The problem is minimised with full-batch L-BFGS (`_lbfgs`: a two-loop recursion with a
backtracking Armijo line search) over the whole training set at once.
The bias is not penalised (as in scikit-learn). Per scaling, the strength is walked over
`STRENGTHS` from the strongest to the weakest with each solution warm-starting the next, scored by
the task's own monitor metric on held-out rows (ties: the lower held-out loss, then the stronger
penalty); the walk stops `PATIENCE` strengths after the first best score (a flat strong end, where
the weights only shrink, does not count). The per-feature walk takes the whole grid; the global
one, to keep the time, whole decades from 1.5 decades above the first's best (`SECOND_STEP`,
`SECOND_ABOVE`). The (scaling, strength) with the best held-out score wins (same ties; on an exact
tie the per-feature scaling). The held-out rows are:

- `holdout`: fit on train, score on the validation split (enough validation rows);
- `k-fold`: stratified folds over train + validation when validation is small, scored on the
  pooled out-of-fold outputs.

The chosen scaling and strength are then refitted on train + validation (`refit=True`), or on train alone
(`refit=False`, validation stays held out). Either way the validation outputs handed back are
held-out ones (the train-only fit, or the out-of-fold outputs), so the report's validation
figures are never in-sample. The scaling is folded into the returned weights: the result is an
ordinary `nn.Linear`, so predict, export and serve see nothing new.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

STRENGTHS = tuple(float(s) for s in np.logspace(0, -5, 11))
"""L2 strengths tried, strongest first (half-decade steps, 1 to 1e-5). For scikit-learn's `C` on
N rows, strength = 1 / (C N): its default C = 1 on 1,000 rows is 1e-3, inside the grid. Sentence
embeddings at a few texts per class often choose 1.0, the strongest; a grid from 100 was tried
(benchmarks/RESULTS.md, "The solver on data it was not tuned on"): +0.2 point on the dev data,
inside the noise, and at the Fashion-MNIST 1,000-row holdout it stopped early at 3.16 on a
one-image tie, so it was not kept."""
DEFAULT_STRENGTH = 1e-2
"""The strength when there is no validation split to choose one on."""
KFOLD_BELOW = 200
"""Validation splits with fewer rows than this choose the strength by k-fold over train + val."""
FOLDS = 5
MAX_ITER = 100
"""L-BFGS iterations per strength (warm-started along the grid, most need far fewer)."""
HISTORY = 10
"""L-BFGS curvature pairs kept."""
TOL_GRAD, TOL_CHANGE = 1e-4, 1e-9
"""Stop when the largest gradient entry, or the change of the objective, falls below these.
1e-4 (not 1e-5) halves the objective evaluations and chose the same strengths on the
Fashion-MNIST dev splits (benchmarks/RESULTS.md)."""
ONE_THREAD_BELOW = 20_000_000
"""Problems with fewer feature entries (rows x features) than this solve on one thread: their
matrix products take about a millisecond, and intra-op threads cost more than they save (on the
shared 2-core machine, 2 threads made the 1,000 x 1,280 solve 5-10x slower)."""
PATIENCE = 2
"""Stop walking the grid after this many strengths without a score better than the first best. A
flat start (the strongest strengths all scoring the same: the weights only shrink there, the
predictions need not change) counts as not started: patience runs from its last strength."""


class Scaling(str, Enum):
    """How features are scaled before the solve (folded into the returned weights)."""

    PER_FEATURE = "per-feature"
    """Each feature centred and divided by its own standard deviation."""
    GLOBAL = "global"
    """Each feature centred, all divided by one scalar (the RMS of the centred features)."""


SCALINGS = (Scaling.PER_FEATURE, Scaling.GLOBAL)
"""Scalings tried, in order of preference on an exact tie. The global one only when the strength
is chosen by k-fold (fewer than `KFOLD_BELOW` validation rows): that is where it won, on
scikit-learn digits at 10 images per class (100 rows of 1,280 features; +4.3 points), while at
1,000 Fashion-MNIST rows with a 200-row validation split it changed nothing on the dev data and
its second walk took the solve from 0.4 to 0.9 s (benchmarks/RESULTS.md, "The solver on data it
was not tuned on")."""
SECOND_STEP, SECOND_ABOVE = 2, 3
"""The second scaling's walk, to keep the solve's time: every `SECOND_STEP`-th strength of
`STRENGTHS` (whole decades), from `SECOND_ABOVE` grid steps (1.5 decades) above the first walk's
best. Walked like the first (every strength) it made the 1,000 x 1,280 solve 1.6x slower
than this, measured with a grid from 100 (its features are worse conditioned: more L-BFGS iterations per strength) and was no
better on the dev data (benchmarks/results/probe_solver_dev.json). Both scalings give the features
a mean variance of 1, so their best strengths sit near each other."""


@dataclass
class ProbeSolution:
    """A solved linear head in the original feature units, and how it was chosen."""

    weight: torch.Tensor
    """`[C, D]`: the feature scaling folded in."""
    bias: torch.Tensor
    """`[C]`."""
    strength: float
    selection: str
    """`holdout` (validation split) or `k-fold` (folds over train + val)."""
    refit: bool
    """Whether the final head was fitted on train + validation."""
    val_logits: torch.Tensor | None
    """Held-out logits of the validation rows at the chosen strength (None without validation)."""
    scaling: Scaling = Scaling.PER_FEATURE
    """The chosen feature scaling."""
    grid: list[dict[str, Any]] = field(default_factory=list)
    """Per (scaling, strength) tried: its held-out score and loss."""
    seconds: float = 0.0

    def record(self, monitor: str) -> dict[str, Any]:
        """What metrics.json, the report and the log say about the solve."""
        fitted_on = "train + val" if self.refit else "train (val held out)"
        how = f"{FOLDS}-fold cross-validation over train + val" if self.selection == "k-fold" else "the validation split"
        return {
            "solver": "lbfgs",
            "strength": self.strength,
            "scaling": self.scaling.value,
            "selection": self.selection,
            "refit": self.refit,
            "monitor": monitor,
            "note": f"L2 strength {self.strength:.3g} and {self.scaling.value} feature scaling chosen by val {monitor} on {how}; final head fitted on {fitted_on}; "
            "the validation figures are held-out predictions (" + ("out-of-fold" if self.selection == "k-fold" else "train-only fit") + ")",
            "grid": self.grid,
            "seconds": round(self.seconds, 4),
        }


def solvable_linear(head: nn.Module) -> nn.Linear | None:
    """The head's single `nn.Linear` when it has no other parameters (dropout around it is
    fine: a full-batch solve has no dropout), else None."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        return None
    own = {id(p) for p in linears[0].parameters()}
    return linears[0] if all(id(p) in own for p in head.parameters()) else None


def solve_probe(task: Any, feats: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], *, out_features: int, monitor: str,
                refit: bool = True, seed: int = 0) -> ProbeSolution:  # fmt: skip
    """Choose the feature scaling and L2 strength on held-out rows and fit the head (see the module docstring).

    Args:
        task: the task (its `loss`, `collect`, `epoch_metrics` and `metrics[monitor]` are used).
        feats: `[N, D]` features per split (`train`, optionally `val`).
        labels: targets per split, as `task.encode` makes them.
        out_features: the head's output size.
        monitor: the validation metric that chooses the scaling and strength (`loss` allowed).
        refit: fit the final head on train + val (else on train only).
        seed: seed of the k-fold assignment.

    Returns:
        The head in the original feature units and how it was chosen.

    Example:
        >>> sol = solve_probe(task, {"train": x, "val": xv}, {"train": y, "val": yv}, out_features=4, monitor="accuracy")
        >>> sol.record("accuracy")["scaling"]
        'per-feature'
    """
    rows = sum(len(f) for f in feats.values() if f is not None) * feats["train"].shape[1]
    with _threads(1 if rows < ONE_THREAD_BELOW else torch.get_num_threads()):
        return _solve(task, feats, labels, out_features, monitor, refit, seed)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _solve(task: Any, feats: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], out_features: int, monitor: str, refit: bool,
           seed: int) -> ProbeSolution:  # fmt: skip
    start = time.perf_counter()
    x_train, y_train = feats["train"].float(), labels["train"]
    x_val, y_val = feats.get("val"), labels.get("val")
    if x_val is None or len(x_val) == 0:  # nothing to choose on: the middle of the grid
        weight, bias = fit_head(task, x_train, y_train, out_features, DEFAULT_STRENGTH)
        return ProbeSolution(weight, bias, DEFAULT_STRENGTH, "none", False, None, seconds=time.perf_counter() - start)
    x_pool, y_pool = torch.cat([x_train, x_val.float()]), torch.cat([y_train, y_val])
    n_train = len(x_train)
    if len(x_val) < KFOLD_BELOW:
        selection, folds = "k-fold", _fold_ids(y_pool, FOLDS, seed)
    else:
        selection, folds = "holdout", torch.cat([torch.full((n_train,), -1), torch.zeros(len(x_val), dtype=torch.long)])
    metric = task.metrics.get(monitor)
    grid, held = [], []
    # the global scaling is tried where rows are few (k-fold selection): there per-feature scaling
    # lifts near-constant noisy channels most, and the second walk costs least (see SCALINGS)
    scalings = SCALINGS if selection == "k-fold" else SCALINGS[:1]
    for scaling in scalings:  # grid and held stay in SCALINGS order: _best's index tie-break prefers the first
        strengths = STRENGTHS if not grid else _second_strengths(grid[_best(grid, metric)]["strength"])
        walked, logits = _walk_grid(task, x_pool, y_pool, folds, out_features, monitor, scaling, strengths)
        grid += [{"scaling": scaling.value, **g} for g in walked]
        held += logits
    best = _best(grid, metric)
    strength, scaling = grid[best]["strength"], Scaling(grid[best]["scaling"])
    val_logits = held[best][n_train:]
    x_fit, y_fit = (x_pool, y_pool) if refit else (x_train, y_train)
    weight, bias = fit_head(task, x_fit, y_fit, out_features, strength, scaling=scaling)
    return ProbeSolution(weight, bias, strength, selection, refit, val_logits, scaling, grid, time.perf_counter() - start)


def _walk_grid(task: Any, x: torch.Tensor, y: torch.Tensor, folds: torch.Tensor, out_features: int, monitor: str, scaling: Scaling,
               strengths: tuple[float, ...]) -> tuple[list[dict[str, float]], list[torch.Tensor]]:  # fmt: skip
    """Walk `strengths` strongest first on features scaled by `scaling`; per strength, fit every
    fold (warm-started from the previous strength) and score the pooled held-out logits (rows of
    fold -1 are never held out). Stops `PATIENCE` strengths after the best so far."""
    metric = task.metrics.get(monitor)
    ks = [int(k) for k in torch.unique(folds) if k >= 0]
    parts = []
    for k in ks:
        held = folds == k
        mean, scale = _scaler(x[~held], scaling)
        parts.append((held, (x[~held] - mean) / scale, y[~held], (x[held] - mean) / scale))
    states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(parts)
    scored = folds >= 0
    grid, held_logits = [], []
    for strength in strengths:
        logits = torch.zeros(len(x), out_features)
        for i, (held, z, y_fit, z_held) in enumerate(parts):
            states[i] = _lbfgs(task, z, y_fit, out_features, strength, states[i])
            logits[held] = z_held @ states[i][0].T + states[i][1]
        grid.append(_score(task, logits[scored], y[scored], monitor, strength))
        held_logits.append(logits)
        if len(grid) - 1 - _patience_from(grid, metric) >= PATIENCE:
            break
    return grid, held_logits


def _second_strengths(first_best: float) -> tuple[float, ...]:
    """The strengths of the second scaling's walk: whole decades from 1.5 above the first's best."""
    return STRENGTHS[max(0, STRENGTHS.index(first_best) - SECOND_ABOVE) :: SECOND_STEP]


def fit_head(task: Any, x: torch.Tensor, y: torch.Tensor, out_features: int, strength: float,
             init: tuple[torch.Tensor, torch.Tensor] | None = None, *,
             scaling: Scaling = Scaling.PER_FEATURE) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One L2-penalised full-batch fit at `strength` on features scaled by `scaling`.

    Args:
        task: the task (its `loss` is minimised).
        x: `[N, D]` features.
        y: targets, as `task.encode` makes them.
        out_features: the head's output size.
        strength: the L2 strength on the scaled features' weights.
        init: (weight, bias) on the scaled features to start from.
        scaling: the feature scaling (folded into the result).

    Returns:
        (weight `[C, D]`, bias `[C]`) in the original feature units.

    Example:
        >>> w, b = fit_head(task, x, y, 4, 1e-2, scaling=Scaling.GLOBAL)
    """
    mean, scale = _scaler(x, scaling)
    w, b = _lbfgs(task, (x - mean) / scale, y, out_features, strength, init)
    return _fold(w, b, mean, scale)


def _scaler(x: torch.Tensor, scaling: Scaling) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean `[D]`, scale `[D]`) of `x` under `scaling`."""
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    if scaling is Scaling.GLOBAL:  # one scalar: the RMS of the centred features, so that E[z^2] = 1 over all entries
        return mean, torch.full_like(std, max(float(std.square().mean().sqrt()), 1e-6))
    # A (nearly) constant feature is not blown up: dividing by a tiny std would make huge folded
    # weights whose cancellation against the bias costs float32 precision (and it is mostly noise).
    floor = max(float(std.median()) * 1e-2, 1e-6)
    return mean, torch.clamp(std, min=floor)


def _fold(w: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`W ((x - mean) / scale) + b` as `W' x + b'`."""
    w_raw = w / scale
    return w_raw, b - w_raw @ mean


def _lbfgs(task: Any, z: torch.Tensor, y: torch.Tensor, out_features: int, strength: float,
           init: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Minimise mean task loss + strength/2 ||W||^2 on scaled features `z` with full-batch L-BFGS.

    A plain two-loop L-BFGS (history `HISTORY`) with a backtracking Armijo line search, written
    here rather than `torch.optim.LBFGS`: that one's first `step` imports `torch._dynamo` (~1.4 CPU
    s, more than the whole solve), and the problem is strictly convex in W (strength > 0), so every
    curvature pair `s.y` is positive and a simple line search suffices."""
    c, d = out_features, z.shape[1]
    theta = torch.zeros(c * d + c) if init is None else torch.cat([init[0].reshape(-1), init[1]])

    def objective(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = t.detach().requires_grad_(True)
        w, b = t[: c * d].view(c, d), t[c * d :]
        with torch.enable_grad():
            f = task.loss(z @ w.T + b, y) + 0.5 * strength * (w * w).sum()
            (g,) = torch.autograd.grad(f, t)
        return f.detach(), g

    f, g = objective(theta)
    pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / y.s), oldest first
    for it in range(MAX_ITER):
        if float(g.abs().max()) <= TOL_GRAD:
            break
        direction = _two_loop(g, pairs)
        step = min(1.0, 1.0 / float(g.abs().sum())) if not pairs else 1.0  # the first step: torch's choice
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction (lost curvature): restart from steepest descent
            pairs.clear()
            direction, slope = -g, -float(g @ g)
        for _ in range(30):  # backtrack until sufficient decrease (Armijo, c1 = 1e-4)
            f_new, g_new = objective(theta + step * direction)
            if float(f_new) <= float(f) + 1e-4 * step * slope:
                break
            step *= 0.5
        s_k, y_k = step * direction, g_new - g
        ys = float(y_k @ s_k)
        if ys > 1e-10:
            pairs.append((s_k, y_k, 1.0 / ys))
            if len(pairs) > HISTORY:
                pairs.pop(0)
        theta, g, change = theta + s_k, g_new, abs(float(f_new) - float(f))
        f = f_new
        if change < TOL_CHANGE:
            break
    return theta[: c * d].view(c, d).clone(), theta[c * d :].clone()


def _two_loop(g: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor, float]]) -> torch.Tensor:
    """The L-BFGS direction `-H g` from the curvature pairs (Nocedal & Wright, algorithm 7.4)."""
    q = -g.clone()
    alphas = []
    for s_k, y_k, rho in reversed(pairs):
        a = rho * float(s_k @ q)
        q.add_(y_k, alpha=-a)
        alphas.append(a)
    if pairs:
        s_k, y_k, rho = pairs[-1]
        q.mul_(1.0 / (rho * float(y_k @ y_k)))  # initial Hessian: (s.y / y.y) I
    for (s_k, y_k, rho), a in zip(pairs, reversed(alphas)):
        q.add_(s_k, alpha=a - rho * float(y_k @ q))
    return q


def _fold_ids(y: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Fold of each row: stratified by class for class-index targets, else a seeded shuffle."""
    gen = torch.Generator().manual_seed(seed)
    n = len(y)
    folds = torch.empty(n, dtype=torch.long)
    if y.ndim == 1 and not torch.is_floating_point(y):
        offset = 0
        for c in torch.unique(y):
            rows = torch.nonzero(y == c).flatten()
            rows = rows[torch.randperm(len(rows), generator=gen)]
            folds[rows] = (torch.arange(len(rows)) + offset) % k
            offset += len(rows)
    else:
        folds[torch.randperm(n, generator=gen)] = torch.arange(n) % k
    return folds


def _score(task: Any, logits: torch.Tensor, y: torch.Tensor, monitor: str, strength: float) -> dict[str, float]:
    with torch.no_grad():
        loss = float(task.loss(logits, y))
        rows, kept = task.collect(logits, y)
    scores = task.epoch_metrics(rows.numpy(), kept.numpy())
    value = loss if monitor == "loss" else float(scores.get(monitor, float("nan")))
    return {"strength": strength, "score": value, "loss": loss}


def _patience_from(grid: list[dict[str, Any]], metric: Any) -> int:
    """Index the walk's patience counts from: the first strength reaching the best monitor score
    (the loss breaks no ties here: on separable data it keeps falling as the penalty weakens, the
    score does not), or the last strength of a flat start that holds the best score."""
    sign = 1.0 if metric is None or metric.higher_is_better else -1.0
    keys = [sign * g["score"] if np.isfinite(g["score"]) else -np.inf for g in grid]
    first = keys.index(max(keys))
    flat = next((i for i, k in enumerate(keys) if k != keys[0]), len(keys))  # length of the flat start
    return flat - 1 if first < flat else first


def _best(grid: list[dict[str, Any]], metric: Any) -> int:
    """Index of the best entry: the monitor metric, then the lower loss, then the earlier one (the
    stronger penalty within a walk, the preferred scaling across walks)."""
    sign = 1.0 if metric is None or metric.higher_is_better else -1.0
    keys = [(sign * g["score"] if np.isfinite(g["score"]) else -np.inf, -g["loss"], -i) for i, g in enumerate(grid)]
    return max(range(len(grid)), key=lambda i: keys[i])

