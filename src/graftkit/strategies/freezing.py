"""Which layer groups train: strategy parsing, freezing, and frozen normalisation statistics."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from torch import nn

from graftkit.errors import ConfigError

STRATEGY_NAMES = ("linear-probe", "finetune", "partial:N", "gradual")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Strategy:
    """A parsed `--strategy` value."""

    kind: str
    """`linear-probe`, `finetune`, `partial` or `gradual`."""
    n: int | None = None
    """For `partial`: how many of the last layer groups train."""

    def __str__(self) -> str:
        return f"partial:{self.n}" if self.kind == "partial" else self.kind


def parse_strategy(text: str) -> Strategy:
    """Parse `--strategy`.

    Raises:
        ConfigError: for an unknown name or a bad `partial:N`.

    Example:
        >>> parse_strategy("partial:2")
        Strategy(kind='partial', n=2)
    """
    if text in ("linear-probe", "finetune", "gradual"):
        return Strategy(text)
    if text.startswith("partial:"):
        n = text.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--strategy {text!r}: N in partial:N must be a positive integer, e.g. partial:2")
        return Strategy("partial", int(n))
    close = difflib.get_close_matches(text, ["linear-probe", "finetune", "partial:2", "gradual"], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"--strategy {text!r} is not one of {', '.join(STRATEGY_NAMES)}{hint}")


def trainable_group_count(strategy: Strategy, n_groups: int, epoch: int) -> int:
    """How many of the last `n_groups` backbone groups train in `epoch` (0-based).

    `gradual` is ULMFiT's schedule: the head alone in epoch 0, then one more group per epoch.
    """
    if strategy.kind == "linear-probe":
        return 0
    if strategy.kind == "finetune":
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
