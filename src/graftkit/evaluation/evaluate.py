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
    """Predict every labelled image in `data` with the run's model; write metrics, report and plots.

    Args:
        run_dir: a finished run directory.
        data: a class folder or CSV/JSONL manifest whose labels are among the run's classes.
        out: where to write; default `RUN/eval/<data name>/` (`<data name>-<split>` with `split`).
        split: which split of a split folder or manifest with a `split` column (`train`, `val`, `test`).

    Returns:
        The `metrics.json` content (metrics under `test`).

    Raises:
        RunDirError: `run_dir` is not a finished run. DataError: unknown labels or bad files.
    """
    from graftkit.data import ImageFileDataset, build_transform, default_num_workers, make_loader, read_labelled_images
    from graftkit.evaluation.report import write_report
    from graftkit.training.engine import LocalEngine
    from graftkit.training.loop import predict_probs

    model, meta, task = rundir.load_model(run_dir)
    samples, _ = read_labelled_images(data, classes=task.classes, split=split)
    name = Path(data).stem + (f"-{split}" if split else "")
    out_dir = Path(out) if out is not None else Path(run_dir) / "eval" / name
    out_dir = rundir.prepare_run_dir(out_dir, overwrite=True)
    precision = meta.get("precision", {})
    engine = LocalEngine(precision=precision.get("inference", "fp32"), channels_last=precision.get("channels_last", False))
    model = engine.setup(model)
    dataset = ImageFileDataset(samples, {c: i for i, c in enumerate(task.classes)}, build_transform(model.backbone.preprocess, "none", train=False))
    workers = default_num_workers() if num_workers is None else num_workers
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, seed=0)
    probs, y, loss = predict_probs(model, loader, engine, task)
    result = {"task": task.name, "test": task.full_metrics(probs, y, loss=loss), "data": str(data), "split": split, "run": str(run_dir)}
    rundir.write_json(out_dir / "metrics.json", result)
    write_report(
        out_dir,
        title=f"{meta['model']['model_id']} on {Path(data).name}",
        metrics=result["test"],
        split_name="test",
        settings={"run": str(run_dir), "data": str(data), "model": meta["model"], "strategy": meta.get("strategy")},
    )
    return result
