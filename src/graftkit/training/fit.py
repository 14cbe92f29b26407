"""`fit()`: data + pretrained model + strategy → a finished run directory.

This is the builder that translates a `TrainConfig` into the objects the loop takes; it holds no
training logic of its own.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from graftkit import rundir
from graftkit.strategies import (
    count_parameters,
    freeze_layer_groups,
    layerwise_lr_groups,
    set_frozen_norms_eval,
    trainable_group_count,
)
from graftkit.tasks import ClassificationTask, GraftModel, balanced_class_weights
from graftkit.training.checkpoint import Checkpointer, load_resume_point, save_safetensors
from graftkit.training.config import TrainConfig
from graftkit.training.engine import LocalEngine, choose_channels_last, choose_precision
from graftkit.training.features import FeatureStats, extract_features, feature_cache_key
from graftkit.training.loop import Callback, Decision, LoopOptions, LoopResult, LoopState, predict_probs, train_loop
from graftkit.training.progress import info
from graftkit.training.schedule import build_scheduler


@dataclass
class Run:
    """A finished training run."""

    dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: TrainConfig
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self):
        """The trained model as a `Predictor` (same as `graftkit.load(run.dir)`)."""
        from graftkit.deploy.predictor import load

        return load(self.dir)


class EarlyStopping:
    """Stop when the monitored validation metric has not improved for `patience` epochs."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, state: LoopState) -> Decision | None:
        if state.best_epoch is not None and state.epoch - state.best_epoch >= self.patience:
            return Decision(stop=True, reason=f"no improvement for {self.patience} epochs (early stopping)")
        return None


