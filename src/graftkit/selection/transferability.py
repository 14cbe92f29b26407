"""Transferability scores: how well a frozen backbone's features suit a labelled target task.

All scores take plain numpy arrays — features `[N, D]` from a frozen backbone (cached by
`training/features.py`) and integer labels `[N]` — so they cost seconds after the one feature
pass, never a training run. Higher is better for every score.

| score | needs | what it measures |
|---|---|---|
| `logme` | features | log marginal evidence of a Bayesian linear model from features to one-hot labels (You et al. 2021) |
| `h_score` | features | class separation: `tr(cov(f)^-1 cov(E[f|y]))` with a shrunk covariance (Bao et al. 2019; Ibrahim et al. 2022) |
| `nce` | source-classifier probabilities | negative conditional entropy of target labels given the source's predicted label (Tran et al. 2019) |
| `leep` | source-classifier probabilities | log expected empirical prediction (Nguyen et al. 2020) |
| `kfold_probe_accuracy` | features | mean held-out accuracy of a logistic-regression probe over stratified folds |

NCE and LEEP need the backbone's original classifier (ImageNet for the built-in and timm image
models; `selection.rank` finds it); a backbone without one gets no NCE/LEEP, with the reason.
"""

from __future__ import annotations

import numpy as np

__all__ = ["logme", "h_score", "nce", "leep", "kfold_probe_accuracy"]

_EPS = 1e-5


def _check(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if f.ndim != 2 or f.shape[0] != y.shape[0]:
        raise ValueError(f"features must be [N, D] with N = len(labels) = {y.shape[0]}; got {list(f.shape)}")
    if y.size == 0:
        raise ValueError("cannot score zero samples")
    if y.min() < 0:
        raise ValueError(f"labels must be class indices >= 0; got min {y.min()}")
    return f, y


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021).

    For each class `k`, a Bayesian linear model `y_k = F w + e` with prior `w ~ N(0, 1/α I)` and
    noise `e ~ N(0, 1/β)` is fitted by maximising its marginal evidence `p(y_k | F, α, β)` over
    `α, β` with MacKay's fixed-point updates:

        γ = Σ_i β σ_i / (α + β σ_i)          (σ_i: eigenvalues of FᵀF)
        m = β A⁻¹ Fᵀ y,   A = α I + β FᵀF
        α ← γ / |m|²,     β ← (N − γ) / |y − F m|²

    The score is the mean over classes of the maximised log evidence divided by `N`:

        L/N = [D/2 log α + N/2 log β − ½ Σ_i log(α + β σ_i) − β/2 |y − Fm|² − α/2 |m|² − N/2 log 2π] / N

    One thin SVD `F = U S Vᵀ` serves every class and iteration: with `z = Uᵀ y`, `|m|²` and
    `|y − Fm|²` are sums over the singular values (no D×D inverse), and all classes iterate
    together as vectors. Features are used as they are (no centring), as in the paper.

    Args:
        features: `[N, D]` features.
        labels: `[N]` integer class labels.
        max_iter: Upper bound on fixed-point iterations (it converges in a handful).
        tol: Stop when every class's `α/β` changes by less than this fraction.

    Returns:
        The LogME score (higher is better; typically between -2 and 2).

    Raises:
        ValueError: Shapes disagree or there are no samples.

    Example:
        >>> logme(np.random.randn(100, 8), np.random.randint(0, 3, 100))  # doctest: +SKIP
        -0.71
    """
    f, y = _check(features, labels)
    n, d = f.shape
    classes = np.unique(y)
    targets = (y[:, None] == classes[None, :]).astype(np.float64)  # (N, K) one-hot
    u, s, _ = np.linalg.svd(f, full_matrices=False)  # (N, r), (r,)
    sigma = s**2  # (r,) non-zero eigenvalues of FᵀF (the other D - r are zero)
    z = u.T @ targets  # (r, K): targets in the column space of F
    z2 = z**2
    # Part of each target outside the column space of F: no weight vector can fit it.
    outside = np.maximum((targets**2).sum(0) - z2.sum(0), 0.0)  # (K,)
    k = targets.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    for _ in range(max_iter):
        denom = alpha[None, :] + beta[None, :] * sigma[:, None]  # (r, K)
        gamma = (beta[None, :] * sigma[:, None] / denom).sum(0)
        m2 = (beta[None, :] ** 2 * sigma[:, None] * z2 / denom**2).sum(0)  # |m|²
        res2 = outside + (alpha[None, :] ** 2 * z2 / denom**2).sum(0)  # |y − F m|²
        new_alpha = gamma / (m2 + _EPS)
        new_beta = (n - gamma) / (res2 + _EPS)
        lam, new_lam = alpha / beta, new_alpha / new_beta
        alpha, beta = new_alpha, new_beta
        if np.all(np.abs(new_lam - lam) / lam < tol):
            break
    denom = alpha[None, :] + beta[None, :] * sigma[:, None]
    m2 = (beta[None, :] ** 2 * sigma[:, None] * z2 / denom**2).sum(0)
    res2 = outside + (alpha[None, :] ** 2 * z2 / denom**2).sum(0)
    log_det_a = np.log(denom).sum(0) + (d - sigma.size) * np.log(alpha)  # log|A| over all D directions
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * log_det_a
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(np.mean(evidence / n))


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score (Bao et al. 2019) with a Ledoit-Wolf shrunk covariance (Ibrahim et al. 2022).

    `tr(cov(f)⁻¹ cov(E[f | y]))`: the share of feature variance explained by the class means,
    measured in the metric of the feature covariance. The plain estimate inverts `cov(f)`, which
    is singular whenever `N ≤ D` (a few hundred images, 1,280 features); the shrunk estimate is
    well-conditioned and ranks models more reliably in that regime. As in Ibrahim et al., the
    between-class covariance is scaled by the same `1 − a` as the data term of the shrunk
    covariance `(1 − a) cov(f) + a μ I`.

    Args:
        features: `[N, D]` features.
        labels: `[N]` integer class labels.

    Returns:
        The H-score (higher is better; at most the number of classes − 1).

    Example:
        >>> h_score(np.random.randn(100, 8), np.random.randint(0, 3, 100))  # doctest: +SKIP
        0.05
    """
    from sklearn.covariance import ledoit_wolf

    f, y = _check(features, labels)
    f = f - f.mean(0, keepdims=True)
    cov_f, shrinkage = ledoit_wolf(f, assume_centered=True)  # (D, D): (1 − a) S + a μ I
    classes, inverse = np.unique(y, return_inverse=True)
    means = np.zeros((classes.size, f.shape[1]))
    np.add.at(means, inverse, f)
    means /= np.bincount(inverse)[:, None]
    g = means[inverse]  # (N, D): each sample replaced by its class mean
    cov_g = (1 - shrinkage) * (g.T @ g) / f.shape[0]  # shrunk like cov_f's data term, so H ≤ K − 1 holds
    return float(np.trace(np.linalg.solve(cov_f, cov_g)))


