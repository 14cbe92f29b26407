"""The training loop: one plain function, read top to bottom.

Everything task-specific comes from `task` (loss, metrics), everything hardware-specific from
`engine` (device, precision, backward), everything strategy-specific from `options.prepare_epoch`
(which groups train this epoch). Callbacks observe a read-only `LoopState` and may only answer
with a `Decision`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from graftkit.engine import Engine, eval_mode
from graftkit.engine.progress import EpochProgress


@dataclass(frozen=True)
class LoopState:
    """What callbacks see. Treat as read-only."""

    epoch: int  # 0-based epoch that just started or ended
    epochs: int
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_score: float | None
    improved: bool
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    best_state: dict[str, torch.Tensor] | None


@dataclass(frozen=True)
class Decision:
    """A callback's answer: stop training after this epoch."""

    stop: bool = False
    reason: str = ""


class Callback(Protocol):
    def on_epoch_end(self, state: LoopState) -> Decision | None: ...


@dataclass
class LoopOptions:
    """Settings of one loop run that are not objects (see `train_loop`)."""

    epochs: int
    monitor: str = "accuracy"
    grad_clip: float | None = None
    seed: int = 0
    prepare_epoch: Callable[[int], None] | None = None
    """Called at each epoch start after `model.train()`: sets which groups train (strategy)."""
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    """Applied to each training batch, e.g. mixup/cutmix."""
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    unit: str = "img"
    progress: bool = True


@dataclass
class LoopResult:
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_score: float | None
    best_state: dict[str, torch.Tensor] | None
    stopped_early: str | None
    seconds: float


LOWER_IS_BETTER = ("loss", "mae", "rmse", "perplexity")


def _better(score: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return score < best if monitor in LOWER_IS_BETTER else score > best


def train_loop(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    task: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    engine: Engine,
    options: LoopOptions,
    callbacks: Iterable[Callback] = (),
) -> LoopResult:
    """Train `model` for `options.epochs`, validating each epoch and keeping the best weights.

    Returns:
        The history (one dict per epoch), the best epoch (0-based) and its weights.
    """
    history = list(options.history)
    best_epoch, best_score, best_state = options.best_epoch, options.best_score, options.best_state
    stopped: str | None = None
    t_start = time.perf_counter()

    for epoch in range(options.start_epoch, options.epochs):
        # Reseed per epoch: the same seed gives the same shuffling, augmentation and dropout,
        # and a resumed run continues exactly where an uninterrupted one would be.
        torch.manual_seed(options.seed + epoch)
        if getattr(train_loader, "generator", None) is not None:
            train_loader.generator.manual_seed(options.seed + epoch)
        model.train()
        if options.prepare_epoch is not None:
            options.prepare_epoch(epoch)

        t0 = time.perf_counter()
        loss_sum = torch.zeros(())
        score_sum, score_count = torch.zeros(()), 0  # the task's running training metric
        seen = 0
        bar = EpochProgress(f"epoch {epoch + 1}/{options.epochs}", total=len(train_loader), unit=options.unit, enabled=options.progress)
        with bar:
            for inputs, targets in train_loader:
                inputs, targets = engine.to_device((inputs, targets))
                if options.batch_transform is not None:
                    inputs, targets = options.batch_transform(inputs, targets)
                with engine.autocast():
                    logits = model(inputs)  # (B, C); (B, T, V) for language models
                loss = task.loss(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                engine.backward(loss)
                if options.grad_clip is not None:
                    engine.clip_grad_norm(model, options.grad_clip)
                optimizer.step()
                scheduler.step()

                n = len(targets)
                seen += n
                loss_sum += loss.detach().float().cpu() * n
                s, c = task.batch_score(logits.detach(), targets)
                score_sum += s.float().cpu()
                score_count += c
                bar.advance(n, loss=float(loss_sum) / seen, **{task.train_metric: float(score_sum) / max(score_count, 1)})

        train_seconds = time.perf_counter() - t0
        seen_t = engine.reduce_sum(torch.tensor(float(seen)))
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(engine.reduce_sum(loss_sum) / seen_t),
            f"train_{task.train_metric}": float(engine.reduce_sum(score_sum) / engine.reduce_sum(torch.tensor(float(max(score_count, 1))))),
            "lr": optimizer.param_groups[0]["lr"],
            "throughput": seen / max(train_seconds, 1e-9),
        }
        probs, targets_np, val_loss = predict_probs(model, val_loader, engine, task)
        row["val_loss"] = val_loss
        row.update({f"val_{k}": v for k, v in task.epoch_metrics(probs, targets_np).items()})
        row["seconds"] = time.perf_counter() - t0

        score = row[f"val_{options.monitor}"]
        improved = _better(score, best_score, options.monitor)
        if improved:
            best_epoch, best_score = epoch, score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["best"] = improved
        history.append(row)
        EpochProgress.summary(row, options.epochs, unit=options.unit)

        state = LoopState(epoch, options.epochs, history, best_epoch, best_score, improved, model, optimizer, scheduler, best_state)
        decisions = [cb.on_epoch_end(state) for cb in callbacks]
        stop = next((d for d in decisions if d is not None and d.stop), None)
        if stop is not None:
            stopped = stop.reason
            break

    return LoopResult(history, best_epoch, best_score, best_state, stopped, time.perf_counter() - t_start)


@torch.inference_mode()
def predict_probs(model: nn.Module, loader: Iterable, engine: Engine, task: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """The task's per-sample outputs over `loader` (`task.collect`: softmax probabilities `[N, C]`
    for classification), the targets and the mean loss.

    Rows come in the loader's order; targets travel with their batches, so metrics never depend
    on it (text loaders sort by length: `TextLoader.order` maps rows back to samples).
    """
    outputs, targets, loss_sum, n = [], [], 0.0, 0
    with eval_mode(model):
        for inputs, y in loader:
            inputs, y = engine.to_device((inputs, y))
            with engine.autocast():
                logits = model(inputs)
            logits = logits.float()
            loss_sum += float(task.loss(logits, y)) * len(y)
            n += len(y)
            rows, kept = task.collect(logits, y)
            outputs.append(rows.cpu())
            targets.append(kept.cpu())
    if n == 0:
        return np.zeros((0, max(task.num_classes, 1)), np.float32), np.zeros((0,), np.int64), float("nan")
    return torch.cat(outputs).numpy(), torch.cat(targets).numpy(), loss_sum / n
