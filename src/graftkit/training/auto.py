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

from graftkit.strategies.auto import FEW_PER_CLASS, LORA_MIN_PARAMS, MIN_FINETUNE_EPOCHS, affordable_epochs, choose_strategy
from graftkit.strategies.spec import STRATEGY_NAMES
from graftkit.tasks.base import task_member
from graftkit.engine.progress import info


@dataclass
class AutoChoice:
    """What `plan_run` decided: the strategy, the epochs that fit the budget, and why."""

    strategy: str
    epochs: int
    reasons: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    solved: bool = False
    """A solved probe: no epochs run (graft.json's `epochs` is then None)."""

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "epochs": None if self.solved else self.epochs, "reasons": list(self.reasons),
                "measurements": dict(self.measurements)}  # fmt: skip


MIN_PROBE_STEPS = 100
"""When auto picks the probe, it trains the head for at least this many optimizer steps. With
16 texts and batch 32, the default 10 epochs are 10 steps and leave the head near its random
start (VADER, 8 per class: 0.515 test accuracy; 100 steps: 0.605, above every fine-tuning
strategy's 0.535-0.552)."""

QUICK_PROBE_PER_CLASS = (100, 50)
"""The quick probe uses at most this many (training, validation) examples per class: it decides
a strategy, it does not have to be the best probe, and on large data sets the full feature pass
would eat the budget that fine-tuning needs (measured: 33 s of a 90 s budget at 8,000 images)."""


def quick_probe(data: Any, backbone: nn.Module, cfg: Any) -> tuple[float, dict[str, Any]]:
    """Validation accuracy of a logistic-regression probe on frozen features (cached).

    Uses at most `QUICK_PROBE_PER_CLASS` training / validation examples per class (the first ones
    of each class in the data's order, so the same examples every time).

    Args:
        data: An `ImageData` or `TextData` (classification) with train and val splits.
        backbone: The backbone.
        cfg: The run's `TrainConfig` (batch size, workers, feature cache).

    Returns:
        `(accuracy, facts)`; facts: seconds, features computed / cached, inference items per second.
    """
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from graftkit.training.frozen import labelled_features

    t0 = time.perf_counter()
    kw = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers, "cache": cfg.feature_cache, "device": cfg.device,
          "precision": cfg.precision, "channels_last": cfg.channels_last}  # fit()'s feature engine: the probe reuses the cache
    n_train, n_val = QUICK_PROBE_PER_CLASS
    train = labelled_features(backbone, _per_class(data.train, n_train), data.classes, **kw)
    val = labelled_features(backbone, _per_class(data.val, n_val), data.classes, **kw)
    scaler = StandardScaler().fit(train.features)
    clf = LogisticRegression(max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train.features), train.labels)
    accuracy = float(np.mean(clf.predict(scaler.transform(val.features)) == val.labels))
    computed = train.computed + val.computed
    feature_seconds = train.seconds + val.seconds
    facts = {
        "probe_examples": [len(train.labels), len(val.labels)],
        "probe_seconds": round(time.perf_counter() - t0, 2),
        "features_computed": computed,
        "features_cached": train.cached + val.cached,
    }
    if computed:
        facts["inference_items_per_s"] = round(computed / max(feature_seconds, 1e-9), 2)
    return accuracy, facts


def _per_class(samples: list, k: int) -> list:
    """The first `k` samples of each class, in order."""
    seen: dict[str, int] = {}
    out = []
    for s in samples:
        if seen.get(s.label, 0) < k:
            seen[s.label] = seen.get(s.label, 0) + 1
            out.append(s)
    return out


REPORT_SECONDS = 5.0
"""Reserved at the end of a budget for the final validation pass's fixed costs and the report."""


