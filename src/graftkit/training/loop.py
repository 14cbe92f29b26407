"""The training loop: one plain function, read top to bottom.

Everything task-specific comes from `task` (loss, metrics and their direction), everything
hardware-specific from `engine` (device, precision, backward, gradient sync), everything
strategy-specific from `options.prepare_epoch` (which groups train this epoch). Callbacks observe a
read-only `BatchState` after every batch and `LoopState` after every epoch, and may only answer
with a `Decision`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from graftkit.engine import Engine, eval_mode
from graftkit.engine.oom import OomBackoff
from graftkit.engine.progress import EpochProgress, info, warn
from graftkit.errors import TrainingDivergedError


@dataclass(frozen=True)
class LoopState:
    """What epoch callbacks see. Treat as read-only."""

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
class BatchState:
    """What batch callbacks see after every training batch (plain values: nothing to modify)."""

    epoch: int  # 0-based
    epochs: int
    batch: int  # 0-based index of the batch in this epoch
    batches: int  # batches per epoch
    step: int  # optimizer steps taken so far in the run, this batch's included
    stepped: bool  # this batch ended an optimizer step (always, unless accumulating)
    loss: float  # this batch's training loss (not divided for accumulation)
    lr: float  # learning rate of the first parameter group for this batch's step
    batch_size: int
    data_seconds: float  # waiting for this batch from the loader
    seconds: float  # this batch's forward, backward and optimizer step, synchronised


@dataclass(frozen=True)
class Decision:
    """A callback's answer: stop training (after this epoch; after a batch, at once)."""

    stop: bool = False
    reason: str = ""


class Callback(Protocol):
    """An epoch callback; it may also define `on_batch_end` (see `BatchCallback`). The loop asks
    each callback only the events it defines."""

    def on_epoch_end(self, state: LoopState) -> Decision | None: ...


class BatchCallback(Protocol):
    """A callback of every training batch (lr-find's recorder, auto's step timer)."""

    def on_batch_end(self, state: BatchState) -> Decision | None: ...


@dataclass
class LoopOptions:
    """Settings of one loop run that are not objects (see `train_loop`)."""

    epochs: int
    monitor: str = "accuracy"
    """Validation metric (a key of `task.metrics`) that picks the best epoch."""
    grad_clip: float | None = None
    accumulate: int = 1
    """Micro-batches per optimizer step (gradient accumulation)."""
    seed: int = 0
    prepare_epoch: Callable[[int], None] | None = None
    """Called at each epoch start after `model.train()`: sets which groups train (strategy)."""
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    """Applied to each training batch, e.g. mixup/cutmix."""
    objective: Callable[[nn.Module, Any, Any], tuple[torch.Tensor, torch.Tensor]] | None = None
    """`objective(model, inputs, targets) -> (loss, logits)` of one training batch, called under the
    engine's autocast, in place of `task.loss(model(inputs), targets)`: the seam where domain
    adaptation, regularised fine-tuning and multitask weighting add their terms (the logits feed the
    running training metric). Validation always uses `task.loss`."""
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    unit: str = "img"
    progress: bool = True
    """Show the live bar and print one line per epoch (off for lr-find's sweep and auto's timing)."""
    phase: str = "epoch"
    """What the progress lines call one pass (`head warm-up` for LP-FT's probe before fine-tuning)."""
    stop_on_divergence: bool = True
    """Stop when the loss becomes non-finite or explodes (`divergence`); off for lr-find's sweep,
    which drives the loss up on purpose and stops itself."""


@dataclass
class LoopResult:
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_score: float | None
    best_state: dict[str, torch.Tensor] | None
    stopped_early: str | None
    seconds: float
    diverged: bool = False
    """Training stopped because the loss became non-finite or exploded (`stopped_early` says how)."""
    batch_size_used: int | None = None
    """Samples per forward pass the run ended with: `--batch-size`, unless running out of device
    memory split the steps (`engine/oom.py`)."""


DIVERGED_FACTOR = 1e4
"""A training loss this many times the run's first one (or NaN / infinite) means training diverged."""


def divergence(loss: float, first: float | None, lr: float) -> str | None:
    """Why a training loss means the run diverged, naming `--lr`; None while it is fine."""
    if not math.isfinite(loss):
        return f"the training loss became {loss} (learning rate {lr:.3g}): lower --lr (e.g. by 10x)"
    if first is not None and first > 0 and loss > DIVERGED_FACTOR * first:
        return f"the training loss exploded from {first:.3g} to {loss:.3g} (learning rate {lr:.3g}): lower --lr (e.g. by 10x)"
    return None


def train_loop(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    *,
    task: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    engine: Engine,
    options: LoopOptions,
    callbacks: Iterable[Callback | BatchCallback] = (),
) -> LoopResult:
    """Train `model` for `options.epochs`, validating each epoch and keeping the best weights.

    With `options.accumulate = N`, gradients of N micro-batches add up before each optimizer and
    scheduler step (and the epoch's last step takes what is left): each loss is divided by the
    micro-batches of its step, so N batches of B train as one batch of N × B.

    Args:
        val_loader: None skips validation and best-weights tracking (lr-find's sweep, auto's timing).
        callbacks: `on_epoch_end(LoopState)` and/or `on_batch_end(BatchState)`; a "stop" after a
            batch ends training at once, without validating that epoch.

    Returns:
        The history (one dict per finished epoch), the best epoch (0-based) and its weights.
    """
    callbacks = list(callbacks)
    on_batch = [cb.on_batch_end for cb in callbacks if hasattr(cb, "on_batch_end")]
    on_epoch = [cb.on_epoch_end for cb in callbacks if hasattr(cb, "on_epoch_end")]
    metric = task.metrics[options.monitor] if val_loader is not None else None  # which way is better
    history = list(options.history)
    best_epoch, best_score, best_state = options.best_epoch, options.best_score, options.best_state
    stopped: str | None = None
    diverged: str | None = None  # why, naming --lr
    first_loss: float | None = None
    every = options.accumulate
    batches = len(train_loader)
    step = options.start_epoch * math.ceil(batches / every)  # every epoch ends on a step: exact on resume
    t_start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    # Out of device memory: the step is retried in chunks (one process; several must step alike).
    backoff = OomBackoff(enabled=getattr(engine, "processes", 1) == 1)

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
        bar = EpochProgress(f"{options.phase} {epoch + 1}/{options.epochs}", total=batches, unit=options.unit, enabled=options.progress)
        with bar:
            t_ready = time.perf_counter()
            for b, (inputs, targets) in enumerate(train_loader):
                t_batch = time.perf_counter()
                inputs, targets = engine.to_device((inputs, targets))
                if options.batch_transform is not None:
                    inputs, targets = options.batch_transform(inputs, targets)
                micro, step_now = _micro_batches(b, batches, every)

                def forward_backward(x: Any, y: Any, share: float) -> tuple[torch.Tensor, torch.Tensor]:
                    if options.objective is not None:
                        with engine.autocast():
                            loss, logits = options.objective(model, x, y)
                    else:
                        with engine.autocast():
                            logits = model(x)  # (B, C); (B, T, V) for language models
                        loss = task.loss(logits, y)
                    engine.backward(loss * share / micro)  # the mean over the step's micro-batches (and chunks)
                    return loss, logits

                with engine.accumulate(model, step=step_now):  # gradients sync across processes only before a step
                    first = b % every == 0  # the step's first micro-batch: its gradients start from None
                    loss, logits = backoff.run(inputs, targets, forward_backward, reset=(lambda: optimizer.zero_grad(set_to_none=True)) if first else None)
                lr = optimizer.param_groups[0]["lr"]
                if step_now:
                    if options.grad_clip is not None:
                        engine.clip_grad_norm(model, options.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1

                n = len(targets)
                value = float(loss.detach())  # .item() is a host sync: it waits for the step too
                why = divergence(value, first_loss, lr) if options.stop_on_divergence else None
                if why is not None:
                    diverged, stopped = why, f"diverged at epoch {epoch + 1}, batch {b + 1}"
                    break
                first_loss = value if first_loss is None else first_loss
                seen += n
                loss_sum += value * n
                s, c = task.batch_score(logits.detach(), targets)
                score_sum += s.float().cpu()
                score_count += c
                bar.advance(n, loss=float(loss_sum) / seen, **{task.train_metric: float(score_sum) / max(score_count, 1)})
                if on_batch:
                    now = time.perf_counter()
                    state = BatchState(epoch, options.epochs, b, batches, step, step_now, value, lr, n, t_batch - t_ready, now - t_batch)
                    stop = _first_stop(cb(state) for cb in on_batch)
                    if stop is not None:
                        stopped = stop.reason
                        break
                t_ready = time.perf_counter()
        if stopped is not None:  # a batch callback stopped mid-epoch, or the loss diverged: no validation
            break

        train_seconds = time.perf_counter() - t0
        seen_t = engine.reduce_sum(torch.tensor(float(seen)))
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(engine.reduce_sum(loss_sum) / seen_t),
            f"train_{task.train_metric}": float(engine.reduce_sum(score_sum) / engine.reduce_sum(torch.tensor(float(max(score_count, 1))))),
            "lr": optimizer.param_groups[0]["lr"],
            "throughput": seen / max(train_seconds, 1e-9),
        }
        improved = False
        if val_loader is not None:
            probs, targets_np, val_loss = predict_probs(model, val_loader, engine, task)
            if not math.isfinite(val_loss) and options.stop_on_divergence and "loss" in task.metrics:  # detection has no validation loss
                diverged, stopped = f"the validation loss became {val_loss}: lower --lr (e.g. by 10x)", f"diverged at epoch {epoch + 1}"
                break
            row["val_loss"] = val_loss
            row.update({f"val_{k}": v for k, v in task.epoch_metrics(probs, targets_np).items()})
            score = row[f"val_{options.monitor}"]
            improved = metric.better(score, best_score)
            if improved:
                best_epoch, best_score = epoch, score
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["seconds"] = time.perf_counter() - t0
        row["best"] = improved
        history.append(row)
        if options.progress:
            EpochProgress.summary(row, options.epochs, unit=options.unit, phase=options.phase)

        state = LoopState(epoch, options.epochs, history, best_epoch, best_score, improved, model, optimizer, scheduler, best_state)
        stop = _first_stop(cb(state) for cb in on_epoch)
        if stop is not None:
            stopped = stop.reason
            break

    if diverged is not None:
        if best_state is None:
            raise TrainingDivergedError(
                f"training {stopped} before any epoch gave usable weights: {diverged}, then train again (--overwrite replaces this run)."
            )
        stopped = f"{stopped}: {diverged}"
    if stopped is not None and options.progress:
        (warn if diverged else info)(f"stopped: {stopped}" + (f"; keeping the best epoch ({best_epoch + 1})" if diverged else ""))
    return LoopResult(history, best_epoch, best_score, best_state, stopped, time.perf_counter() - t_start, diverged is not None,
                      backoff.used)  # fmt: skip


