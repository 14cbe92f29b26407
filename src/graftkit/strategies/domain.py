"""Domain-adaptation building blocks in plain torch: gradient reversal, the DANN coefficient
schedule, Deep CORAL, domain heads (DANN, CDAN's multilinear conditioning), entropy, AdaBN.

The loss terms that use them, and the target-domain data they need, live in `training/adapt.py`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn
from torch.nn import functional as F


class _GradientReverse(torch.autograd.Function):
    """Identity forward; the gradient times `-coefficient` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """`x` unchanged, but gradients flowing back through it are multiplied by `-coefficient`.

    Example:
        >>> x = torch.ones(2, requires_grad=True); reverse_gradient(x, 0.5).sum().backward(); x.grad
        tensor([-0.5000, -0.5000])
    """
    return _GradientReverse.apply(x, float(coefficient))


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN's adaptation coefficient `2 / (1 + exp(-gamma p)) - 1` at training progress `p` in
    [0, 1]: 0 at the start (the domain head is still random), rising to ~1 (Ganin et al. 2016, §5.2.2).

    Example:
        >>> round(dann_coefficient(0.0), 3), round(dann_coefficient(1.0), 3)
        (0.0, 1.0)
    """
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko 2016): `||C_s - C_t||_F^2 / (4 d^2)` between the feature
    covariances of a source and a target batch `[B, d]`; 0 for batches of equal covariance."""
    d = source.shape[1]
    cs, ct = _covariance(source.float()), _covariance(target.float())
    return ((cs - ct) ** 2).sum() / (4.0 * d * d)


def _covariance(x: torch.Tensor) -> torch.Tensor:
    n = max(x.shape[0] - 1, 1)
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / n


def entropy(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-row Shannon entropy (nats) of probabilities `[B, C]`."""
    return -(probs * torch.log(probs + eps)).sum(dim=1)


class DomainHead(nn.Module):
    """The domain discriminator: a small MLP from `in_features` to one logit (source = 1)."""

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class MultilinearMap(nn.Module):
    """CDAN's conditioning (Long et al. 2018): the outer product `f ⊗ g` of features `[B, d]` and
    class probabilities `[B, C]`, flattened; above `max_dim` entries, the randomised multilinear
    map `(R_f f) ⊙ (R_g g) / sqrt(dim)` with fixed random Gaussian matrices instead."""

    def __init__(self, features: int, classes: int, max_dim: int = 4096, dim: int = 1024, seed: int = 0) -> None:
        super().__init__()
        self.randomized = features * classes > max_dim
        self.out_features = dim if self.randomized else features * classes
        if self.randomized:
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("rf", torch.randn(features, dim, generator=g), persistent=False)
            self.register_buffer("rg", torch.randn(classes, dim, generator=g), persistent=False)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            return (f @ self.rf) * (g @ self.rg) / math.sqrt(self.out_features)
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)


def domain_loss(logits_source: torch.Tensor, logits_target: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Binary cross-entropy of the domain head (source = 1, target = 0), each domain weighing half;
    `weights` (CDAN+E) reweight the samples of each domain."""
    ws, wt = weights if weights is not None else (None, None)
    ls = F.binary_cross_entropy_with_logits(logits_source.float(), torch.ones_like(logits_source, dtype=torch.float32), weight=ws)
    lt = F.binary_cross_entropy_with_logits(logits_target.float(), torch.zeros_like(logits_target, dtype=torch.float32), weight=wt)
    return 0.5 * (ls + lt)


def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """CDAN+E's sample weights `1 + exp(-H(p))`, scaled to mean 1: confident predictions count more."""
    w = 1.0 + torch.exp(-entropy(probs.detach().float()))
    return w / w.mean()


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of `model` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[Any], forward: Any) -> int:
    """AdaBN (Li et al. 2016): replace every BatchNorm's running mean and variance by the
    statistics of the target data, leaving all weights as they are.

    Args:
        model: The network; its BatchNorm layers are reset and re-estimated.
        batches: Target inputs, already on the model's device.
        forward: `forward(inputs)` runs the network (its output is ignored).

    Returns:
        The number of BatchNorm layers re-estimated (0: nothing to adapt).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all target batches
        m.train()
    try:
        for inputs in batches:
            forward(inputs)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.train(mode)
    return len(layers)
