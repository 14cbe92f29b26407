"""`--track mlflow|tensorboard` and `graft runs`: what a user compares runs with."""

from __future__ import annotations

import json
import socket
import sys

import pytest

import graftkit
from graftkit.cli import main
from graftkit.errors import ConfigError
from tests.conftest import TINY_MODEL

KW = dict(model=TINY_MODEL, strategy="linear-probe", probe_solver="sgd", epochs=3, batch_size=8, num_workers=0, device="cpu")


@pytest.fixture
def no_connections(monkeypatch):
    """Every socket connection attempt, recorded (and refused): tracking to local files opens none."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_mlflow_logs_params_epochs_and_files_to_a_sqlite_store_under_the_runs_folder(tiny_images, tmp_path, monkeypatch, no_connections):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = graftkit.fit(tiny_images, out=tmp_path / "runs" / "probe", track="mlflow", **KW)
    assert no_connections == []
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    entry = json.loads((run.dir / "tracking.json").read_text())["mlflow"]
    assert entry["tracking_uri"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(entry["tracking_uri"])
    logged = client.get_run(entry["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "probe"
    assert logged.data.params["model"] == TINY_MODEL and logged.data.params["strategy"] == "linear-probe"
    assert json.loads(logged.data.params["config.epochs"]) == 3
    losses = client.get_metric_history(entry["run_id"], "val_loss")
    assert [m.step for m in losses] == [1, 2, 3]
    assert [m.value for m in losses] == pytest.approx([r["val_loss"] for r in run.history])
    assert logged.data.metrics["final_val_accuracy"] == pytest.approx(run.metrics["val"]["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(entry["run_id"])}
    assert {"report.html", "MODEL_CARD.md", "metrics.json", "graft.json"} <= artifacts
    assert str(tmp_path / "runs" / "mlartifacts") in logged.info.artifact_uri  # beside the runs, not in the working folder


def test_mlflow_tracking_uri_is_honoured(tiny_images, tmp_path, monkeypatch):
    store = tmp_path / "elsewhere" / "store.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "flowers")
    run = graftkit.fit(tiny_images, out=tmp_path / "runs" / "probe", track="mlflow", **{**KW, "epochs": 1})
    assert store.is_file() and not (tmp_path / "runs" / "mlflow.db").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    logged = client.get_run(json.loads((run.dir / "tracking.json").read_text())["mlflow"]["run_id"])
    assert client.get_experiment(logged.info.experiment_id).name == "flowers"


def test_track_without_mlflow_names_the_extra(tiny_images, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ConfigError, match=r'--track mlflow needs MLflow, which is not installed: pip install "graftkit\[track\]"'):
        graftkit.fit(tiny_images, out=tmp_path / "run", track="mlflow", **KW)
    assert not (tmp_path / "run" / "graft.json").exists()  # refused before training


def test_tensorboard_writes_a_scalar_per_epoch(tiny_images, tmp_path):
    run = graftkit.fit(tiny_images, out=tmp_path / "run", track="tensorboard", **KW)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.dir / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("val_loss")] == pytest.approx([r["val_loss"] for r in run.history])
    assert events.Scalars("final_val_accuracy")[0].value == pytest.approx(run.metrics["val"]["accuracy"])


def test_graft_runs_lists_sorts_and_marks_damaged_runs(tiny_images, tmp_path, capsys):
    for name, epochs in (("a", 1), ("b", 3)):
        graftkit.fit(tiny_images, out=tmp_path / "runs" / name, **{**KW, "epochs": epochs})
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "graft.json").write_text("{trunc")
    (tmp_path / "runs" / "notes").mkdir()  # not a run: not listed

    assert main(["runs", str(tmp_path / "runs"), "--format", "json", "--sort", "run"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == ["a", "b", "broken"]
    a = rows[0]
    metrics = json.loads((tmp_path / "runs" / "a" / "metrics.json").read_text())
    assert (a["status"], a["model"], a["strategy"], a["task"], a["metric"]) == ("done", TINY_MODEL, "linear-probe", "classification", "accuracy")
    assert a["value"] == metrics["val"]["accuracy"] and a["train"] + a["val"] == 24 and a["seconds"] > 0
    assert rows[2]["status"].startswith("damaged: ") and "graft.json is not valid JSON" in rows[2]["status"]

    assert main(["runs", str(tmp_path / "runs"), "--format", "csv", "--sort", "finished"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run,status,model,strategy,task,metric,value,finished,train,val,seconds")
    assert [line.split(",")[0] for line in lines[1:]] == ["a", "b", "broken"]  # in the order they finished; a damaged run last

    assert main(["runs", str(tmp_path / "runs")]) == 0
    assert "damaged" in capsys.readouterr().out


def test_graft_runs_refuses_an_unknown_column(tmp_path):
    (tmp_path / "runs").mkdir()
    from graftkit.rundir.listing import list_runs

    with pytest.raises(ConfigError, match=r"--sort 'acc' is not a column; choose one of run, status, model"):
        list_runs(tmp_path / "runs", sort="acc")