def estimate_epoch_seconds(data: Any, backbone: nn.Module, task: Any, cfg: Any, *, steps: int = 3) -> tuple[float, dict[str, Any]]:
    """Seconds of one full fine-tuning epoch (training + validation), from a few timed steps.

    The steps run on a deep copy of the backbone and a fresh head through `train_loop` (a batch
    callback times them and stops), with the same training loader, batch size, augmentation,
    mixing, clipping, accumulation, device, precision and memory format as `fit()`. The estimate
    adds up:
    - training: the median step after a warm-up step, per example, × the training examples —
      but at least the loader's decoding time per example divided by its workers, because the
      few timed steps can be served from batches the workers prefetched (a data-bound GPU run
      would otherwise look faster than it is);
    - validation: one timed forward pass per example × the validation examples;
    - the loaders' start-up (worker processes start again every epoch), train and val.
    Partial and LoRA fine-tuning are cheaper per step, so for them the estimate is an upper bound.

    Args:
        data: An `ImageData` or `TextData`.
        backbone: The backbone (copied; not modified).
        task: The run's task (head and loss).
        cfg: The run's `TrainConfig`.
        steps: Timed steps after the warm-up step.

    Returns:
        `(seconds, facts)`; facts: seconds per training / validation example, decoding time per
        example, loader start-up, and `final_seconds` (the end-of-run validation and test pass).
    """
    from graftkit.engine import training_settings
    from graftkit.training.inputs import make_inputs
    from graftkit.training.loop import LoopOptions, train_loop

    modality = getattr(backbone, "modality", "image")
    engine = training_settings(backbone.weights.arch, device=cfg.device, precision=cfg.precision, channels_last=cfg.channels_last,
                               modality=modality).engine()  # fmt: skip
    timer = _StepTimer(steps + 1)
    with torch.random.fork_rng():
        model = task.build_model(copy.deepcopy(backbone), 0.0)
        for p in model.parameters():
            p.requires_grad_(True)
        inputs = make_inputs(data, model.backbone, cfg)
        loader = inputs.labelled_loader("train", task, train=True)
        model = engine.setup(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        # The real loop: the same clipping, mixing and accumulation as fit(); a copy, so the rate hardly matters.
        options = LoopOptions(epochs=math.ceil((steps + 1) / len(loader)), grad_clip=cfg.grad_clip, accumulate=cfg.accumulate,
                              seed=cfg.seed, batch_transform=inputs.batch_transform(task), progress=False)  # fmt: skip
        train_loop(model, loader, None, task=task, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                   engine=engine, options=options, callbacks=[timer])  # fmt: skip
        model.eval()
        t = time.perf_counter()
        x, y = next(iter(inputs.labelled_loader("val", task, train=False)))
        val_startup = time.perf_counter() - t
        with torch.inference_mode(), engine.autocast():
            x = engine.to_device(x)
            t = time.perf_counter()
            model(x)
            _sync(engine)
            eval_per_item = (time.perf_counter() - t) / len(y)
    startup = timer.startup
    timed = timer.per_item[1:] or timer.per_item
    per_item = sorted(timed)[len(timed) // 2]  # median step after the warm-up
    decode = _decode_seconds(loader)
    workers = getattr(loader, "num_workers", 0)
    if workers > 0 and decode is not None:
        per_item = max(per_item, decode / workers)
    seconds = per_item * len(data.train) + eval_per_item * len(data.val) + (startup or 0.0) + val_startup
    final = eval_per_item * (len(data.val) + len(getattr(data, "test", []) or [])) + 2 * val_startup + REPORT_SECONDS
    facts = {
        "train_seconds_per_item": round(per_item, 5),
        "eval_seconds_per_item": round(eval_per_item, 5),
        "decode_seconds_per_item": None if decode is None else round(decode, 5),
        "loader_startup_seconds": round((startup or 0.0) + val_startup, 2),
        "final_seconds": round(final, 1),
    }
    del model, optimizer
    return seconds, facts


def _decode_seconds(loader: Any, n: int = 16) -> float | None:
    """Seconds to read and transform one example in this process (None if the loader has no dataset to index)."""
    dataset = getattr(loader, "dataset", None)
    try:
        k = min(n, len(dataset))
        t = time.perf_counter()
        for i in range(k):
            dataset[i]
        return (time.perf_counter() - t) / max(k, 1)
    except Exception:  # e.g. an iterable dataset
        return None


def _sync(engine: Any) -> None:
    if engine.device.type == "cuda":  # kernels run asynchronously: wait before reading the clock
        torch.cuda.synchronize(engine.device)


class _StepTimer:
    """Batch callback: seconds per example of each training batch (waiting for it from the loader
    plus its synchronised step), stopping after `n` batches (the loop starts another pass over a
    small data set)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.per_item: list[float] = []
        self.startup: float | None = None

    def on_batch_end(self, state: Any) -> Any:
        from graftkit.training.loop import Decision

        if self.startup is None:
            self.startup = state.data_seconds  # the first batch: worker start-up and decoding
        self.per_item.append((state.data_seconds + state.seconds) / state.batch_size)
        return Decision(stop=True, reason="timed") if len(self.per_item) >= self.n else None


def contrastive_fits(task: Any, modality: str, n_classes: int) -> bool:
    """Whether `--strategy contrastive` can train this run (what `check_contrastive` accepts)."""
    from graftkit.errors import ConfigError
    from graftkit.training.contrastive import check_contrastive

    try:
        check_contrastive(task, modality, n_classes)
    except ConfigError:
        return False
    return True


def plan_run(data: Any, backbone: nn.Module, task: Any, cfg: Any, *, elapsed_s: float = 0.0) -> AutoChoice:
    """Resolve `--strategy auto` and fit the epochs into `--time-budget`.

    With `cfg.strategy == "auto"`: runs the quick probe (classification), and — under a time
    budget, when fine-tuning is in question at all (at least `FEW_PER_CLASS` examples per class)
    — the epoch estimate, then applies `strategies.auto.choose_strategy`. Generation tasks
    (seq2seq, causal-lm) have no probe: `finetune`, or `lora` for large models. With a fixed strategy and a time budget: only the epoch
    estimate, to fit the epochs into the budget. Fine-tuning epochs become
    `min(cfg.epochs, epochs that fit)`, at least 1; a probe keeps `cfg.epochs` (its epochs cost
    milliseconds on cached features).

    Args:
        data: An `ImageData` or `TextData`.
        backbone: The loaded backbone.
        task: The run's task.
        cfg: The run's `TrainConfig` (`strategy`, `epochs`, `time_budget`, ...).
        elapsed_s: Seconds of the budget already spent (reading data, loading the model).

    Returns:
        The `AutoChoice`; its `to_dict()` goes into `graft.json` under `auto`.
    """
    t0 = time.perf_counter()
    budget = getattr(cfg, "time_budget", None)
    n_train, n_classes = len(data.train), max(len(getattr(data, "classes", []) or []), 1)
    facts: dict[str, Any] = {"n_train": n_train, "n_classes": n_classes, "time_budget_s": budget}
    auto = cfg.strategy == "auto"
    probe_accuracy = None
    if auto and task.label_kind.stratified:  # single-label classes: the quick probe's accuracy means something
        probe_accuracy, probe_facts = quick_probe(data, backbone, cfg)
        facts.update(probe_accuracy=round(probe_accuracy, 4), **probe_facts)
        info(f"auto: quick probe {probe_accuracy:.3f} val accuracy ({probe_facts['probe_seconds']:.1f} s)")
    # Fine-tuning time matters only under a budget; below FEW_PER_CLASS auto picks the probe anyway.
    trains_new_head = task.head_spec(backbone.num_features, 0.0) is not None
    wants_estimate = budget is not None and trains_new_head and cfg.strategy != "linear-probe"
    if auto:
        wants_estimate = wants_estimate and n_train / n_classes >= FEW_PER_CLASS
    epoch_seconds = None
    if wants_estimate:
        epoch_seconds, est_facts = estimate_epoch_seconds(data, backbone, task, cfg)
        facts.update(seconds_per_epoch_estimate=round(epoch_seconds, 2), **est_facts)
    left = None if budget is None else budget - elapsed_s - (time.perf_counter() - t0)
    if left is not None and epoch_seconds is not None:
        left -= facts.get("final_seconds", 0.0)  # the end-of-run validation/test pass and the report
    facts["budget_left_s"] = None if left is None else round(left, 1)
    param_count = sum(p.numel() for p in backbone.parameters())
    n_groups = len(backbone.layer_groups())
    facts.update(param_count=param_count, n_groups=n_groups)
    generative = not trains_new_head
    if auto and generative:  # seq2seq / causal-lm train the model's own output layer: no probe
        lora = "lora" in STRATEGY_NAMES and param_count >= LORA_MIN_PARAMS
        chosen = "lora" if lora else "finetune"
        reasons = [f"--task {task.name} trains the model's own output layer (no linear probe); "
                   f"{param_count / 1e6:.0f}M parameters: {'LoRA adapters' if lora else 'full fine-tuning'}."]  # fmt: skip
    elif auto:
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
            contrastive_available=contrastive_fits(task, getattr(backbone, "modality", "image"), n_classes),
        )
        chosen = str(strategy)
    else:
        chosen, reasons = cfg.strategy, []
    epochs = cfg.epochs
    solved = getattr(cfg, "probe_solver", "auto") != "sgd" and task_member(task, "linear_solver") == "lbfgs"
    if auto and chosen == "linear-probe" and solved:
        reasons.append("The probe's head is solved on the cached features (L-BFGS, strength chosen on held-out rows): no epochs to plan.")
    elif auto and chosen == "linear-probe":
        per_epoch = math.ceil(n_train / cfg.batch_size)
        if per_epoch * epochs < MIN_PROBE_STEPS:
            epochs = math.ceil(MIN_PROBE_STEPS / per_epoch)
            reasons.append(
                f"The probe trains for {epochs} epochs ({per_epoch} batch{'es' if per_epoch > 1 else ''} each) to take at least "
                f"{MIN_PROBE_STEPS} optimizer steps; epochs on cached features cost milliseconds."
            )
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
    return AutoChoice(chosen, epochs, reasons, facts, solved=chosen == "linear-probe" and solved)
