"""Which layer groups train in each epoch, freezing, and frozen normalisation statistics."""

from __future__ import annotations

from torch import nn

from graftkit.strategies.spec import Strategy

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def trainable_group_count(strategy: Strategy, n_groups: int, epoch: int) -> int:
    """How many of the last `n_groups` backbone groups train in `epoch` (0-based).

    `gradual` is ULMFiT's schedule: the head alone in epoch 0, then one more group per epoch.
    """
    if strategy.kind == "linear-probe":
        return 0
    if strategy.kind in ("finetune", "contrastive"):  # contrastive: its pair stage trains the whole body
        return n_groups
    if strategy.kind == "partial":
        return min(strategy.n or 0, n_groups)
    return min(epoch, n_groups)


def freeze_layer_groups(groups: list[list[nn.Module]], n_trainable: int) -> None:
    """Freeze every group but the last `n_trainable` (groups are ordered input → output)."""
    n_frozen = len(groups) - n_trainable
    for i, group in enumerate(groups):
        for module in group:
            for p in module.parameters():
                p.requires_grad_(i >= n_frozen)


def set_frozen_norms_eval(groups: list[list[nn.Module]], n_trainable: int) -> None:
    """Keep BatchNorm running statistics of frozen groups frozen: call after `model.train()`."""
    for group in groups[: len(groups) - n_trainable]:
        for module in group:
            for m in module.modules():
                if isinstance(m, _NORMS):
                    m.eval()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen
