"""`graft lr-find`: an exponential learning-rate sweep (Smith 2017; fastai's `lr_find`).

Training starts at `start_lr` and multiplies the learning rate by a constant factor every
optimizer step up to `end_lr`, recording the loss of each step. The sweep stops early once a
running (debiased exponential moving) average of the loss exceeds `diverge ×` its minimum. It is
`train_loop` itself — an exponential scheduler, and a batch callback that records and stops — so
it clips, mixes, accumulates and runs in the precision and memory format that training would.

The curve the suggestion reads is smoothed without lag: the same moving average run forwards
and then backwards over the recorded losses (`β = 0.9` by default, a window of about ten steps).
A one-sided average — what a running stop test must use — trails the raw loss by half its
window, which on a 100-step sweep over eight decades moves its minimum by most of a decade.

**Suggestion rule: one tenth of the learning rate at the minimum of the smoothed loss**
(`min/10`). At the minimum the loss is about to blow up; a tenth of it is still on the steep,
stable part of the curve. It is less sensitive to noise than "steepest descent" (the most
negative slope before the minimum), which is also reported and drawn. When the loss is still
falling at the end of the sweep, the result says so (`still_falling`): raise `end_lr`.

Frozen (`linear-probe`): the new head trains on cached features, batch by batch. Unfrozen
(`finetune`, `partial:N`, `gradual` — whose first epoch trains the head alone, so it is swept
like `finetune`): images through the whole model with the strategy's trainable groups, the
backbone's groups at their layer-wise rates relative to the head's. Either way the sweep runs on
the training split only, is seeded (same seed → same batches, same suggestion), and puts back
exactly the weights, `requires_grad` flags and train/eval modes it started from.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from graftkit.engine import LocalEngine
from graftkit.engine.progress import info
from graftkit.training.loop import Decision

LR_FIND_JSON = "lr_find.json"
LR_FIND_PNG = "lr_find.png"


@dataclass
class LRFindResult:
    """The sweep: learning rates, raw and smoothed losses, and the suggestion."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    """`min/10`: a tenth of the learning rate at the smoothed loss's minimum."""
    steepest: float | None
    """The learning rate of the steepest descent of the smoothed loss (for reference)."""
    still_falling: bool = False
    """The smoothed loss was lowest at the end of the sweep: the real minimum lies beyond `end_lr`."""
    rule: str = "min/10"
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out) if self.out is not None else None
        return d


