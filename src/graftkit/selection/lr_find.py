"""`graft lr-find`: an exponential learning-rate sweep (Smith 2017; fastai's `lr_find`).

Training starts at `start_lr` and multiplies the learning rate by a constant factor every step
up to `end_lr`, recording the loss of each batch. The sweep stops early once a running
(debiased exponential moving) average of the loss exceeds `diverge ×` its minimum.

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
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

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
    batches: Callable[[], Iterable[tuple[Any, torch.Tensor]]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    param_groups: list[dict[str, Any]],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
    weight_decay: float = 0.01,
    prepare: Callable[[], None] | None = None,
    engine: Any = None,
    seed: int = 0,
) -> tuple[list[float], list[float], list[float]]:
    """Run the sweep on `model` and put its weights and modes back afterwards.

    Args:
        model: The network being swept (`model(inputs) -> logits`).
        batches: Called to start each pass over the training batches (seeded by the caller).
        loss_fn: `loss_fn(logits, targets)`.
        param_groups: AdamW parameter groups; a group's `lr` is its multiplier of the swept LR
            (1.0 for the head, smaller for backbone groups with layer-wise decay).
        start_lr: First learning rate.
        end_lr: Last learning rate.
        steps: Number of steps (learning rates).
        beta: Smoothing factor of the running loss average (the stop test).
        diverge: Stop once the smoothed loss exceeds this many times its minimum.
        weight_decay: AdamW weight decay.
        prepare: Called after `model.train()` (e.g. to keep frozen BatchNorm layers in eval mode).
        engine: Device/precision engine (default: fp32 on CPU).
        seed: Seeds dropout and anything random in the model.

    Returns:
        `(lrs, losses, smoothed)` up to where the sweep stopped; `smoothed` is the zero-phase
        average of `losses` (`smooth_zero_phase`).
    """
    from graftkit.engine import LocalEngine

    engine = engine or LocalEngine()
    saved_state = copy.deepcopy(model.state_dict())
    saved_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    saved_modes = {name: m.training for name, m in model.named_modules()}
    multipliers = [g.get("lr", 1.0) for g in param_groups]
    optimizer = torch.optim.AdamW(
        [{**g, "lr": start_lr * m} for g, m in zip(param_groups, multipliers)], lr=start_lr, weight_decay=weight_decay
    )
    schedule = exponential_lrs(start_lr, end_lr, steps)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model.train()
            if prepare is not None:
                prepare()
            it = iter(batches())
            for i, lr in enumerate(schedule):
                try:
                    inputs, targets = next(it)
                except StopIteration:  # another pass over the training data
                    it = iter(batches())
                    inputs, targets = next(it)
                inputs, targets = engine.to_device((inputs, targets))
                for group, m in zip(optimizer.param_groups, multipliers):
                    group["lr"] = float(lr) * m
                with engine.autocast():
                    logits = model(inputs)
                loss = loss_fn(logits.float(), targets)
                optimizer.zero_grad(set_to_none=True)
                engine.backward(loss)
                optimizer.step()
                value = float(loss.detach())  # host sync: one per step, needed for the stop test
                avg = beta * avg + (1 - beta) * value
                s = avg / (1 - beta ** (i + 1))
                lrs.append(float(lr))
                losses.append(value)
                best = min(best, s)
                if not math.isfinite(s) or (i > 10 and s > diverge * best):
                    break
    finally:
        model.load_state_dict(saved_state)
        for name, p in model.named_parameters():
            p.requires_grad_(saved_grad[name])
        for name, m in model.named_modules():
            m.train(saved_modes.get(name, m.training))
    # Cap the diverging tail at the stop threshold: the backward pass would carry a huge last
    # loss far back into the curve.
    cap = diverge * best if math.isfinite(best) else max(losses[:1] or [1.0])
    capped = [min(v, cap) if math.isfinite(v) else cap for v in losses]
    return lrs, losses, smooth_zero_phase(capped, beta)


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

    Returns:
        An `LRFindResult`; pass `result.suggestion` as `--lr`.

    Raises:
        ConfigError: Bad strategy or sweep range.

    Example:
        >>> r = lr_find("data/", model="efficientnet_lite0", strategy="finetune", out="runs/lr")
        >>> graftkit.fit("data/", strategy="finetune", lr=r.suggestion)
    """
    from graftkit.errors import ConfigError
    from graftkit.selection._data import load_backbone_for, modality_of, read_data
    from graftkit.strategies import parse_strategy
    from graftkit.tasks import ClassificationTask
    from graftkit.training.config import TrainConfig

    strat = parse_strategy(strategy)
    problems = []
    if strat.kind in ("lora", "auto"):
        problems.append(f"--strategy {strategy}: lr-find sweeps linear-probe, finetune, partial:N or gradual")
    if not 0 < start_lr < end_lr:
        problems.append(f"--start-lr must be positive and below --end-lr; got {start_lr} and {end_lr}")
    if steps < 10:
        problems.append(f"--steps must be at least 10, got {steps}")
    if problems:
        raise ConfigError("invalid lr-find settings:\n" + "\n".join(f"  - {p}" for p in problems))
    t0 = time.perf_counter()
    modality = modality_of(model)
    cfg = TrainConfig.from_settings(
        model=model, strategy=str(strat), seed=seed, offline=offline, batch_size=batch_size, num_workers=num_workers,
        augment=augment, image_size=image_size if modality == "image" else None, device=device,
    )  # fmt: skip
    dataset = read_data(data, cfg, modality)
    if not dataset.classes:
        raise ConfigError(f"graft lr-find sweeps classification heads; {data} has no class labels")
    backbone = load_backbone_for(cfg, modality)
    task = ClassificationTask(dataset.classes)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = task.build_head(backbone.num_features)
    size = backbone.preprocess.input_size if modality == "image" else backbone.preprocess.max_length
    settings = {"model": model, "strategy": str(strat), "start_lr": start_lr, "end_lr": end_lr, "steps": steps,
                "batch_size": batch_size, "input_size" if modality == "image" else "max_length": size, "seed": seed}  # fmt: skip
    common = {"start_lr": start_lr, "end_lr": end_lr, "steps": steps, "seed": seed}
    if strat.kind == "linear-probe":
        lrs, losses, smoothed = _probe_sweep(backbone, head, dataset, batch_size, num_workers, device, **common)
    else:
        if modality == "image":
            settings["augment"] = augment
        lrs, losses, smoothed = _finetune_sweep(backbone, head, dataset, task, strat, cfg.resolved(modality, "accuracy"), **common)
    suggestion, steepest, still_falling = suggest(lrs, smoothed)
    result = LRFindResult(lrs, losses, smoothed, suggestion, steepest, still_falling, settings=settings,
                          seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
    if out is not None:
        result.out = write_lr_find(result, out)
    return result


def _probe_sweep(backbone, head, dataset, batch_size, num_workers, device, **sweep):
    from graftkit.training.frozen import labelled_features

    # The head sweeps on the CPU (milliseconds a step); the features come from `device`, as in fit().
    feats = labelled_features(backbone, dataset.train, dataset.classes, batch_size=batch_size, num_workers=num_workers, device=device)
    x, y = torch.from_numpy(feats.features), torch.from_numpy(feats.labels)
    gen = torch.Generator().manual_seed(sweep["seed"])

    def batches():
        order = torch.randperm(len(y), generator=gen)
        return ((x[idx], y[idx]) for idx in order.split(batch_size))

    groups = [{"params": [p for p in head.parameters() if p.ndim > 1], "lr": 1.0},
              {"params": [p for p in head.parameters() if p.ndim <= 1], "lr": 1.0, "weight_decay": 0.0}]  # fmt: skip
    return lr_sweep(head, batches, nn.functional.cross_entropy, groups, **sweep)


def _finetune_sweep(backbone, head, dataset, task, strat, cfg, **sweep):
    from graftkit.strategies import freeze_layer_groups, layerwise_lr_groups, set_frozen_norms_eval, trainable_group_count
    from graftkit.tasks import GraftModel
    from graftkit.engine import LocalEngine, choose_channels_last, choose_precision, resolve_device
    from graftkit.training.frozen import make_inputs

    arch = backbone.weights.arch
    device = resolve_device(cfg.device)
    precision, _ = choose_precision(arch, training=True, device=device)
    image = getattr(backbone, "modality", "image") == "image"
    engine = LocalEngine(device, precision=precision, channels_last=image and choose_channels_last(arch, None))
    groups = backbone.layer_groups()
    # gradual trains the head alone in its first epoch: sweep the schedule's end state, all groups.
    n_train = len(groups) if strat.kind == "gradual" else trainable_group_count(strat, len(groups), 0)
    freeze_layer_groups(groups, n_train)
    model = engine.setup(GraftModel(backbone, head))
    loader = make_inputs(dataset, backbone, cfg).labelled_loader("train", task, train=True)  # the training loader of fit()
    # Multipliers of the swept head LR: the run's layer-wise decay from the top group, as in training.
    param_groups = layerwise_lr_groups(groups, head, lr=1.0, backbone_lr_scale=cfg.backbone_lr_scale, decay=cfg.lr_decay, weight_decay=cfg.weight_decay)
    try:
        return lr_sweep(model, lambda: loader, task.loss, param_groups, engine=engine,
                        prepare=lambda: set_frozen_norms_eval(groups, n_train), **sweep)  # fmt: skip
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        if image:
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
