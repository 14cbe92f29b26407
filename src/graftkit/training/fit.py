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
from graftkit.errors import ConfigError
from graftkit.tasks import ClassificationTask, GenerativeModel, GraftModel, balanced_class_weights
from graftkit.training.checkpoint import Checkpointer, load_resume_point, save_safetensors
from graftkit.training.config import TrainConfig
from graftkit.engine import LocalEngine, choose_channels_last, choose_precision, resolve_device, tune_malloc
from graftkit.training.finetune import train_finetune
from graftkit.training.inputs import ImageInputs, TextInputs
from graftkit.training.loop import Callback, Decision, LoopState
from graftkit.training.probe import train_probe
from graftkit.engine.progress import info


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
    strategy: str | None = None,
    out: str | Path | None = None,
    val: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Iterable[Callback] = (),
    **settings: Any,
) -> Run:
    """Train a new head (and optionally the backbone) on labelled data and write a run directory.

    Args:
        data: images (`ROOT/<class>/*`, `ROOT/{train,val,test}/<class>/*`, or a CSV/JSONL manifest
            of paths) or, for a text model, a CSV/TSV/JSONL/TXT file (or a folder of
            `train.*`/`val.*`/`test.*` files).
        model: model id; `graft models` lists them. `hf:` ids and `minilm` are text models.
        strategy: `linear-probe`, `finetune`, `partial:N`, `gradual` or `lora` (None: linear-probe,
            or finetune for seq2seq / causal-lm).
        out: run directory; default `runs/<data name>-<strategy>`.
        val: a separate validation folder or file (else a seeded, stratified split is made).
        resume: continue an interrupted run in `out` from its last checkpoint (its settings are reused).
        overwrite: replace a finished run already in `out`.
        callbacks: extra loop callbacks (`on_epoch_end(state) -> Decision | None`).
        **settings: any `TrainConfig` field (`task`, `epochs`, `lr`, `batch_size`, `max_length`, ...).

    Returns:
        The finished `Run`.

    Raises:
        ConfigError, DataError, UnknownModelError, WeightsNotAvailableError, RunDirError.

    Example:
        >>> run = graftkit.fit("data/flowers", model="efficientnet_lite0", strategy="finetune", epochs=5)
        >>> graftkit.load(run.dir).predict(["rose.jpg"])
    """
    from graftkit.tasks import GENERATIVE_TASKS

    task_name = settings.get("task", "classification")
    if strategy is None:
        strategy = "finetune" if task_name in GENERATIVE_TASKS else "linear-probe"
    cfg = TrainConfig.from_settings(model=model, strategy=strategy, **settings)
    tune_malloc()
    out = Path(out) if out is not None else Path("runs") / f"{Path(data).stem}-{cfg.parsed_strategy.kind}"
    run_dir = rundir.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        saved = rundir.read_json(run_dir / "graft.json")["config"]
        cfg = TrainConfig.from_settings(**saved)
        info(f"resuming {run_dir} with its saved settings")

    t0 = time.perf_counter()
    modality = model_modality(cfg.model)
    _check_task_fits(cfg, modality)
    dataset = read_data(data, val, cfg, modality)
    backbone = load_backbone_for(cfg, modality)
    task = _build_task(cfg, dataset)
    plan, plan_key = None, "auto" if cfg.strategy == "auto" else "time_budget"
    if not resume and (cfg.strategy == "auto" or cfg.time_budget is not None):
        from graftkit.training.auto import plan_run  # --strategy auto / --time-budget: measure, decide, fit the epochs

        plan = plan_run(dataset, backbone, task, cfg, elapsed_s=time.perf_counter() - t0)
        cfg = dataclasses.replace(cfg, strategy=plan.strategy, epochs=plan.epochs)
    cfg = cfg.resolved(modality, task.default_monitor)
    if cfg.monitor not in task.metric_names:
        raise ConfigError(f"--monitor {cfg.monitor!r} is not a {task.name} metric; choose one of {', '.join(task.metric_names)}")
    strat = cfg.parsed_strategy
    generative = task.name in GENERATIVE_TASKS
    if generative and strat.kind == "linear-probe":
        raise ConfigError(f"--task {task.name} trains the model's own output layer: use --strategy finetune, lora, partial:N or gradual, not linear-probe")
    arch = backbone.weights.arch
    device = resolve_device(cfg.device)
    train_precision, train_reason = choose_precision(arch, training=strat.kind != "linear-probe", requested=cfg.precision, device=device)
    infer_precision, infer_reason = choose_precision(arch, training=False, requested=cfg.precision, device=device)
    channels_last = modality == "image" and choose_channels_last(arch, cfg.channels_last)
    inputs = (TextInputs if modality == "text" else ImageInputs)(dataset, backbone, cfg)
    n_what = "texts" if modality == "text" else "images"
    info(
        f"model {cfg.model} ({arch}), task {task.name}, strategy {strat}"
        + (f", {len(task.classes)} classes" if task.classes else "")
        + f", {len(dataset.train)} train / {len(dataset.val)} val {n_what} ({dataset.split}); "
        f"device {device}, precision: train {train_precision}, inference {infer_precision}"
    )

    precision = {
        "train": train_precision,
        "train_reason": train_reason,
        "inference": infer_precision,
        "inference_reason": infer_reason,
        "channels_last": channels_last,
        "device": device,
    }
    meta = _run_metadata(backbone, task, cfg, dataset, precision, inputs.summary(), generative)
    if plan is not None:
        meta[plan_key] = plan.to_dict()
    if resume:  # keep the original start time
        meta["created"] = rundir.read_json(run_dir / "graft.json").get("created", meta["created"])
    if modality == "text":
        backbone.save_architecture(run_dir / "hf")  # config + tokenizer: the run rebuilds offline
    if not resume:
        rundir.write_json(run_dir / "graft.json", meta)
        rundir.write_json(run_dir / "split.json", dataset.to_dict(include_files=True))  # the exact split, for reproducing it
        (run_dir / "history.jsonl").write_text("")

    head = None
    if not generative:
        with torch.random.fork_rng():  # the head's init depends on the seed alone, not on what ran before
            torch.manual_seed(cfg.seed)
            head = task.build_head(backbone.num_features, cfg.head_dropout)
    all_callbacks: list[Callback] = [Checkpointer(run_dir)]
    if cfg.patience is not None:
        all_callbacks.append(EarlyStopping(cfg.patience))
    if cfg.time_budget is not None:
        from graftkit.training.budget import TimeBudget

        all_callbacks.append(TimeBudget(cfg.time_budget, start=t0))
    all_callbacks.extend(callbacks)
    infer_engine = LocalEngine(device, precision=infer_precision, channels_last=channels_last)
    resume_point = load_resume_point(run_dir) if resume else None

    if strat.kind == "linear-probe":
        result, outputs, feature_stats = train_probe(inputs, backbone, head, task, cfg, infer_engine, all_callbacks, resume_point)
        trained = GraftModel(backbone, head)
    else:
        train_engine = LocalEngine(device, precision=train_precision, channels_last=channels_last)
        feature_stats = None
        if cfg.head_init == "probe" and resume_point is None and head is not None:
            # LP-FT: a head that already fits the frozen features does not wreck them in the first steps.
            info("head warm-up: linear probe on cached features before fine-tuning")
            probe_cfg = dataclasses.replace(cfg, strategy="linear-probe", epochs=10, lr=None, patience=None)
            _, _, feature_stats = train_probe(inputs, backbone, head, task, probe_cfg, infer_engine, [], None, splits=("train", "val"))
        if strat.kind == "lora":
            from graftkit.strategies import apply_lora

            meta["lora"] = apply_lora(backbone, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
            rundir.write_json(run_dir / "graft.json", meta)
        trained = GenerativeModel(backbone) if generative else GraftModel(backbone, head)
        result, outputs = train_finetune(inputs, trained, task, cfg, train_engine, infer_engine, all_callbacks, resume_point)

    final = _final_metrics(task, outputs, trained, dataset, cfg)
    if task.name == "classification":  # temperature scaling on val; ECE per split; reliability diagram
        from graftkit.evaluation.calibration import calibrate_run

        meta["calibration"] = calibrate_run(outputs, final, run_dir)
    meta["task"] = task.to_dict()  # multi-label thresholds are tuned on validation data
    metrics = _write_results(run_dir, trained, meta, result, final, feature_stats, time.perf_counter() - t0)
    from graftkit.evaluation import write_report

    report = write_report(
        run_dir,
        title=f"{cfg.model} · {task.name} · {strat} · {Path(str(data)).name}",
        metrics=final["val"],
        split_name="val",
        history=result.history,
        settings={"model": meta["model"], "strategy": str(strat), "precision": precision, **cfg.to_dict()},
        data_summary=meta["data"],
        best_epoch=metrics["best_epoch"],
        examples=final["val"].get("examples"),
        auto=meta.get("auto") or meta.get("time_budget"),
        calibration=meta.get("calibration"),
    )
    from graftkit.evaluation.model_card import write_model_card

    write_model_card(run_dir)  # MODEL_CARD.md: data, metrics per class, settings, intended use, how to load
    headline = _headline(task, final["val"])
    info(f"[bold]val {headline}[/bold] (best epoch {metrics['best_epoch']}, {metrics['train_seconds']:.1f} s) → {run_dir}  report: {report}")
    return Run(run_dir, metrics, result.history, cfg)


def model_modality(model_id: str) -> str:
    """`text` for transformers ids (`hf:…`, `minilm`, and their `scratch:` twins), else `image`.
    A string check, not `resolve`: the selection tools ask it for every candidate before
    reporting all unknown ids together."""
    name = model_id.removeprefix("scratch:")
    return "text" if name.startswith("hf:") or name == "minilm" else "image"


def _check_task_fits(cfg: TrainConfig, modality: str) -> None:
    if modality == "image" and cfg.task != "classification":
        raise ConfigError(
            f"--task {cfg.task} is available for text models (hf:…, minilm); image runs do single-label "
            "classification — drop --task, or choose a text model"
        )


def read_data(data, val, cfg: TrainConfig, modality: str):
    if modality == "text":
        from graftkit.data.text import read_text_data

        return read_text_data(
            data, task=cfg.task, text_col=cfg.text_col, label_col=cfg.label_col, val=val,
            val_fraction=cfg.val_fraction, seed=cfg.seed, encoding=cfg.encoding,
        )
    from graftkit.data import read_image_data

    return read_image_data(data, val=val, val_fraction=cfg.val_fraction, seed=cfg.seed)


def load_backbone_for(cfg: TrainConfig, modality: str):
    if modality == "text":
        head_kind = cfg.task if cfg.task in ("seq2seq", "causal-lm") else "features"
        return load_backbone(
            cfg.model, arch=cfg.arch, offline=cfg.offline, seed=cfg.seed, head_kind=head_kind,
            trust_remote_code=cfg.trust_remote_code, max_length=cfg.max_length, pooling=cfg.pooling,
        )
    backbone = load_backbone(cfg.model, arch=cfg.arch, offline=cfg.offline, seed=cfg.seed)
    if cfg.image_size is not None:
        _check_image_size(backbone, cfg.image_size)
        backbone.preprocess = dataclasses.replace(backbone.preprocess, input_size=cfg.image_size)
    return backbone


def _build_task(cfg: TrainConfig, dataset):
    from graftkit.tasks import CausalLMTask, MultiLabelTask, RegressionTask, Seq2SeqTask

    if cfg.task == "multilabel":
        return MultiLabelTask(dataset.classes, label_smoothing=cfg.label_smoothing)
    if cfg.task == "regression":
        return RegressionTask.from_targets([s.label for s in dataset.train])
    if cfg.task in ("seq2seq", "causal-lm"):
        cls = Seq2SeqTask if cfg.task == "seq2seq" else CausalLMTask
        return cls(num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens)
    weights = None
    if cfg.class_weights == "balanced":
        class_to_idx = {c: i for i, c in enumerate(dataset.classes)}
        weights = balanced_class_weights([class_to_idx[s.label] for s in dataset.train], len(dataset.classes))
    return ClassificationTask(dataset.classes, label_smoothing=cfg.label_smoothing, class_weights=weights)


def _final_metrics(task, outputs: dict, model: nn.Module, dataset, cfg: TrainConfig) -> dict[str, Any]:
    """The report's metrics per split from the best weights' outputs; multi-label thresholds are
    fitted on validation first, and generation tasks add BLEU / chrF from generated text."""
    if task.name == "multilabel" and "val" in outputs:
        probs, y, _ = outputs["val"]
        task.fit_thresholds(probs, y)
    final = {split: task.full_metrics(*out_) for split, out_ in outputs.items()}
    if hasattr(task, "generate"):
        for split in final:
            samples = getattr(dataset, split)
            hyps = task.generate(model.backbone, [s.text for s in samples], batch_size=cfg.batch_size)
            refs = [s.target or "" for s in samples]
            final[split].update(task.text_metrics(hyps, refs) if any(refs) else {})
            final[split]["examples"] = [
                {"input": s.text, "reference": r, "generated": h} for s, r, h in list(zip(samples, refs, hyps))[:10]
            ]
    return final


def _headline(task, metrics: dict[str, Any]) -> str:
    names = {"classification": ("accuracy",), "multilabel": ("macro_f1", "micro_f1"), "regression": ("mae", "r2"),
             "seq2seq": ("bleu", "chrf", "perplexity"), "causal-lm": ("perplexity",)}[task.name]
    return ", ".join(f"{n} {metrics[n]:.3f}" for n in names if n in metrics)


def _run_metadata(backbone: nn.Module, task, cfg: TrainConfig, dataset, precision: dict[str, Any], inputs_summary: dict, generative: bool) -> dict[str, Any]:
    """graft.json: everything needed to rebuild, trust and reproduce the run (DESIGN.md §5)."""
    head = None if generative else {
        "type": "linear", "in_features": backbone.num_features, "out_features": max(task.num_classes, 1), "dropout": cfg.head_dropout,
    }
    data = dataset.to_dict()
    if inputs_summary:
        data["tokens"] = inputs_summary
    meta = {
        "schema_version": rundir.SCHEMA_VERSION,
        "status": "training",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "modality": getattr(backbone, "modality", "image"),
        "model": backbone.weights.to_dict(),
        "task": task.to_dict(),
        "preprocess": backbone.preprocess.to_dict(),
        "head": head,
        "strategy": str(cfg.parsed_strategy),
        "config": cfg.to_dict(),
        "precision": precision,
        "data": data,
        "versions": rundir.library_versions(),
    }
    if meta["modality"] == "text":
        meta["text"] = {"head_kind": backbone.head_kind, "kind": backbone.kind, "architecture_dir": "hf"}
    return meta


def _write_results(run_dir: Path, model: nn.Module, meta: dict, result, final: dict, feature_stats, seconds: float) -> dict[str, Any]:
    """Write model.safetensors and metrics.json, then mark graft.json done; return the metrics."""
    state = model.state_dict()
    save_safetensors(state, run_dir / "model.safetensors", metadata={"format": "graftkit", "schema": "1"})
    if "lora" in meta:  # the adapters and head alone, small enough to share (model.safetensors is self-contained)
        small = {k: v for k, v in state.items() if "lora_" in k or k.startswith("head.")}
        save_safetensors(small, run_dir / "adapters.safetensors", metadata={"format": "graftkit-lora", "base": str(meta["model"].get("sha256"))})
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