def _micro_batches(batch: int, batches: int, every: int) -> tuple[int, bool]:
    """(micro-batches in this batch's optimizer step, whether the step follows this batch).

    Steps come every `every` batches; the epoch's last step takes the batches that are left.
    """
    first = batch - batch % every
    last = min(first + every, batches) - 1
    return last - first + 1, batch == last


def _first_stop(decisions: Iterable[Decision | None]) -> Decision | None:
    """The first "stop" among the callbacks' answers (every callback is still asked)."""
    decisions = list(decisions)
    return next((d for d in decisions if d is not None and d.stop), None)


@torch.inference_mode()
def predict_probs(model: nn.Module, loader: Iterable, engine: Engine, task: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """The task's per-sample outputs over `loader` (`task.collect`: softmax probabilities `[N, C]`
    for classification), the targets and the mean loss.

    Rows come in the loader's order (several processes: each batch gathered from all of them,
    without the samples repeated to even out the last batch); targets travel with their batches, so metrics never depend
    on it (text loaders sort by length: `TextLoader.order` maps rows back to samples).
    """
    outputs, targets, loss_sum, n = [], [], 0.0, 0
    with eval_mode(model):
        for inputs, y in loader:
            inputs, y = engine.to_device((inputs, y))
            with engine.autocast():
                logits = model(inputs)
            logits, y = engine.gather(logits.float()), engine.gather(y)  # several processes: every sample once
            loss_sum += float(task.loss(logits, y)) * len(y)
            n += len(y)
            rows, kept = task.collect(logits, y)
            outputs.append(rows.cpu())
            targets.append(kept.cpu())
    if n == 0:
        return np.zeros((0, max(task.num_classes, 1)), np.float32), np.zeros((0,), np.int64), float("nan")
    return torch.cat(outputs).numpy(), torch.cat(targets).numpy(), loss_sum / n