def fit(
    data: str | Path,
    *,
    model: str = "efficientnet_lite0",
    strategy: str = "linear-probe",
    out: str | Path | None = None,
    val: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Iterable[Callback] = (),
    **settings: Any,
) -> Run:
    """Train a new head (and optionally the backbone) on labelled images and write a run directory.

    Args:
        data: image folder (`ROOT/<class>/*` or `ROOT/{train,val,test}/<class>/*`) or CSV/JSONL manifest.
        model: model id; `graft models` lists them.
        strategy: `linear-probe`, `finetune`, `partial:N` or `gradual`.
        out: run directory; default `runs/<data name>-<strategy>`.
        val: a separate validation folder or manifest (else a seeded stratified split is made).
        resume: continue an interrupted run in `out` from its last checkpoint (its settings are reused).
        overwrite: replace a finished run already in `out`.
        callbacks: extra loop callbacks (`on_epoch_end(state) -> Decision | None`).
        **settings: any `TrainConfig` field (`epochs`, `lr`, `batch_size`, ...).

    Returns:
        The finished `Run`.

    Raises:
        ConfigError, DataError, UnknownModelError, WeightsNotAvailableError, RunDirError.

    Example:
        >>> run = graftkit.fit("data/flowers", model="efficientnet_lite0", strategy="finetune", epochs=5)
        >>> graftkit.load(run.dir).predict(["rose.jpg"])
    """
    from graftkit.data import read_image_data

    cfg = TrainConfig.from_settings(model=model, strategy=strategy, **settings)
    out = Path(out) if out is not None else Path("runs") / f"{Path(data).stem}-{cfg.parsed_strategy.kind}"
    run_dir = rundir.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        saved = rundir.read_json(run_dir / "graft.json")["config"]
        cfg = TrainConfig.from_settings(**saved)
        info(f"resuming {run_dir} with its saved settings")

    t0 = time.perf_counter()
    images = read_image_data(data, val=val, val_fraction=cfg.val_fraction, seed=cfg.seed)
    from graftkit.sources import load_backbone

    backbone = load_backbone(cfg.model, arch=cfg.arch, offline=cfg.offline, seed=cfg.seed)
    if cfg.image_size is not None:
        _check_image_size(backbone, cfg.image_size)
        backbone.preprocess = dataclasses.replace(backbone.preprocess, input_size=cfg.image_size)
    weights = None
    if cfg.class_weights == "balanced":
        class_to_idx = {c: i for i, c in enumerate(images.classes)}
        weights = balanced_class_weights([class_to_idx[s.label] for s in images.train], len(images.classes))
    task = ClassificationTask(images.classes, label_smoothing=cfg.label_smoothing, class_weights=weights)
    strat = cfg.parsed_strategy
    arch = backbone.weights.arch
    train_precision, train_reason = choose_precision(arch, training=strat.kind != "linear-probe", requested=cfg.precision)
    infer_precision, infer_reason = choose_precision(arch, training=False, requested=cfg.precision)
    channels_last = choose_channels_last(arch, cfg.channels_last)
    info(
        f"model {cfg.model} ({arch}), strategy {strat}, {len(images.classes)} classes, "
        f"{len(images.train)} train / {len(images.val)} val images ({images.split}); "
        f"precision: train {train_precision}, inference {infer_precision}"
    )

    meta = {
        "schema_version": rundir.SCHEMA_VERSION,
        "status": "training",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": backbone.weights.to_dict(),
        "task": {"name": task.name, "classes": task.classes},
        "preprocess": backbone.preprocess.to_dict(),
        "head": {"type": "linear", "in_features": backbone.num_features, "out_features": task.num_classes, "dropout": cfg.head_dropout},
        "strategy": str(strat),
        "config": cfg.to_dict(),
        "precision": {
            "train": train_precision,
            "train_reason": train_reason,
            "inference": infer_precision,
            "inference_reason": infer_reason,
            "channels_last": channels_last,
        },
        "data": images.to_dict(),
        "versions": rundir.library_versions(),
    }
    if not resume:
        rundir.write_json(run_dir / "graft.json", meta)
        rundir.write_json(run_dir / "split.json", images.to_dict(include_files=True))  # the exact split, for reproducing it
        (run_dir / "history.jsonl").write_text("")

    with torch.random.fork_rng():  # the head's init depends on the seed alone, not on what ran before
        torch.manual_seed(cfg.seed)
        head = task.build_head(backbone.num_features, cfg.head_dropout)
    all_callbacks: list[Callback] = [Checkpointer(run_dir)]
    if cfg.patience is not None:
        all_callbacks.append(EarlyStopping(cfg.patience))
    all_callbacks.extend(callbacks)
    infer_engine = LocalEngine(precision=infer_precision, channels_last=channels_last)
    resume_point = load_resume_point(run_dir) if resume else None

    if strat.kind == "linear-probe":
        result, final, feature_stats = _train_probe(images, backbone, head, task, cfg, infer_engine, all_callbacks, resume_point)
    else:
        train_engine = LocalEngine(precision=train_precision, channels_last=channels_last)
        result, final = _train_finetune(images, backbone, head, task, cfg, train_engine, infer_engine, all_callbacks, resume_point)
        feature_stats = None

    graft_model = GraftModel(backbone, head)
    save_safetensors(graft_model.state_dict(), run_dir / "model.safetensors", metadata={"format": "graftkit", "schema": "1"})
    train_seconds = time.perf_counter() - t0
    metrics = {
        "task": task.name,
        **final,
        "train_seconds": round(train_seconds, 2),
        "epochs": len(result.history),
        "best_epoch": None if result.best_epoch is None else result.best_epoch + 1,
        "stopped_early": result.stopped_early,
    }
    if feature_stats is not None:
        metrics["features"] = vars(feature_stats)
    rundir.write_json(run_dir / "metrics.json", metrics)
    meta.update(status="done", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    rundir.write_json(run_dir / "graft.json", meta)

    from graftkit.evaluation import write_report

    report = write_report(
        run_dir,
        title=f"{cfg.model} · {strat} · {Path(str(data)).name}",
        metrics=final["val"],
        split_name="val",
        history=result.history,
        settings={"model": meta["model"], "strategy": str(strat), "precision": meta["precision"], **cfg.to_dict()},
        data_summary=meta["data"],
        best_epoch=metrics["best_epoch"],
    )
    info(
        f"[bold]val accuracy {final['val']['accuracy']:.3f}[/bold] (best epoch {metrics['best_epoch']}, "
        f"{train_seconds:.1f} s) → {run_dir}  report: {report}"
    )
    return Run(run_dir, metrics, result.history, cfg)


def _check_image_size(backbone: nn.Module, size: int) -> None:
    """Fail early, with the flag's name, if the architecture cannot take `size` pixels."""
    from graftkit.errors import ConfigError

    try:
        with torch.no_grad():
            backbone.eval().forward_features(torch.zeros(1, 3, size, size))
    except Exception as e:  # the architecture's own message, e.g. a ViT's fixed patch grid
        raise ConfigError(
            f"--image-size {size} does not fit {backbone.weights.arch} ({str(e).splitlines()[0][:120]}); "
            f"leave it unset to use the model's own size {backbone.preprocess.input_size}"
        ) from None


def _loop_options(cfg: TrainConfig, resume_point, **kw: Any) -> LoopOptions:
    options = LoopOptions(epochs=cfg.epochs, monitor=cfg.monitor, grad_clip=cfg.grad_clip, seed=cfg.seed, **kw)
    if resume_point is not None:
        options.start_epoch = resume_point.epoch
        options.history = resume_point.history
        options.best_epoch, options.best_score = resume_point.best_epoch, resume_point.best_score
        options.best_state = resume_point.best_state
    return options


def _optimizer(param_groups: list[dict[str, Any]], cfg: TrainConfig, steps: int, resume_point):
    optimizer = torch.optim.AdamW(param_groups, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, steps, schedule=cfg.schedule, warmup_fraction=cfg.warmup_fraction)
    if resume_point is not None:
        optimizer.load_state_dict(resume_point.optimizer)
        scheduler.load_state_dict(resume_point.scheduler)
    return optimizer, scheduler


def _class_indices(samples, classes: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[s.label] for s in samples], dtype=torch.long)


