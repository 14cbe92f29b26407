"""Regularised fine-tuning: loss terms that keep a fine-tuned model close to what it learned before.

Three methods, each a loss term (`training/objective.py: LossTerm`) added to the task loss of every
training batch (`graft train --strategy finetune --regularize METHOD [--regularize-strength S]`):

- `l2sp` (Li, Grandvalet & Davoine, ICML 2018, "Explicit inductive bias for transfer learning"):
  `alpha/2 * ||w_backbone - w_pretrained||^2`, the squared distance of every backbone weight to its
  starting point. The paper's second part, `beta/2 * ||w_head||^2` on the new head, is the
  optimizer's weight decay on the head (`--weight-decay`, 0.01 by default: the paper's beta);
  the backbone's own weight decay (a pull towards zero) is switched off, as L2-SP replaces it.
- `bss` (Chen et al., NeurIPS 2019, "Catastrophic forgetting meets negative transfer: batch
  spectral shrinkage"): `eta * sum of the k smallest squared singular values` of the batch's pooled
  feature matrix `[B, D]`, with k = 1 as the paper recommends.
- `delta` (Li et al., ICLR 2019, "DELTA: deep learning transfer using feature map with attention"):
  `alpha * mean over the batch of ||f(x) - f_pretrained(x)||^2`, the distance between the fine-tuned
  backbone's features and a frozen pretrained copy's on the same inputs. This is the plain feature
  version: the distance is taken on the backbone's pooled output features (the `forward_features`
  every modality has), without the paper's channel-attention weights and without intermediate maps.

Default strengths are the papers' (`DEFAULT_STRENGTH`); `benchmarks/regularize.py` measures them.
These classes read a batch through duck typing (`batch.model`, `batch.features`, `batch.inputs`), so
this layer imports nothing from `training/`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

REGULARIZERS = ("l2sp", "bss", "delta")
"""`--regularize` methods."""

DEFAULT_STRENGTH = {"l2sp": 0.1, "bss": 0.001, "delta": 0.01}
"""`--regularize-strength` when not given: L2-SP alpha 0.1 (Li et al. 2018), BSS eta 0.001 (Chen et
al. 2019), DELTA alpha 0.01 (Li et al. 2019)."""

BSS_K = 1
"""How many of the smallest singular values BSS shrinks (the paper's k = 1)."""


class L2SP:
    """`alpha/2 * sum ||w - w0||^2` over the backbone's floating-point parameters.

    Args:
        backbone: The backbone at its pretrained weights (they are copied now, as the anchor).
        alpha: Strength.
    """

    name = "l2sp"

    def __init__(self, backbone: nn.Module, alpha: float) -> None:
        self.alpha = float(alpha)
        self.anchor = [(p, p.detach().clone()) for p in backbone.parameters() if p.is_floating_point()]

    def distance(self) -> torch.Tensor:
        """`sum ||w - w0||^2` now (a scalar tensor, differentiable in the live weights)."""
        total = torch.zeros((), device=self.anchor[0][0].device) if self.anchor else torch.zeros(())
        for p, p0 in self.anchor:
            total = total + (p.float() - p0.float()).pow(2).sum()
        return total

    def __call__(self, batch: Any) -> torch.Tensor:
        return 0.5 * self.alpha * self.distance()


class BatchSpectralShrinkage:
    """`eta * sum of the k smallest squared singular values` of the batch features `[B, D]`.

    Args:
        eta: Strength.
        k: How many of the smallest singular values.
    """

    name = "bss"

    def __init__(self, eta: float, k: int = BSS_K) -> None:
        self.eta = float(eta)
        self.k = int(k)

    def __call__(self, batch: Any) -> torch.Tensor:
        sigma = torch.linalg.svdvals(batch.features.float())  # (min(B, D),) in descending order
        return self.eta * sigma[-self.k :].pow(2).sum()


class DeltaFeatures:
    """`alpha * mean_b ||f(x_b) - f0(x_b)||^2` against a frozen pretrained copy of the backbone.

    Args:
        backbone: The backbone at its pretrained weights (deep-copied now, frozen, in eval mode).
        alpha: Strength.
    """

    name = "delta"

    def __init__(self, backbone: nn.Module, alpha: float) -> None:
        self.alpha = float(alpha)
        self.reference = copy.deepcopy(backbone).eval().requires_grad_(False)  # not a submodule: model.train() leaves it in eval

    def __call__(self, batch: Any) -> torch.Tensor:
        with torch.no_grad():
            pretrained = self.reference.forward_features(batch.inputs)  # (B, D)
        diff = batch.features.float() - pretrained.float()
        return self.alpha * diff.pow(2).sum(dim=1).mean()


def regularizer(method: str, backbone: nn.Module, strength: float) -> Any:
    """The loss term of `method` for `backbone` (at its pretrained weights) and `strength`."""
    if method == "l2sp":
        return L2SP(backbone, strength)
    if method == "bss":
        return BatchSpectralShrinkage(strength)
    if method == "delta":
        return DeltaFeatures(backbone, strength)
    raise ValueError(f"unknown regularizer {method!r}")  # TrainConfig validated the name: an internal error
