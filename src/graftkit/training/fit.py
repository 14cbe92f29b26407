"""`fit()`: data + pretrained model + strategy → a finished run directory, in three stages.

1. **plan** (`training/plan.py`): data read and validated, backbone resolved, task built, settings
   resolved. Everything that can fail on user input fails there, before any training.
2. **train** (`train_run`, here): the probe or fine-tuning path through the one loop, with
   checkpoints, early stopping and the time budget as loop callbacks.
3. **finish** (`training/finish.py`): final metrics, calibration, model.safetensors, metrics.json,
   report and model card; graft.json marked done last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from graftkit import rundir
from graftkit.engine import enable_grad_checkpointing, is_main_process, make_engine
from graftkit.engine.progress import info
from graftkit.errors import ConfigError
from graftkit.training.callbacks import EarlyStopping
from graftkit.training.checkpoint import Checkpointer, load_resume_point
from graftkit.training.config import TrainConfig
from graftkit.training.finetune import train_finetune
from graftkit.training.finish import finish_run, run_metadata
from graftkit.training.inputs import make_inputs
from graftkit.training.loop import Callback, LoopResult
from graftkit.training.plan import FitPlan, plan_fit
from graftkit.training.probe import train_probe


WARMUP_EPOCHS = 10
"""LP-FT (`--head-init probe`): epochs of the head warm-up on cached features."""

@dataclass
class Run:
    """A finished training run. `graftkit.load(run.dir)` loads it for prediction."""

    dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: TrainConfig


@dataclass
class Trained:
    """What the training stage hands the finishing stage."""

    model: nn.Module
    """The trained model with its best weights."""
    result: LoopResult
    outputs: dict[str, tuple[Any, Any, float]]
    """Per evaluated split: the task's collected outputs, the targets and the mean loss."""
    feature_stats: Any
    meta: rundir.RunSpec
    """graft.json as written at the start of training (status `training`)."""
    probe: dict[str, Any] | None = None
    """How the L-BFGS probe solved the head (strength, selection, refit), None otherwise."""
    warmup_history: list[dict[str, Any]] | None = None
    """LP-FT: the head warm-up's epochs (probe on cached features) before fine-tuning."""
    adaptation: dict[str, Any] | None = None
    """Domain adaptation (`--target-unlabeled`): scores, choice and diagnostics (training/adapt.py)."""


def fit(
    data: str | Path,
    *,
    model: str | None = None,
    strategy: str | None = None,
    out: str | Path | None = None,
    val: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Iterable[Callback] = (),
    track: str | None = None,
    **settings: Any,
) -> Run:
    """Train a new head (and optionally the backbone) on labelled data and write a run directory.

    Args:
        data: images (`ROOT/<class>/*`, `ROOT/{train,val,test}/<class>/*`, or a CSV/JSONL manifest
            of paths; multi-label `a|b` and numeric labels in manifests) or, for a text model, a
            CSV/TSV/JSONL/TXT file (or a folder of `train.*`/`val.*`/`test.*` files).
        model: model id (None: efficientnet_lite0, or on `resume` the run's own); `graft models`
            lists them. `hf:` ids and `minilm` are text models.
        strategy: `linear-probe`, `finetune`, `partial:N`, `gradual`, `lora`, `contrastive` (text
            classification: the body on pairs of labelled texts, then the probe) or `auto` (None: the
            task's default — linear-probe, or finetune for seq2seq / causal-lm).
        out: run directory; default `runs/<data name>-<strategy>`.
        val: a separate validation folder or file (else a seeded, stratified split is made).
        resume: continue an interrupted run in `out` from its last checkpoint with its saved settings;
            refused for a finished run, other data, other classes, or settings given that differ.
        overwrite: replace a run already in `out`: the new run is built beside it and replaces it
            only once it has finished (a failed or interrupted run leaves the old one as it was).
        callbacks: extra loop callbacks (`on_epoch_end(state) -> Decision | None`, optionally
            `on_batch_end`).
        track: `mlflow` or `tensorboard`: also log the parameters, every epoch's metrics and the
            run's files there (rank 0 only; `training/tracking.py`).
        **settings: any `TrainConfig` field (`task`, `epochs`, `lr`, `batch_size`, `max_length`, ...).

    Returns:
        The finished `Run`.

    Raises:
        ConfigError, DataError, UnknownModelError, WeightsNotAvailableError, RunDirError.

    Example:
        >>> run = graftkit.fit("data/flowers", model="efficientnet_lite0", strategy="finetune", epochs=5)
        >>> graftkit.load(run.dir).predict(["rose.jpg"])
    """
    plan = plan_fit(data, model=model, strategy=strategy, out=out, val=val, resume=resume, overwrite=overwrite, settings=settings)
    tracker = None
    if track is not None and is_main_process():
        from graftkit.training.tracking import open_tracker

        tracker = open_tracker(track, plan)
        callbacks = [*callbacks, tracker]
    try:
        if plan.cfg.target_unlabeled is not None:  # domain adaptation: one or more trainings, one kept
            from graftkit.training.adapt import train_adapted

            trained = train_adapted(plan, list(callbacks), train_run)
        else:
            trained = train_run(plan, callbacks)
        if not is_main_process():  # several processes (--devices N): rank 0 alone writes the run's results
            return Run(plan.destination, {}, trained.result.history, plan.cfg)
        metrics = finish_run(plan, trained)
    except BaseException:
        if tracker is not None:
            tracker.fail()
        raise
    if tracker is not None:
        tracker.finish(plan.destination, metrics)
    return Run(plan.destination, metrics, trained.result.history, plan.cfg)


