"""`graft evaluate RUN DATA`: score a trained run on any labelled data set.

The data is read by the same readers and batched by the same input adapters as in training, and
scored by the run's task (`Task.finish`): nothing here depends on the task or the modality.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
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
    device: str = "cpu",
    precision: str = "auto",
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Predict every labelled sample in `data` with the run's model; write metrics, report and plots.

    Args:
        run_dir: a finished run directory.
        data: a class folder or CSV/JSONL manifest whose labels are among the run's classes; for a
            text run, a CSV/TSV/JSONL/TXT file with the columns it was trained on.
        out: where to write; default `RUN/eval/<data name>/` (`<data name>-<split>` with `split`).
        split: which split of a split folder or manifest with a `split` column (`train`, `val`, `test`).
        batch_size: inputs per forward pass.
        num_workers: data-loading workers (None: from the CPU count).
        device: where the model runs.
        precision: `auto` (the run's own request, else the rule for `device`), `fp32` or `bf16`.
        channels_last: memory format for CNNs (None: the run's request, else per model).

    Returns:
        The `metrics.json` content (metrics under `test`).

    Raises:
        RunDirError: `run_dir` is not a finished run. DataError: unknown labels or bad files.

    Example:
        >>> evaluate("runs/flowers", "flowers_test/")["test"]["accuracy"]
    """
    from graftkit.data import read_labelled
    from graftkit.engine.precision import run_inference_settings
    from graftkit.evaluation.report import write_report
    from graftkit.training.config import TrainConfig
    from graftkit.training.inputs import make_inputs
    from graftkit.training.loop import predict_probs

    model, meta, task = rundir.load_model(run_dir)
    saved = dict(meta.config)
    samples = read_labelled(
        data, modality=meta.modality, label_kind=task.label_kind, classes=task.classes, split=split,
        text_col=saved.get("text_col"), label_col=saved.get("label_col"), encoding=saved.get("encoding"),
    )  # fmt: skip
    name = Path(data).stem + (f"-{split}" if split else "")
    out_dir = Path(out) if out is not None else Path(run_dir) / "eval" / name
    out_dir = rundir.prepare_run_dir(out_dir, overwrite=True)
    engine = run_inference_settings(meta, device=device, precision=precision, channels_last=channels_last).engine()
    model = engine.setup(model)
    cfg = TrainConfig.from_settings(**{**saved, "batch_size": batch_size, "num_workers": num_workers})
    inputs = make_inputs(SimpleNamespace(train=[], val=[], test=samples), model.backbone, cfg)
    outputs = {"test": predict_probs(model, inputs.labelled_loader("test", task, train=False), engine, task)}
    metrics = task.finish(outputs, model.backbone, {"test": samples}, batch_size)["test"]
    result = {"task": task.name, "test": metrics, "data": str(data), "split": split, "run": str(run_dir)}
    rundir.write_json(out_dir / "metrics.json", result)
    write_report(
        out_dir,
        title=f"{meta.model.model_id} on {Path(data).name}",
        metrics=result["test"],
        split_name="test",
        settings={"run": str(run_dir), "data": str(data), "model": meta.model.to_dict(), "strategy": meta.strategy},
    )
    return result
