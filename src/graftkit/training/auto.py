"""Measure what `--strategy auto` decides from, and plan a run inside `--time-budget`.

`strategies/auto.py` holds the rule (a pure function); this module measures its inputs on the
user's data and model:
- a **quick probe**: logistic regression on frozen features of the training split, scored on the
  validation split. The features go through the shared cache, so a probe chosen afterwards
  costs nothing more;
- an **epoch estimate**: a few timed fine-tuning steps on a copy of the model (the weights
  `fit()` trains are not touched), extrapolated to one epoch of training plus validation.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from graftkit.strategies.auto import FEW_PER_CLASS, MIN_FINETUNE_EPOCHS, affordable_epochs, choose_strategy
from graftkit.strategies.spec import STRATEGY_NAMES
from graftkit.training.progress import info


@dataclass
class AutoChoice:
    """What `plan_run` decided: the strategy, the epochs that fit the budget, and why."""

    strategy: str
    epochs: int
    reasons: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "epochs": self.epochs, "reasons": list(self.reasons), "measurements": dict(self.measurements)}


def quick_probe(images: Any, backbone: nn.Module, cfg: Any) -> tuple[float, dict[str, Any]]:
    """Validation accuracy of a logistic-regression probe on frozen features (cached).

    Args:
        images: An `ImageData` with train and val splits.
        backbone: The backbone.
        cfg: The run's `TrainConfig` (batch size, workers, feature cache).

    Returns:
        `(accuracy, facts)`; facts: seconds, features computed / cached, inference images per second.
    """
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from graftkit.training.frozen import labelled_features

    t0 = time.perf_counter()
    kw = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "cache": cfg.feature_cache}
    train = labelled_features(backbone, images.train, images.classes, **kw)
    val = labelled_features(backbone, images.val, images.classes, **kw)
    scaler = StandardScaler().fit(train.features)
    clf = LogisticRegression(max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train.features), train.labels)
    accuracy = float(np.mean(clf.predict(scaler.transform(val.features)) == val.labels))
    computed = train.computed + val.computed
    feature_seconds = train.seconds + val.seconds
    facts = {
        "probe_seconds": round(time.perf_counter() - t0, 2),
        "features_computed": computed,
        "features_cached": train.cached + val.cached,
    }
    if computed:
        facts["inference_img_per_s"] = round(computed / max(feature_seconds, 1e-9), 2)
    return accuracy, facts


def estimate_epoch_seconds(images: Any, backbone: nn.Module, cfg: Any, *, steps: int = 3) -> tuple[float, dict[str, Any]]:
    """Seconds of one full fine-tuning epoch (training + validation), from a few timed steps.

    The steps run on a deep copy of the backbone and a throwaway head, at the run's batch size,
    image size, augmentation and precision, decoding in the main process (a conservative
    estimate: training overlaps decoding with compute in loader workers). The first step is a
    warm-up and not counted.

    Args:
        images: An `ImageData`.
        backbone: The backbone (copied; not modified).
        cfg: The run's `TrainConfig`.
        steps: Timed steps after the warm-up step.

    Returns:
        `(seconds, facts)`; facts: seconds per step and per validation image.
    """
    from graftkit.data import ImageFileDataset, build_transform, make_loader
    from graftkit.training.engine import LocalEngine, choose_channels_last, choose_precision

    arch = backbone.weights.arch
    precision, _ = choose_precision(arch, training=True, requested=cfg.precision)
    engine = LocalEngine(precision=precision, channels_last=choose_channels_last(arch, cfg.channels_last))
    class_to_idx = {c: i for i, c in enumerate(images.classes)}
    bs = min(cfg.batch_size, len(images.train))
    subset = images.train[: bs * (steps + 1)]
    loader = make_loader(
        ImageFileDataset(subset, class_to_idx, build_transform(backbone.preprocess, cfg.augment, train=True)),
        batch_size=bs, shuffle=False, num_workers=0, seed=cfg.seed,
    )  # fmt: skip
    with torch.random.fork_rng():
        model = copy.deepcopy(backbone)
        for p in model.parameters():
            p.requires_grad_(True)
        head = nn.Linear(backbone.num_features, len(images.classes))
        net = engine.setup(nn.Sequential(_Features(model), head))
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-6)
        net.train()
        times = []
        t = time.perf_counter()
        for x, y in _batches(loader, steps + 1):
            x, y = engine.to_device((x, y))
            with engine.autocast():
                loss = nn.functional.cross_entropy(net(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            engine.backward(loss)
            optimizer.step()
            now = time.perf_counter()
            times.append((now - t) / x.shape[0])
            t = now
        net.eval()
        with torch.inference_mode(), engine.autocast():
            x = engine.to_device(next(iter(loader))[0])
            t = time.perf_counter()
            net(x)
            eval_per_image = (time.perf_counter() - t) / x.shape[0]
    per_image = sorted(times[1:] or times)[len(times[1:] or times) // 2]  # median after the warm-up step
    seconds = per_image * len(images.train) + eval_per_image * len(images.val)
    facts = {"train_seconds_per_image": round(per_image, 5), "eval_seconds_per_image": round(eval_per_image, 5)}
    del net, model, optimizer
    return seconds, facts


def _batches(loader: Any, n: int):
    """`n` batches, going round `loader` again when it has fewer (tiny data sets)."""
    count = 0
    while True:
        for batch in loader:
            yield batch
            count += 1
            if count == n:
                return


class _Features(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def plan_run(images: Any, backbone: nn.Module, cfg: Any, *, elapsed_s: float = 0.0) -> AutoChoice:
    """Resolve `--strategy auto` and fit the epochs into `--time-budget`.

    With `cfg.strategy == "auto"`: runs the quick probe, and (when fine-tuning is possible at
    all: at least `FEW_PER_CLASS` examples per class) the epoch estimate, then applies
    `strategies.auto.choose_strategy`. With a fixed strategy and a time budget: only the epoch
    estimate, to fit the epochs into the budget. Fine-tuning epochs become
    `min(cfg.epochs, epochs that fit)`, at least 1; a probe keeps `cfg.epochs` (its epochs cost
    milliseconds on cached features).

    Args:
        images: An `ImageData`.
        backbone: The loaded backbone.
        cfg: The run's `TrainConfig` (`strategy`, `epochs`, `time_budget`, ...).
        elapsed_s: Seconds of the budget already spent (reading data, loading the model).

    Returns:
        The `AutoChoice`; its `to_dict()` goes into `graft.json` under `auto`.
    """
    t0 = time.perf_counter()
    budget = getattr(cfg, "time_budget", None)
    n_train, n_classes = len(images.train), len(images.classes)
    facts: dict[str, Any] = {"n_train": n_train, "n_classes": n_classes, "time_budget_s": budget}
    auto = cfg.strategy == "auto"
    probe_accuracy = None
    if auto:
        probe_accuracy, probe_facts = quick_probe(images, backbone, cfg)
        facts.update(probe_accuracy=round(probe_accuracy, 4), **probe_facts)
        info(f"auto: quick probe {probe_accuracy:.3f} val accuracy ({probe_facts['probe_seconds']:.1f} s)")
    wants_estimate = (cfg.strategy != "linear-probe") and budget is not None
    if auto:
        wants_estimate = n_train / n_classes >= FEW_PER_CLASS
    epoch_seconds = None
    if wants_estimate:
        epoch_seconds, est_facts = estimate_epoch_seconds(images, backbone, cfg)
        facts.update(seconds_per_epoch_estimate=round(epoch_seconds, 2), **est_facts)
    left = None if budget is None else budget - elapsed_s - (time.perf_counter() - t0)
    facts["budget_left_s"] = None if left is None else round(left, 1)
    param_count = sum(p.numel() for p in backbone.parameters())
    n_groups = len(backbone.layer_groups())
    facts.update(param_count=param_count, n_groups=n_groups)
    if auto:
        strategy, reasons = choose_strategy(
            n_train=n_train,
            n_classes=n_classes,
            modality=getattr(backbone, "modality", "image"),
            probe_accuracy=probe_accuracy,
            param_count=param_count,
            time_budget_s=left,
            seconds_per_epoch_estimate=epoch_seconds,
            n_groups=n_groups,
            lora_available="lora" in STRATEGY_NAMES and getattr(backbone, "modality", "image") == "text",
        )
        chosen = str(strategy)
    else:
        chosen, reasons = cfg.strategy, []
    epochs = cfg.epochs
    fitting = affordable_epochs(left, epoch_seconds)
    if chosen != "linear-probe" and fitting is not None and fitting < cfg.epochs:
        epochs = max(1, fitting)
        note = f"{epochs} of the {cfg.epochs} requested epochs fit in the time budget (~{epoch_seconds:.0f} s each)."
        if not auto and fitting < MIN_FINETUNE_EPOCHS:
            note += " Consider --strategy linear-probe or a smaller --image-size."
        reasons.append(note)
    facts["measure_seconds"] = round(time.perf_counter() - t0, 2)
    for r in reasons:
        info(f"auto: {r}" if auto else f"time budget: {r}")
    return AutoChoice(chosen, epochs, reasons, facts)
