"""Discriminative (layer-wise) learning rates."""

from __future__ import annotations

from typing import Any

from torch import nn


def _split_decay(params: list[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    # Biases and normalisation weights (1-d) get no weight decay, as in timm and nanoGPT.
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return decay, no_decay


def layerwise_lr_groups(
    groups: list[list[nn.Module]],
    head: nn.Module,
    *,
    lr: float,
    backbone_lr_scale: float,
    decay: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head at `lr`, backbone group k from the top at
    `lr * backbone_lr_scale * decay**k`.

    Every backbone group is included, frozen or not: AdamW skips parameters without a gradient,
    so gradual unfreezing only flips `requires_grad` and never rebuilds the optimizer.
    """
    out: list[dict[str, Any]] = []

    def add(params: list[nn.Parameter], group_lr: float, name: str) -> None:
        decay_p, no_decay_p = _split_decay(params)
        if decay_p:
            out.append({"params": decay_p, "lr": group_lr, "weight_decay": weight_decay, "name": name})
        if no_decay_p:
            out.append({"params": no_decay_p, "lr": group_lr, "weight_decay": 0.0, "name": name + ".no_decay"})

    add(list(head.parameters()), lr, "head")
    for k, group in enumerate(reversed(groups)):
        params = [p for m in group for p in m.parameters()]
        add(params, lr * backbone_lr_scale * decay**k, f"backbone.{len(groups) - 1 - k}")
    return out
