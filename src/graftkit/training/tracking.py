"""Experiment tracking (`graft train --track mlflow|tensorboard`), from rank 0 only.

A tracker is a loop callback (`on_epoch_end` logs the epoch's row of history.jsonl) with a
`finish(run_dir, metrics)` that logs the final metrics and the run's files. Both trackers are
optional extras (`pip install "graftkit[track]"`), imported only when asked for, and write to
local files: nothing is sent over the network unless `MLFLOW_TRACKING_URI` names a server.

- **MLflow**: store `MLFLOW_TRACKING_URI`, else `sqlite:///<runs folder>/mlflow.db` with artifacts
  in `<runs folder>/mlartifacts`; experiment `MLFLOW_EXPERIMENT_NAME` or `graftkit`; one MLflow run
  per graftkit run (named after its folder), its id in `RUN/tracking.json` so `graft export` adds
  the exported models to it.
- **TensorBoard**: event files in `RUN/tensorboard/` (`tensorboard --logdir runs`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from graftkit.errors import ConfigError
from graftkit.training.loop import Decision, LoopState

TRACKERS = ("mlflow", "tensorboard")
INSTALL = 'pip install "graftkit[track]"'
RUN_FILES = ("report.html", "MODEL_CARD.md", "metrics.json", "graft.json", "history.jsonl")
"""The run's files logged as artifacts when it has finished."""
TRACKING_FILE = "tracking.json"


def open_tracker(kind: str, plan: Any) -> "MlflowTracker | TensorBoardTracker":
    """The tracker `--track KIND` asks for, with the run's parameters already logged.

    Raises:
        ConfigError: an unknown kind, or its package is not installed (naming the pip command).
    """
    if kind == "mlflow":
        return MlflowTracker(plan)
    if kind == "tensorboard":
        return TensorBoardTracker(plan)
    raise ConfigError(f"--track {kind!r} is not one of {', '.join(TRACKERS)}")


def run_params(plan: Any) -> dict[str, str]:
    """The run's parameters as flat strings: model, strategy, task, data and every setting."""
    params = {"model": plan.cfg.model, "strategy": str(plan.cfg.parsed_strategy), "task": plan.task.name, "data": str(plan.data_path),
              "train_samples": str(len(plan.dataset.train)), "val_samples": str(len(plan.dataset.val))}  # fmt: skip
    params.update({f"config.{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in plan.cfg.to_dict().items()})
    return {k: v[:6000] for k, v in params.items()}  # MLflow's limit on a parameter's value


def epoch_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one history row (`epoch` is the step, not a metric)."""
    return {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json's scalar results per split, as `val_accuracy`, `test_macro_f1`, ..."""
    out = {}
    for split in ("val", "test"):
        for k, v in (metrics.get(split) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"final_{split}_{k}"] = float(v)
    out["train_seconds"] = float(metrics.get("train_seconds", 0.0))
    return out


class MlflowTracker:
    """Logs one graftkit run as one MLflow run (see the module docstring for where)."""

    def __init__(self, plan: Any) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(f"--track mlflow needs MLflow, which is not installed: {INSTALL}") from None
        self._Metric, self._Param = Metric, Param
        runs_folder = Path(plan.destination).resolve().parent
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs_folder / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "graftkit")
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None if os.environ.get("MLFLOW_TRACKING_URI") else (runs_folder / "mlartifacts").as_uri()
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        run = self.client.create_run(experiment_id, run_name=Path(plan.destination).name,
                                     tags={"graftkit.run_dir": str(Path(plan.destination).resolve())})  # fmt: skip
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in run_params(plan).items()])

    def on_epoch_end(self, state: LoopState) -> Decision | None:
        row = state.history[-1]
        stamp = _now_ms()
        self.client.log_batch(self.run_id, metrics=[self._Metric(k, v, stamp, int(row["epoch"])) for k, v in epoch_metrics(row).items()])
        return None

    def finish(self, run_dir: Path, metrics: dict[str, Any]) -> None:
        """Final metrics, the run's report, model card and results as artifacts; the run ends FINISHED."""
        stamp = _now_ms()
        self.client.log_batch(self.run_id, metrics=[self._Metric(k, v, stamp, 0) for k, v in final_metrics(metrics).items()])
        for name in RUN_FILES:
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        (Path(run_dir) / TRACKING_FILE).write_text(json.dumps({"mlflow": {"tracking_uri": self.uri, "run_id": self.run_id}}, indent=2) + "\n")
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


class TensorBoardTracker:
    """Per-epoch scalars, the parameters (as text) and final metrics in `RUN/tensorboard/`."""

    def __init__(self, plan: Any) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(f"--track tensorboard needs TensorBoard, which is not installed: {INSTALL}") from None
        self.writer = SummaryWriter(log_dir=str(Path(plan.run_dir) / "tensorboard"))
        table = "\n".join(f"| {k} | {v} |" for k, v in run_params(plan).items())
        self.writer.add_text("params", "| parameter | value |\n|---|---|\n" + table)

    def on_epoch_end(self, state: LoopState) -> Decision | None:
        row = state.history[-1]
        for k, v in epoch_metrics(row).items():
            self.writer.add_scalar(k, v, int(row["epoch"]))
        self.writer.flush()
        return None

    def finish(self, run_dir: Path, metrics: dict[str, Any]) -> None:
        for k, v in final_metrics(metrics).items():
            self.writer.add_scalar(k, v, 0)
        self.writer.close()

    def fail(self) -> None:
        self.writer.close()


def log_exports(run_dir: Path, folder: Path) -> bool:
    """Add a run's exported models (`graft export`) to its MLflow run, when it was tracked.

    Returns:
        Whether they were logged (False: the run was not tracked with MLflow).
    """
    path = Path(run_dir) / TRACKING_FILE
    if not path.is_file():
        return False
    entry = json.loads(path.read_text()).get("mlflow")
    if not entry:
        return False
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(f"this run is tracked in MLflow, which is not installed: {INSTALL}") from None
    MlflowClient(tracking_uri=entry["tracking_uri"]).log_artifacts(entry["run_id"], str(folder), artifact_path=Path(folder).name)
    return True


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
