"""The last stage of `fit()`: final metrics, calibration, weights, metrics.json, report, model card.

graft.json is marked `done` last: a run directory is finished only when everything is on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graftkit.engine.progress import info
from graftkit.rundir import RunSpec, TextInfo, sha256_file, write_json
from graftkit.training.checkpoint import save_safetensors


def run_metadata(plan: Any, inputs_summary: dict[str, Any]) -> RunSpec:
    """graft.json at the start of training: everything needed to rebuild, trust and reproduce the
    run (DESIGN.md §5)."""
    backbone, task, cfg = plan.backbone, plan.task, plan.cfg
    data = plan.dataset.to_dict()
    if inputs_summary:
        data["clips" if plan.modality == "audio" else "tokens"] = inputs_summary  # audio: rate, clip length, longest clip
    text = None
    if hasattr(backbone, "save_architecture") and plan.modality == "text":  # rebuilt from its saved config + tokenizer (RUN/hf/)
        text = TextInfo(head_kind=backbone.head_kind, kind=backbone.kind, architecture_dir="hf")
    spec = RunSpec.new(
        backbone_weights=backbone.weights, task=task.to_dict(), preprocess=backbone.preprocess.to_dict(),
        head=task.head_spec(backbone.num_features, cfg.head_dropout), strategy=str(cfg.parsed_strategy),
        config=cfg.to_dict(), precision=plan.precision, data=data, modality=plan.modality, text=text,
    )  # fmt: skip
    return spec if plan.auto is None else spec.replace(**{plan.auto_key: plan.auto})


def finish_run(plan: Any, trained: Any) -> dict[str, Any]:
    """Score the best weights, calibrate, and write the run's results, report and model card.

    Returns:
        The content of metrics.json.
    """
    task, cfg, run_dir, meta = plan.task, plan.cfg, plan.run_dir, trained.meta
    samples = {split: list(getattr(plan.dataset, split)) for split in trained.outputs}
    final = task.finish(trained.outputs, trained.model.backbone, samples, cfg.batch_size)
    calibration = task.calibrate(trained.outputs, final, run_dir)
    if calibration is not None:
        meta = meta.replace(calibration=calibration)
    figures = final.get("val", {}).pop("figures", None)  # pictures a task drew for the report (detection: boxes, PR curves)
    meta = meta.replace(task=task.to_dict())  # what finish fitted on validation (e.g. multi-label thresholds)
    metrics = _write_results(run_dir, trained, meta, final, plan.started)
    from graftkit.evaluation import write_report
    from graftkit.rundir.model_card import write_model_card

    report = write_report(
        run_dir,
        title=f"{cfg.model} · {task.name} · {cfg.parsed_strategy} · {plan.data_path.name}",
        metrics=final["val"],
        split_name="val",
        history=trained.result.history,
        warmup=trained.warmup_history,
        settings={"model": meta.model.to_dict(), "strategy": meta.strategy, "precision": meta.precision.to_dict(), **cfg.to_dict(),
                  **({"probe": _probe_summary(trained.probe)} if getattr(trained, "probe", None) else {})},  # fmt: skip
        data_summary=meta.data,
        best_epoch=metrics["best_epoch"],
        examples=final["val"].get("examples"),
        auto=meta.auto or meta.time_budget,
        calibration=meta.calibration,
        figures=figures,
        adaptation=getattr(trained, "adaptation", None),
    )
    from graftkit.rundir import publish_run

    publish_run(run_dir, plan.destination)  # --overwrite: the finished run replaces the old one only now
    run_dir, report = plan.destination, plan.destination / Path(report).relative_to(plan.run_dir)
    write_model_card(run_dir, task.card())  # MODEL_CARD.md (names the run's final folder): data, metrics, settings, use
    headline = ", ".join(f"{n} {final['val'][n]:.3f}" for n in task.headline if n in final["val"])
    when = "solved" if metrics['best_epoch'] is None else f"best epoch {metrics['best_epoch']}"
    info(f"[bold]val {headline}[/bold] ({when}, {metrics['train_seconds']:.1f} s) → {run_dir}  report: {report}")
    return metrics


def _write_results(run_dir: Path, trained: Any, meta: RunSpec, final: dict[str, Any], started: float) -> dict[str, Any]:
    """Write model.safetensors and metrics.json, then mark graft.json done; return the metrics."""
    import time

    state = trained.model.state_dict()
    save_safetensors(state, run_dir / "model.safetensors", metadata={"format": "graftkit", "schema": "1"})
    if meta.lora is not None:  # the adapters and head alone, small enough to share (model.safetensors is self-contained)
        small = {k: v for k, v in state.items() if "lora_" in k or k.startswith("head.")}
        save_safetensors(small, run_dir / "adapters.safetensors", metadata={"format": "graftkit-lora", "base": str(meta.model.sha256)})
    result = trained.result
    metrics = {
        "task": meta.task["name"],
        **final,
        "train_seconds": round(time.perf_counter() - started, 2),
        "epochs": len(result.history),
        "best_epoch": None if result.best_epoch is None else result.best_epoch + 1,
        "stopped_early": result.stopped_early,
    }
    if getattr(result, "batch_size_used", None) is not None:  # fine-tuning: samples per forward pass (less than --batch-size after an out-of-memory back-off)
        metrics["batch_size_used"] = result.batch_size_used
    if trained.feature_stats is not None:
        metrics["features"] = vars(trained.feature_stats)
    if getattr(trained, "probe", None) is not None:
        metrics["probe"] = trained.probe
    if getattr(trained, "adaptation", None):
        metrics["adaptation"] = trained.adaptation  # domain adaptation: scores per epoch, choice, diagnostics, seeds
    if trained.warmup_history:
        metrics["warmup_history"] = trained.warmup_history  # LP-FT's head warm-up, before epoch 1
    write_json(run_dir / "metrics.json", metrics)
    weights = ["model.safetensors"] + (["adapters.safetensors"] if meta.lora is not None else [])
    meta = meta.replace(files={name: sha256_file(run_dir / name) for name in weights})  # checked on load
    meta.done().write(run_dir)  # last: a run is "done" only when everything is on disk
    return metrics


def _probe_summary(probe: dict[str, Any]) -> dict[str, Any]:
    """The solver's record for the report's settings table (the grid stays in metrics.json)."""
    return {k: v for k, v in probe.items() if k != "grid"}
