"""`fit()`: data + pretrained model + strategy → a finished run directory.

This is the builder that translates a `TrainConfig` into the objects the loop takes; it holds no
training logic of its own.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from graftkit import rundir
from graftkit.sources import load_backbone
from graftkit.tasks import ClassificationTask, GraftModel, balanced_class_weights
from graftkit.training.checkpoint import Checkpointer, load_resume_point, save_safetensors
from graftkit.training.config import TrainConfig
from graftkit.training.engine import LocalEngine, choose_channels_last, choose_precision, tune_malloc
from graftkit.training.finetune import train_finetune
from graftkit.training.loop import Callback, Decision, LoopState
from graftkit.training.probe import train_probe
from graftkit.training.progress import info


@dataclass
class Run:
    """A finished training run."""

    dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: TrainConfig

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
    tune_malloc()
    out = Path(out) if out is not None else Path("runs") / f"{Path(data).stem}-{cfg.parsed_strategy.kind}"
    run_dir = rundir.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        saved = rundir.read_json(run_dir / "graft.json")["config"]
        cfg = TrainConfig.from_settings(**saved)
        info(f"resuming {run_dir} with its saved settings")

    t0 = time.perf_counter()
    images = read_image_data(data, val=val, val_fraction=cfg.val_fraction, seed=cfg.seed)
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

    precision = {
        "train": train_precision,
        "train_reason": train_reason,
        "inference": infer_precision,
        "inference_reason": infer_reason,
        "channels_last": channels_last,
    }
    meta = _run_metadata(backbone, task, cfg, images, precision)
    if resume:  # keep the original start time
        meta["created"] = rundir.read_json(run_dir / "graft.json").get("created", meta["created"])
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
        result, final, feature_stats = train_probe(images, backbone, head, task, cfg, infer_engine, all_callbacks, resume_point)
    else:
        train_engine = LocalEngine(precision=train_precision, channels_last=channels_last)
        feature_stats = None
        if cfg.head_init == "probe" and resume_point is None:
            # LP-FT: a head that already fits the frozen features does not wreck them in the first steps.
            info("head warm-up: linear probe on cached features before fine-tuning")
            probe_cfg = dataclasses.replace(cfg, strategy="linear-probe", epochs=10, lr=None, patience=None)
            _, _, feature_stats = train_probe(images, backbone, head, task, probe_cfg, infer_engine, [], None, splits=("train", "val"))
        result, final = train_finetune(images, backbone, head, task, cfg, train_engine, infer_engine, all_callbacks, resume_point)

    metrics = _write_results(run_dir, GraftModel(backbone, head), meta, result, final, feature_stats, time.perf_counter() - t0)
    from graftkit.evaluation import write_report

    report = write_report(
        run_dir,
        title=f"{cfg.model} · {strat} · {Path(str(data)).name}",
        metrics=final["val"],
        split_name="val",
        history=result.history,
        settings={"model": meta["model"], "strategy": str(strat), "precision": precision, **cfg.to_dict()},
        data_summary=meta["data"],
        best_epoch=metrics["best_epoch"],
    )
    info(
        f"[bold]val accuracy {final['val']['accuracy']:.3f}[/bold] (best epoch {metrics['best_epoch']}, "
        f"{metrics['train_seconds']:.1f} s) → {run_dir}  report: {report}"
    )
    return Run(run_dir, metrics, result.history, cfg)


def _run_metadata(backbone: nn.Module, task: ClassificationTask, cfg: TrainConfig, images, precision: dict[str, Any]) -> dict[str, Any]:
    """graft.json: everything needed to rebuild, trust and reproduce the run (DESIGN.md §5)."""
    return {
        "schema_version": rundir.SCHEMA_VERSION,
        "status": "training",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": backbone.weights.to_dict(),
        "task": {"name": task.name, "classes": task.classes},
        "preprocess": backbone.preprocess.to_dict(),
        "head": {"type": "linear", "in_features": backbone.num_features, "out_features": task.num_classes, "dropout": cfg.head_dropout},
        "strategy": str(cfg.parsed_strategy),
        "config": cfg.to_dict(),
        "precision": precision,
        "data": images.to_dict(),
        "versions": rundir.library_versions(),
    }


def _write_results(run_dir: Path, model: nn.Module, meta: dict, result, final: dict, feature_stats, seconds: float) -> dict[str, Any]:
    """Write model.safetensors and metrics.json, then mark graft.json done; return the metrics."""
    save_safetensors(model.state_dict(), run_dir / "model.safetensors", metadata={"format": "graftkit", "schema": "1"})
    metrics = {
        "task": meta["task"]["name"],
        **final,
        "train_seconds": round(seconds, 2),
        "epochs": len(result.history),
        "best_epoch": None if result.best_epoch is None else result.best_epoch + 1,
        "stopped_early": result.stopped_early,
    }
    if feature_stats is not None:
        metrics["features"] = vars(feature_stats)
    rundir.write_json(run_dir / "metrics.json", metrics)
    meta.update(status="done", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    rundir.write_json(run_dir / "graft.json", meta)  # last: a run is "done" only when everything is on disk
    return metrics


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
