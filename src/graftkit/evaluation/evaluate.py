"""`graft evaluate RUN DATA`: score a trained run on any labelled data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graftkit import rundir


def evaluate(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    split: str | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Predict every labelled image (or text) in `data` with the run's model; write metrics, report and plots.

    Args:
        run_dir: a finished run directory.
        data: a class folder or CSV/JSONL manifest whose labels are among the run's classes; for a
            text run, a CSV/TSV/JSONL/TXT file with the columns it was trained on.
        out: where to write; default `RUN/eval/<data name>/` (`<data name>-<split>` with `split`).
        split: which split of a split folder or manifest with a `split` column (`train`, `val`, `test`).

    Returns:
        The `metrics.json` content (metrics under `test`).

    Raises:
        RunDirError: `run_dir` is not a finished run. DataError: unknown labels or bad files.
    """
    from graftkit.data import ImageFileDataset, build_transform, default_num_workers, make_loader, read_labelled_images
    from graftkit.evaluation.report import write_report
    from graftkit.engine import LocalEngine
    from graftkit.training.loop import predict_probs

    model, meta, task = rundir.load_model(run_dir)
    text = meta.get("modality") == "text"
    if text:
        loader, samples = _text_loader(data, meta, task, model.backbone, split, batch_size)
    else:
        samples, _ = read_labelled_images(data, classes=task.classes, split=split)
    name = Path(data).stem + (f"-{split}" if split else "")
    out_dir = Path(out) if out is not None else Path(run_dir) / "eval" / name
    out_dir = rundir.prepare_run_dir(out_dir, overwrite=True)
    precision = meta.get("precision", {})
    engine = LocalEngine(precision=precision.get("inference", "fp32"), channels_last=precision.get("channels_last", False))
    model = engine.setup(model)
    if not text:
        dataset = ImageFileDataset(samples, {c: i for i, c in enumerate(task.classes)}, build_transform(model.backbone.preprocess, "none", train=False))
        workers = default_num_workers() if num_workers is None else num_workers
        loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, seed=0)
    probs, y, loss = predict_probs(model, loader, engine, task)
    metrics = task.full_metrics(probs, y, loss=loss)
    if hasattr(task, "generate"):
        hyps = task.generate(model.backbone, [s.text for s in samples], batch_size=batch_size)
        metrics.update(task.text_metrics(hyps, [s.target or "" for s in samples]))
    result = {"task": task.name, "test": metrics, "data": str(data), "split": split, "run": str(run_dir)}
    rundir.write_json(out_dir / "metrics.json", result)
    write_report(
        out_dir,
        title=f"{meta['model']['model_id']} on {Path(data).name}",
        metrics=result["test"],
        split_name="test",
        settings={"run": str(run_dir), "data": str(data), "model": meta["model"], "strategy": meta.get("strategy")},
    )
    return result


def _text_loader(data, meta: dict[str, Any], task, backbone, split: str | None, batch_size: int):
    """A labelled text loader over `data`, read with the run's own columns and task."""
    from graftkit.data.text import read_labelled_texts
    from graftkit.data.text_loader import make_causal_lm_loader, make_seq2seq_loader, make_text_loader

    cfg = meta.get("config", {})
    samples = read_labelled_texts(
        data, task=task.name, classes=task.classes, text_col=cfg.get("text_col"), label_col=cfg.get("label_col"),
        encoding=cfg.get("encoding"), split=split,
    )
    n = backbone.preprocess.max_length
    common = {"batch_size": batch_size, "shuffle": False}
    texts = [s.text for s in samples]
    if task.name == "seq2seq":
        return make_seq2seq_loader(texts, [s.target for s in samples], backbone.tokenizer, max_source_length=n, max_target_length=n, **common), samples
    if task.name == "causal-lm":
        responses = [s.target for s in samples] if any(s.target is not None for s in samples) else None
        return make_causal_lm_loader(texts, backbone.tokenizer, max_length=n, responses=responses, **common), samples
    return make_text_loader(texts, task.encode([s.label for s in samples]), backbone.tokenizer, max_length=n, **common), samples