def _joint(source_probs: np.ndarray, labels: np.ndarray, hard: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, y = _check(source_probs, labels)
    if np.any(p < 0) or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise ValueError("source_probs must be probabilities: non-negative rows that sum to 1 (apply softmax first)")
    if hard:
        p = np.eye(p.shape[1])[p.argmax(1)]
    _, inverse = np.unique(y, return_inverse=True)
    targets = np.eye(inverse.max() + 1)[inverse]  # (N, K)
    joint = targets.T @ p / y.size  # (K target classes, Z source classes): P(y, z)
    return joint, p, inverse


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned Representations", ICML 2020).

    With θ(x) the source classifier's probabilities over its Z classes, the empirical joint
    `P(y, z) = 1/N Σ_i θ(x_i)_z [y_i = y]` gives `P(y | z)`; LEEP is the mean log-likelihood of
    the "expected empirical predictor" `Σ_z P(y_i | z) θ(x_i)_z` on the labelled data.

    Args:
        source_probs: `[N, Z]` source-classifier probabilities (e.g. ImageNet softmax, Z = 1000).
        labels: `[N]` integer target labels.

    Returns:
        LEEP (a log-likelihood: ≤ 0, higher is better).

    Example:
        >>> leep(np.full((4, 2), 0.5), np.array([0, 1, 0, 1]))
        -0.6931471805599453
    """
    joint, p, inverse = _joint(source_probs, labels, hard=False)
    conditional = joint / np.maximum(joint.sum(0, keepdims=True), 1e-12)  # (K, Z): P(y | z)
    eep = p @ conditional.T  # (N, K)
    return float(np.mean(np.log(eep[np.arange(inverse.size), inverse] + 1e-12)))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """NCE (Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019).

    The negative conditional entropy `−H(Y | Z)` of the target label given the source
    classifier's predicted (argmax) label: 0 when the source prediction determines the target
    label, `−log K` when it says nothing.

    Args:
        source_probs: `[N, Z]` source-classifier probabilities (or scores; only the argmax is used).
        labels: `[N]` integer target labels.

    Returns:
        NCE (≤ 0, higher is better).

    Example:
        >>> nce(np.eye(2)[[0, 1, 0, 1]], np.array([0, 1, 0, 1]))
        0.0
    """
    joint, _, _ = _joint(source_probs, labels, hard=True)
    pz = joint.sum(0, keepdims=True)  # (1, Z)
    mask = joint > 0
    conditional = np.where(mask, joint / np.maximum(pz, 1e-12), 1.0)
    return float(np.sum(joint[mask] * np.log(conditional[mask])))


def kfold_probe_accuracy(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0, c: float = 1.0) -> float:
    """Mean held-out accuracy of a linear probe (standardised features + L2 logistic regression).

    Stratified `folds`-fold cross-validation (fewer folds when the smallest class has fewer
    samples; at least 2). Each fold fits scikit-learn's `LogisticRegression` (lbfgs, `C=c`).

    Args:
        features: `[N, D]` features.
        labels: `[N]` integer class labels; every class needs at least 2 samples.
        folds: Number of folds.
        seed: Seeds the fold assignment.
        c: Inverse L2 regularisation strength.

    Returns:
        Mean accuracy over the folds, in [0, 1].

    Raises:
        ValueError: A class has fewer than 2 samples.

    Example:
        >>> kfold_probe_accuracy(feats, labels, folds=5)  # doctest: +SKIP
        0.83
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    f, y = _check(features, labels)
    smallest = np.bincount(y)[np.unique(y)].min()
    k = min(folds, int(smallest))
    if k < 2:
        raise ValueError("every class needs at least 2 samples for a cross-validated probe")
    accuracies = []
    for train, test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(f, y):
        scaler = StandardScaler().fit(f[train])
        clf = LogisticRegression(C=c, max_iter=300)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a few hundred lbfgs steps are plenty for ranking
            clf.fit(scaler.transform(f[train]), y[train])
        accuracies.append(float((clf.predict(scaler.transform(f[test])) == y[test]).mean()))
    return float(np.mean(accuracies))