def train_run(plan: FitPlan, callbacks: Iterable[Callback] = ()) -> Trained:
    """The training stage: write the run's start, then the probe or the fine-tuning path."""
    cfg, task, backbone, run_dir, precision = plan.cfg, plan.task, plan.backbone, plan.run_dir, plan.precision
    strat = cfg.parsed_strategy
    dataset = plan.dataset
    inputs = make_inputs(dataset, backbone, cfg)
    if cfg.grad_checkpointing:
        if strat.kind == "linear-probe" and task.backbone_head == "features":
            raise ConfigError("--grad-checkpointing saves memory in fine-tuning's backward pass; the linear probe has none: "
                              "drop the flag or use --strategy finetune, partial:N, gradual or lora")  # fmt: skip
        info(f"gradient checkpointing: {enable_grad_checkpointing(backbone)}")
    train_engine = make_engine(precision.device, precision.train, precision.channels_last)  # several processes: Accelerate's
    infer_engine = make_engine(precision.device, precision.inference, precision.channels_last, training=False)
    train_engine.wait()  # several processes: all have planned (and checked --out) before rank 0 writes into it
    main = train_engine.is_main
    info(
        f"model {cfg.model} ({backbone.weights.arch}), task {task.name}, strategy {strat}"
        + (f", {len(task.classes)} classes" if task.classes else "")
        + f", {len(dataset.train)} train / {len(dataset.val)} val {inputs.noun} ({dataset.split}); "
        f"device {precision.device}, precision: train {precision.train}, inference {precision.inference}"
    )
    meta = run_metadata(plan, inputs.summary())
    if plan.resume:  # keep the original start time
        meta = meta.replace(created=rundir.RunSpec.read(run_dir).created)
    if hasattr(backbone, "save_architecture") and main:
        backbone.save_architecture(run_dir / "hf")  # config + tokenizer: a text run rebuilds offline
    if not plan.resume and main:
        meta.write(run_dir)
        rundir.write_json(run_dir / "split.json", dataset.to_dict(include_files=True))  # the exact split, for reproducing it
        (run_dir / "history.jsonl").write_text("")

    with torch.random.fork_rng():  # the head's init depends on the seed alone, not on what ran before
        torch.manual_seed(cfg.seed)
        model = task.build_model(backbone, cfg.head_dropout)
    head = getattr(model, "head", None)
    all_callbacks: list[Callback] = [Checkpointer(run_dir)] if main else []
    if cfg.patience is not None:
        all_callbacks.append(EarlyStopping(cfg.patience))
    if cfg.time_budget is not None:
        from graftkit.training.budget import TimeBudget

        all_callbacks.append(TimeBudget(cfg.time_budget, start=plan.started))
    all_callbacks.extend(callbacks)
    resume_point = load_resume_point(run_dir, rewrite_history=main) if plan.resume else None

    if strat.kind == "contrastive":  # the body on pairs of labelled texts, then the probe (training/contrastive.py)
        from graftkit.training.contrastive import train_contrastive

        result, outputs, feature_stats, probe = train_contrastive(inputs, backbone, head, task, cfg, train_engine, infer_engine, all_callbacks)
        return Trained(model, result, outputs, feature_stats, meta, probe)
    if strat.kind == "linear-probe" and task.backbone_head == "features":
        result, outputs, feature_stats, probe = train_probe(inputs, backbone, head, task, cfg, infer_engine, all_callbacks, resume_point)
        return Trained(model, result, outputs, feature_stats, meta, probe)
    feature_stats, warmup = None, None
    if cfg.head_init == "probe" and resume_point is None and head is not None:
        # LP-FT: a head that already fits the frozen features does not wreck them in the first steps.
        info(f"head warm-up: linear probe on cached features for {WARMUP_EPOCHS} epochs, then fine-tuning")
        # The warm-up trains only the heads on frozen features, and a linear-probe config refuses what needs a
        # trained backbone: PCGrad (on separate heads it is equal weighting) and --regularize (nothing to pull);
        # both act in the fine-tuning that follows.
        weighting = "equal" if cfg.task_weighting.startswith("pcgrad") else cfg.task_weighting
        probe_cfg = dataclasses.replace(cfg, strategy="linear-probe", epochs=WARMUP_EPOCHS, lr=None, patience=None, probe_solver="sgd",
                                        task_weighting=weighting, regularize=None, regularize_strength=None)  # fmt: skip
        warm, _, feature_stats, _ = train_probe(inputs, backbone, head, task, probe_cfg, infer_engine, [], None, splits=("train", "val"),
                                                phase="head warm-up")  # fmt: skip
        warmup = warm.history
    if strat.kind == "lora":
        from graftkit.strategies import apply_lora

        meta = meta.replace(lora=apply_lora(backbone, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout))
        if main:
            meta.write(run_dir)
    result, outputs = train_finetune(inputs, model, task, cfg, train_engine, infer_engine, all_callbacks, resume_point)
    return Trained(model, result, outputs, feature_stats, meta, warmup_history=warmup)
