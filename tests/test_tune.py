"""`graft tune`: the search runs, prunes through the loop callback, keeps a complete best run, reports."""

from __future__ import annotations

import json

import pytest

import graftkit
from graftkit.cli import main
from graftkit.errors import ConfigError
from graftkit.selection.tune import OptunaReporter, TuneResult, _importances, write_tune_report
from tests.conftest import TINY_MODEL


def test_tune_keeps_a_complete_best_run_that_every_command_takes(tiny_images, tmp_path, capsys):
    out = tmp_path / "tune"
    args = ["tune", str(tiny_images), "--model", TINY_MODEL, "--trials", "3", "--epochs", "2", "--strategies", "linear-probe",
            "--out", str(out), "--batch-size", "8", "--image-size", "32", "--num-workers", "0", "--time-budget", "5m"]  # fmt: skip
    assert main(args) == 0
    assert "best val accuracy" in capsys.readouterr().out
    summary = json.loads((out / "tune.json").read_text())
    assert len(summary["trials"]) == 3 and summary["best_dir"] == str(out / "best")
    assert set(summary["best_params"]) == {"strategy", "depth", "lr", "weight_decay", "augment", "label_smoothing"}
    for name in ("report.html", "trials.csv", "tune_history.png"):
        assert (out / name).is_file(), name
    best = out / "best"
    meta = json.loads((best / "graft.json").read_text())
    assert meta["status"] == "done" and meta["config"]["lr"] == pytest.approx(summary["best_params"]["lr"])
    preds = graftkit.load(best).predict(sorted(tiny_images.glob("*/*.png"))[:2])
    assert preds[0].label in ("cat", "dog", "fox")
    assert main(["evaluate", str(best), str(tiny_images), "--out", str(tmp_path / "eval")]) == 0


def test_reporter_stops_a_pruned_trial():
    class FakeTrial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    class State:
        def __init__(self, epoch):
            self.epoch, self.history = epoch, [{"val_accuracy": 0.5 + epoch / 10}]

    trial = FakeTrial()
    reporter = OptunaReporter(trial, "accuracy")
    assert reporter.on_epoch_end(State(0)) is None
    decision = reporter.on_epoch_end(State(1))
    assert decision.stop and "pruned" in decision.reason and reporter.pruned
    assert trial.reported == [(0, 0.5), (1, 0.6)]


def test_importances_and_their_plot_from_a_synthetic_study(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: -abs(t.suggest_float("lr", 1e-5, 1e-1, log=True) - 1e-3) + 0 * t.suggest_float("label_smoothing", 0, 0.2), n_trials=12)
    importances = _importances(study)
    assert set(importances) == {"lr", "label_smoothing"} and importances["lr"] > importances["label_smoothing"]
    result = TuneResult(0.9, {"lr": 1e-3}, None, [], importances=importances)
    write_tune_report(result, tmp_path)
    assert (tmp_path / "param_importance.png").is_file() and "Parameter importance" in (tmp_path / "report.html").read_text()


def test_tune_refuses_clashing_settings_and_an_existing_out(tiny_images, tmp_path):
    from graftkit import tune

    with pytest.raises(ConfigError, match="(?s)--strategies.*lr are searched"):
        tune(tiny_images, strategies=["lora"], settings={"lr": 0.1}, out=tmp_path / "t")
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "x").write_text("")
    with pytest.raises(ConfigError, match="already exists"):
        tune(tiny_images, out=tmp_path / "t2")
