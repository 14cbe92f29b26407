"""Learning-rate schedules as step-wise multipliers of each group's peak rate."""

from __future__ import annotations

import math

import torch


def lr_multiplier(step: int, total: int, *, schedule: str, warmup_fraction: float) -> float:
    """Multiplier in [0, 1] for optimizer step `step` of `total`.

    - `cosine`: linear warm-up over `warmup_fraction` of the steps, then cosine decay to 0.
    - `onecycle`: 30 % linear warm-up from 0.04, then cosine to 0 (Smith's one-cycle shape).
    - `constant`: linear warm-up, then flat.
    """
    total = max(total, 1)
    frac = warmup_fraction if schedule != "onecycle" else 0.3
    warmup = int(round(frac * total))
    if schedule == "onecycle" and step < warmup:
        return 0.04 + 0.96 * step / max(warmup, 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def optimizer_steps(batches_per_epoch: int, *, epochs: int, accumulate: int = 1) -> int:
    """Optimizer steps of a run: every `accumulate` batches, and at each epoch's end
    (`train_loop` never carries gradients into the next epoch)."""
    return epochs * math.ceil(batches_per_epoch / accumulate)


def exponential_schedule(optimizer: torch.optim.Optimizer, start: float, end: float, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplies each group's rate by `start` at the first step up to `end` at step `steps - 1`,
    evenly on a log scale (lr-find's sweep; its state dict holds no code either)."""
    ratio = end / start
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: start * ratio ** (min(step, steps - 1) / max(steps - 1, 1)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, *, schedule: str, warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` over all parameter groups; its state dict holds no code (safe to checkpoint)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, schedule=schedule, warmup_fraction=warmup_fraction)
    )