def _eval_loader_factory(backbone: nn.Module, cfg: TrainConfig):
    from graftkit.data import ImageFileDataset, Sample, build_transform, make_loader

    transform = build_transform(backbone.preprocess, "none", train=False)

    def make(paths):
        dataset = ImageFileDataset([Sample(p, "") for p in paths], {"": 0}, transform)
        return make_loader(dataset, batch_size=max(cfg.batch_size, 64), shuffle=False, num_workers=_workers(cfg), seed=cfg.seed)

    return make


def _workers(cfg: TrainConfig) -> int:
    from graftkit.data import default_num_workers

    return default_num_workers() if cfg.num_workers is None else cfg.num_workers


def _train_probe(images, backbone, head, task, cfg, engine, callbacks, resume_point):
    """Linear probe: features once (cached across runs), then the head trains on them."""
    from torch.utils.data import DataLoader, TensorDataset

    freeze_layer_groups(backbone.layer_groups(), 0)
    backbone = engine.setup(backbone)
    cache = None
    if cfg.feature_cache:
        from graftkit.data.cache import FeatureCache

        cache = FeatureCache(feature_cache_key(backbone, engine.precision, engine.channels_last))
    make = _eval_loader_factory(backbone, cfg)
    stats = FeatureStats()
    feats = {}
    for split in ("train", "val", "test"):
        samples = getattr(images, split)
        if samples:
            feats[split], s = extract_features(backbone, [x.path for x in samples], make, engine, cache, description=f"{split} features")
            stats += s
    info(f"features: {stats.computed} computed, {stats.cached} from cache ({stats.seconds:.1f} s)")

    head_engine = LocalEngine()
    labels = {split: _class_indices(getattr(images, split), task.classes) for split in feats}
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(TensorDataset(feats["train"], labels["train"]), batch_size=cfg.batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(TensorDataset(feats["val"], labels["val"]), batch_size=1024)
    trainable, frozen = count_parameters(nn.ModuleList([backbone, head]))
    info(f"parameters: {trainable:,} trainable (head), {frozen:,} frozen (backbone)")

    if resume_point is not None:
        head.load_state_dict({k.removeprefix("head."): v for k, v in resume_point.model.items()})
    groups = [{"params": [p for p in head.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in head.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    optimizer, scheduler = _optimizer(groups, cfg, cfg.epochs * len(train_loader), resume_point)
    # The loop trains the head on cached features; state-dict keys stay `head.*` as in the full model.
    result = train_loop(
        GraftModel(PrecomputedFeatures(), head),
        train_loader,
        val_loader,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        engine=head_engine,
        options=_loop_options(cfg, resume_point, unit="feat"),
        callbacks=callbacks,
    )
    if result.best_state is not None:
        head.load_state_dict({k.removeprefix("head."): v for k, v in result.best_state.items()})
    final = {}
    for split in ("val", "test"):
        if split in feats:
            loader = DataLoader(TensorDataset(feats[split], labels[split]), batch_size=1024)
            probs, y, loss = predict_probs(head, loader, head_engine, task)
            final[split] = task.full_metrics(probs, y, loss=loss)
    return result, final, stats


class PrecomputedFeatures(nn.Module):
    """Stands in for a frozen backbone whose features are already computed (the probe's input)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, D) features pass straight to the head


def _train_finetune(images, backbone, head, task, cfg, engine, infer_engine, callbacks, resume_point):
    """Fine-tuning (`finetune`, `partial:N`, `gradual`): images through the whole model every step."""
    from graftkit.data import ImageFileDataset, build_batch_mix, build_transform, make_loader

    strat = cfg.parsed_strategy
    model = GraftModel(backbone, head)
    if resume_point is not None:
        model.load_state_dict(resume_point.model)
    model = engine.setup(model)
    groups = backbone.layer_groups()
    class_to_idx = {c: i for i, c in enumerate(task.classes)}
    train_ds = ImageFileDataset(images.train, class_to_idx, build_transform(backbone.preprocess, cfg.augment, train=True))
    eval_tf = build_transform(backbone.preprocess, "none", train=False)
    workers = _workers(cfg)
    drop_last = len(images.train) % cfg.batch_size == 1  # a batch of 1 breaks BatchNorm in train mode
    train_loader = make_loader(train_ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, seed=cfg.seed, drop_last=drop_last)
    val_loader = make_loader(ImageFileDataset(images.val, class_to_idx, eval_tf), batch_size=cfg.batch_size, shuffle=False, num_workers=workers, seed=cfg.seed)

    param_groups = layerwise_lr_groups(
        groups, head, lr=cfg.peak_lr, backbone_lr_scale=cfg.backbone_lr_scale, decay=cfg.lr_decay, weight_decay=cfg.weight_decay
    )
    optimizer, scheduler = _optimizer(param_groups, cfg, cfg.epochs * len(train_loader), resume_point)
    last_logged = [-1]

    def prepare_epoch(epoch: int) -> None:
        n = trainable_group_count(strat, len(groups), epoch)
        freeze_layer_groups(groups, n)
        set_frozen_norms_eval(groups, n)
        if n != last_logged[0]:
            trainable, frozen = count_parameters(model)
            info(f"parameters: {trainable:,} trainable, {frozen:,} frozen ({n}/{len(groups)} backbone groups train)")
            last_logged[0] = n

    result = train_loop(
        model,
        train_loader,
        val_loader,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        engine=engine,
        options=_loop_options(cfg, resume_point, prepare_epoch=prepare_epoch, batch_transform=build_batch_mix(cfg.mix, task.num_classes)),
        callbacks=callbacks,
    )
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    model = model.to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    final = {}
    for split in ("val", "test"):
        samples = getattr(images, split)
        if samples:
            loader = make_loader(ImageFileDataset(samples, class_to_idx, eval_tf), batch_size=cfg.batch_size, shuffle=False, num_workers=workers, seed=cfg.seed)
            probs, y, loss = predict_probs(infer_engine.setup(model), loader, infer_engine, task)
            final[split] = task.full_metrics(probs, y, loss=loss)
    model.to(memory_format=torch.contiguous_format)
    return result, final