def exponential_lrs(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """`steps` learning rates from `start_lr` to `end_lr`, evenly spaced on a log scale."""
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(losses: Iterable[float], beta: float = 0.9) -> list[float]:
    """Debiased exponential moving average (Adam-style bias correction for the first steps)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def smooth_zero_phase(losses: list[float], beta: float = 0.9) -> list[float]:
    """`smooth` forwards, then backwards over the result: no lag behind the raw losses."""
    return smooth(smooth(losses, beta)[::-1], beta)[::-1]


def suggest(lrs: list[float], smoothed: list[float], *, skip_start: int = 3) -> tuple[float, float | None, bool]:
    """`(min/10, steepest, still_falling)` from a sweep's zero-phase smoothed losses.

    Args:
        lrs: Learning rates of the sweep.
        smoothed: Smoothed losses (`smooth_zero_phase`).
        skip_start: Points ignored at the start.

    Returns:
        A tenth of the LR at the minimum smoothed loss; the LR of the most negative slope of the
        smoothed loss against log LR before that minimum (None for fewer than 3 points); whether
        the minimum is the last point (the loss was still falling).
    """
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    lo = min(skip_start, max(len(finite) - 3, 0))
    idx = finite[lo:] or finite
    x, y = np.log10(np.asarray([lrs[i] for i in idx])), np.asarray([smoothed[i] for i in idx])
    best = int(np.argmin(y))
    minimum = float(10 ** x[best]) / 10
    steepest = None
    if best >= 2:
        steepest = float(10 ** x[int(np.argmin(np.gradient(y[: best + 1], x[: best + 1])))])
    return minimum, steepest, best == len(y) - 1


def lr_sweep(
    model: nn.Module,
    loader: Iterable[tuple[Any, torch.Tensor]],
    task: Any,
    param_groups: list[dict[str, Any]],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
    weight_decay: float = 0.01,
    sweep: SweepSettings | None = None,
    seed: int = 0,
) -> tuple[list[float], list[float], list[float]]:
    """Run the sweep on `model` through `train_loop` and put its weights and modes back afterwards.

    Each optimizer step is one learning rate: the loop trains as `fit()` would (the same loss,
    gradient clipping, batch mixing, accumulation, precision and memory format, from `sweep`),
    its scheduler raises the rate exponentially and a batch callback records the loss and stops
    at the last rate or once the loss diverges.

    Args:
        model: The network being swept (`model(inputs) -> logits`), already on the engine's device.
        loader: The training batches (sized, iterated once per pass; a DataLoader's generator is
            reseeded per pass, as in training).
        task: Supplies `loss` and the running training score.
        param_groups: AdamW parameter groups; a group's `lr` is its multiplier of the swept LR
            (1.0 for the head, smaller for backbone groups with layer-wise decay).
        start_lr: First learning rate.
        end_lr: Last learning rate.
        steps: Number of optimizer steps (learning rates).
        beta: Smoothing factor of the running loss average (the stop test).
        diverge: Stop once the smoothed loss exceeds this many times its minimum.
        weight_decay: AdamW weight decay (groups may set their own).
        sweep: Engine, clipping, mixing, accumulation and per-pass preparation (default: fp32 on
            the CPU, no clipping, no mixing).
        seed: Seeds dropout, augmentation and the batch order.

    Returns:
        `(lrs, losses, smoothed)` up to where the sweep stopped; `smoothed` is the zero-phase
        average of `losses` (`smooth_zero_phase`).
    """
    from graftkit.training.loop import LoopOptions, train_loop
    from graftkit.training.schedule import exponential_schedule

    sweep = sweep or SweepSettings()
    saved_state = copy.deepcopy(model.state_dict())
    saved_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    saved_modes = {name: m.training for name, m in model.named_modules()}
    optimizer = torch.optim.AdamW([dict(g) for g in param_groups], lr=1.0, weight_decay=weight_decay)  # lr: multipliers
    scheduler = exponential_schedule(optimizer, start_lr, end_lr, steps)
    recorder = _SweepRecorder(exponential_lrs(start_lr, end_lr, steps), beta, diverge)
    passes = math.ceil(steps / math.ceil(len(loader) / sweep.accumulate))
    options = LoopOptions(
        epochs=passes, grad_clip=sweep.grad_clip, accumulate=sweep.accumulate, seed=seed, progress=False, stop_on_divergence=False,
        prepare_epoch=None if sweep.prepare is None else (lambda epoch: sweep.prepare()), batch_transform=sweep.batch_transform,
    )  # fmt: skip
    try:
        with torch.random.fork_rng():  # the loop reseeds per pass; the caller's random state is kept
            train_loop(model, loader, None, task=task, optimizer=optimizer, scheduler=scheduler,
                       engine=sweep.engine or LocalEngine(), options=options, callbacks=[recorder])  # fmt: skip
    finally:
        model.load_state_dict(saved_state)
        for name, p in model.named_parameters():
            p.requires_grad_(saved_grad[name])
            p.grad = None
        for name, m in model.named_modules():
            m.train(saved_modes.get(name, m.training))
    lrs, losses, best = recorder.lrs, recorder.losses, recorder.best
    # Cap the diverging tail at the stop threshold: the backward pass would carry a huge last
    # loss far back into the curve.
    cap = diverge * best if math.isfinite(best) else max(losses[:1] or [1.0])
    capped = [min(v, cap) if math.isfinite(v) else cap for v in losses]
    return lrs, losses, smooth_zero_phase(capped, beta)


@dataclass
class SweepSettings:
    """How the sweep trains: what `fit()` would use for the same settings."""

    engine: Any = None
    """Device, precision and memory format (None: fp32 on the CPU)."""
    grad_clip: float | None = None
    batch_transform: Callable | None = None
    """Batch mixing (mixup / cutmix), as in training."""
    accumulate: int = 1
    """Micro-batches per optimizer step: one learning rate per step."""
    prepare: Callable[[], None] | None = None
    """Called after `model.train()` each pass (e.g. keep frozen BatchNorm layers in eval mode)."""


class _SweepRecorder:
    """Batch callback: the loss of each optimizer step at its learning rate; stops at the last
    rate, or once the debiased running average of the loss diverges."""

    def __init__(self, lrs: np.ndarray, beta: float, diverge: float) -> None:
        self.schedule, self.beta, self.diverge = lrs, beta, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.best, self._avg, self._parts = math.inf, 0.0, []

    def on_batch_end(self, state) -> Decision | None:
        self._parts.append(state.loss)
        if not state.stepped:  # accumulating: one point per optimizer step
            return None
        value, self._parts = float(np.mean(self._parts)), []
        i = len(self.losses)
        self._avg = self.beta * self._avg + (1 - self.beta) * value
        smoothed = self._avg / (1 - self.beta ** (i + 1))
        self.lrs.append(float(self.schedule[i]))
        self.losses.append(value)
        self.best = min(self.best, smoothed)
        if (i + 1) % max(1, len(self.schedule) // 10) == 0:  # a line per tenth of the sweep, on a terminal or not
            info(f"lr-find: step {i + 1}/{len(self.schedule)}, lr {self.schedule[i]:.2e}, loss {value:.4g}")
        if not math.isfinite(smoothed) or (i > 10 and smoothed > self.diverge * self.best):
            return Decision(stop=True, reason="the loss diverged")
        if i + 1 == len(self.schedule):
            return Decision(stop=True, reason="swept every learning rate")
        return None


def lr_find(
    data: str | Path,
    *,
    model: str = "efficientnet_lite0",
    strategy: str = "linear-probe",
    out: str | Path | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    image_size: int | None = None,
    augment: str = "light",
    num_workers: int | None = None,
    offline: bool = False,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    channels_last: bool | None = None,
    settings: Mapping[str, Any] | None = None,
) -> LRFindResult:
    """Sweep the learning rate on the training split and suggest one (`min/10`, see the module doc).

    Args:
        data: Labelled images or text, as for `graft train` (the same seeded split).
        model: Model id.
        strategy: `linear-probe` (head on cached features) or `finetune` / `partial:N` / `gradual`.
        out: Folder for `lr_find.json` and `lr_find.png` (None: write nothing).
        start_lr: First learning rate of the sweep.
        end_lr: Last learning rate.
        steps: Learning rates tried (one batch each).
        batch_size: Samples per step.
        image_size: Input size of an image model (None: the model's own).
        augment: Augmentation preset of the unfrozen sweep (as in training).
        num_workers: Loader workers (None: from the CPU count).
        offline: Never touch the network.
        seed: Seeds the split, the head's initialisation and the batch order.
        device: `auto`, `cpu` or `cuda[:N]`, as for `graft train`.
        precision: `auto`, `fp32` or `bf16`, as for `graft train` (the unfrozen sweep trains in
            it; the probe's features are extracted in its inference precision).
        channels_last: As `graft train --channels-last` (None: per model).
        settings: Other `TrainConfig` fields of the run to sweep for, e.g. `{"mix": "cutmix",
            "grad_clip": None, "accumulate": 4, "label_smoothing": 0.1}`: the sweep clips,
            mixes, accumulates and computes the loss as that run will.

    Returns:
        An `LRFindResult`; pass `result.suggestion` as `--lr`.

    Raises:
        ConfigError: Bad strategy, sweep range or settings.

    Example:
        >>> r = lr_find("data/", model="efficientnet_lite0", strategy="finetune", out="runs/lr")
        >>> graftkit.fit("data/", strategy="finetune", lr=r.suggestion)
    """
    from graftkit.errors import ConfigError
    from graftkit.sources import resolve
    from graftkit.training.plan import load_backbone_for, read_data_for
    from graftkit.strategies import parse_strategy
    from graftkit.tasks import ClassificationTask
    from graftkit.training.config import TrainConfig
    from graftkit.training.plan import task_settings

    strat = parse_strategy(strategy)
    problems = []
    if strat.kind in ("lora", "contrastive", "auto"):
        problems.append(f"--strategy {strategy}: lr-find sweeps linear-probe, finetune, partial:N or gradual")
    if not 0 < start_lr < end_lr:
        problems.append(f"--start-lr must be positive and below --end-lr; got {start_lr} and {end_lr}")
    if steps < 10:
        problems.append(f"--steps must be at least 10, got {steps}")
    own = {"model", "strategy", "seed", "offline", "batch_size", "num_workers", "augment", "image_size", "device", "precision", "channels_last"}
    for name in sorted(own & set(settings or {})):
        problems.append(f"settings[{name!r}]: pass {name} as lr_find's own argument")
    if problems:
        raise ConfigError("invalid lr-find settings:\n" + "\n".join(f"  - {p}" for p in problems))
    t0 = time.perf_counter()
    modality = resolve(model).modality
    cfg = TrainConfig.from_settings(
        model=model, strategy=str(strat), seed=seed, offline=offline, batch_size=batch_size, num_workers=num_workers,
        augment=augment, image_size=image_size if modality == "image" else None, device=device, precision=precision,
        channels_last=channels_last, **dict(settings or {}),
    ).resolved(modality, "accuracy")  # fmt: skip
    dataset = read_data_for(cfg, data, modality)
    if not dataset.classes:
        raise ConfigError(f"graft lr-find sweeps classification heads; {data} has no class labels")
    backbone = load_backbone_for(cfg, modality)
    task = ClassificationTask.from_data(dataset.classes, [s.label for s in dataset.train], task_settings(cfg))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = task.build_head(backbone.num_features, cfg.head_dropout)
    size = backbone.preprocess.input_size if modality == "image" else backbone.preprocess.max_length
    recorded = {"model": model, "strategy": str(strat), "start_lr": start_lr, "end_lr": end_lr, "steps": steps,
                "batch_size": batch_size, "input_size" if modality == "image" else "max_length": size, "seed": seed,
                "grad_clip": cfg.grad_clip, "accumulate": cfg.accumulate}  # fmt: skip
    common = {"start_lr": start_lr, "end_lr": end_lr, "steps": steps, "seed": seed, "weight_decay": cfg.weight_decay}
    if strat.kind == "linear-probe":
        lrs, losses, smoothed, engine = _probe_sweep(backbone, head, dataset, task, cfg, **common)
    else:
        if modality == "image":
            recorded.update(augment=augment, mix=cfg.mix)
        lrs, losses, smoothed, engine = _finetune_sweep(backbone, head, dataset, task, strat, cfg, **common)
    recorded.update(device=str(engine.device), precision=engine.precision, channels_last=engine.channels_last)
    suggestion, steepest, still_falling = suggest(lrs, smoothed)
    result = LRFindResult(lrs, losses, smoothed, suggestion, steepest, still_falling, settings=recorded,
                          seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
    if out is not None:
        result.out = write_lr_find(result, out)
    return result


def _probe_sweep(backbone, head, dataset, task, cfg, **common):
    """The head on cached features, batched and trained as `train_probe` does (fp32 on the CPU)."""
    from torch.utils.data import DataLoader, TensorDataset

    from graftkit.training.frozen import labelled_features

    # The features come from `device` in the run's inference precision and memory format, as in
    # fit() (so the cache is shared); the head sweeps on the CPU in fp32 (milliseconds a step).
    feats = labelled_features(backbone, dataset.train, dataset.classes, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                              cache=cfg.feature_cache, device=cfg.device, precision=cfg.precision, channels_last=cfg.channels_last)  # fmt: skip
    x, y = torch.from_numpy(feats.features), task.encode([s.label for s in dataset.train])
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
    groups = [{"params": [p for p in head.parameters() if p.ndim > 1], "lr": 1.0},
              {"params": [p for p in head.parameters() if p.ndim <= 1], "lr": 1.0, "weight_decay": 0.0}]  # fmt: skip
    engine = LocalEngine()
    sweep = SweepSettings(engine=engine, grad_clip=cfg.grad_clip, accumulate=cfg.accumulate)
    return (*lr_sweep(head, loader, task, groups, sweep=sweep, **common), engine)


def _finetune_sweep(backbone, head, dataset, task, strat, cfg, **common):
    """The whole model on the training loader of fit(), with the strategy's trainable groups."""
    from graftkit.engine import training_settings
    from graftkit.strategies import freeze_layer_groups, layerwise_lr_groups, set_frozen_norms_eval, trainable_group_count
    from graftkit.tasks import GraftModel
    from graftkit.training.inputs import make_inputs

    modality = getattr(backbone, "modality", "image")
    engine = training_settings(backbone.weights.arch, device=cfg.device, precision=cfg.precision, channels_last=cfg.channels_last,
                               modality=modality).engine()  # fmt: skip
    groups = backbone.layer_groups()
    # gradual trains the head alone in its first epoch: sweep the schedule's end state, all groups.
    n_train = len(groups) if strat.kind == "gradual" else trainable_group_count(strat, len(groups), 0)
    freeze_layer_groups(groups, n_train)
    model = engine.setup(GraftModel(backbone, head))
    inputs = make_inputs(dataset, backbone, cfg)
    loader = inputs.labelled_loader("train", task, train=True)  # the training loader of fit()
    # Multipliers of the swept head LR: the run's layer-wise decay from the top group, as in training.
    param_groups = layerwise_lr_groups(groups, head, lr=1.0, backbone_lr_scale=cfg.backbone_lr_scale, decay=cfg.lr_decay, weight_decay=cfg.weight_decay)
    sweep = SweepSettings(engine=engine, grad_clip=cfg.grad_clip, batch_transform=inputs.batch_transform(task), accumulate=cfg.accumulate,
                          prepare=lambda: set_frozen_norms_eval(groups, n_train))  # fmt: skip
    try:
        return (*lr_sweep(model, loader, task, param_groups, sweep=sweep, **common), engine)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        if modality == "image":
            model.to(memory_format=torch.contiguous_format)


def write_lr_find(result: LRFindResult, out: str | Path) -> Path:
    """Write `lr_find.json` and `lr_find.png` into `out`; return the folder."""
    from graftkit.selection._report import new_figure, save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LR_FIND_JSON).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    fig, ax = new_figure(6.4, 4.0)
    ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="loss per batch")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", lw=2, label="smoothed loss")
    ax.axvline(result.suggestion, color="tab:red", ls="--", lw=1.2, label=f"suggestion (min/10) {result.suggestion:.2e}")
    if result.steepest is not None:
        ax.axvline(result.steepest, color="tab:green", ls=":", lw=1.2, label=f"steepest descent {result.steepest:.2e}")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:
        lo, start = min(finite), finite[0]
        ax.set_ylim(lo - 0.1 * abs(start - lo) - 1e-3, max(start, lo) + 0.5 * abs(start - lo) + 1e-3)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR finder · {result.settings.get('model')} · {result.settings.get('strategy')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out / LR_FIND_PNG)
    return out
