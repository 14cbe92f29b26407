"""`--strategy` values: parsing and the plain dataclass (no torch import, so the CLI starts fast)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from graftkit.errors import ConfigError

STRATEGY_NAMES = ("linear-probe", "finetune", "partial:N", "gradual", "lora", "contrastive", "auto")


@dataclass(frozen=True)
class Strategy:
    """A parsed `--strategy` value."""

    kind: str
    """`linear-probe`, `finetune`, `partial`, `gradual`, `lora`, `contrastive` (SetFit-style: the body
    trained on pairs of labelled texts with a cosine-similarity loss, then the probe; see
    `training/contrastive.py`), or `auto` (resolved by `fit()` into one
    of the others before training; see `strategies/auto.py`)."""
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
    if text in ("linear-probe", "finetune", "gradual", "lora", "contrastive", "auto"):
        return Strategy(text)
    if text.startswith("partial:"):
        n = text.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--strategy {text!r}: N in partial:N must be a positive integer, e.g. partial:2")
        return Strategy("partial", int(n))
    close = difflib.get_close_matches(text, ["linear-probe", "finetune", "partial:2", "gradual", "lora", "contrastive", "auto"], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"--strategy {text!r} is not one of {', '.join(STRATEGY_NAMES)}{hint}")
