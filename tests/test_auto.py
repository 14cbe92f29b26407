"""`--strategy auto` and `--time-budget`: the rule as a table, the measurements, and fit() end to end."""

from __future__ import annotations

import json

import pytest

import graftkit
from graftkit.cli import main
from graftkit.errors import ConfigError
from graftkit.strategies.auto import GOOD_PROBE, choose_strategy, parse_duration
from tests.conftest import TINY_MODEL


@pytest.mark.parametrize(
    "facts, expected, why",
    [
        (dict(n_train=80, n_classes=10, probe_accuracy=0.6), "linear-probe", "Fewer than 20"),
        (dict(n_train=16, n_classes=2, modality="text", probe_accuracy=0.6, contrastive_available=True), "contrastive", "contrastive pair"),
        (dict(n_train=16, n_classes=2, modality="text", contrastive_available=False), "linear-probe", "Fewer than 20"),
        (dict(n_train=500, n_classes=10, modality="text", probe_accuracy=0.85, n_groups=8, contrastive_available=True), "partial:4", "top 4"),
        (dict(n_train=5000, n_classes=10, probe_accuracy=0.99), "linear-probe", "already at 0.990"),
        (dict(n_train=5000, n_classes=10, probe_accuracy=0.8, time_budget_s=100, seconds_per_epoch_estimate=60), "linear-probe", "budget"),
        (dict(n_train=5000, n_classes=2, modality="text", param_count=300_000_000, lora_available=True), "lora", "LoRA"),
        (dict(n_train=500, n_classes=10, probe_accuracy=0.85, n_groups=8), "partial:4", "top 4 of 8"),
        (dict(n_train=500, n_classes=10, probe_accuracy=GOOD_PROBE - 0.1, n_groups=8), "finetune", "fit this data poorly"),
        (dict(n_train=5000, n_classes=10, probe_accuracy=0.8, time_budget_s=1000, seconds_per_epoch_estimate=60), "finetune", "At least 100"),
        (dict(n_train=5000, n_classes=2, modality="text", param_count=22_000_000, lora_available=True), "finetune", "At least 100"),
    ],
)
def test_the_rule(facts, expected, why):
    strategy, reasons = choose_strategy(**facts)
    assert str(strategy) == expected
    assert why in reasons[-1] and reasons[0].startswith(f"{facts['n_train']} labelled")


def test_the_rule_refuses_empty_data():
    with pytest.raises(ConfigError):
        choose_strategy(n_train=0, n_classes=3)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("1h30m", 5400), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5m", "0"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="time-budget"):
        parse_duration(text)


def test_time_budget_callback_stops_before_an_overrun():
    from graftkit.training.budget import TimeBudget

    class State:
        def __init__(self, epoch, seconds):
            self.epoch, self.epochs, self.history = epoch, 10, [{"seconds": seconds}]

    budget = TimeBudget(100.0)
    assert budget.on_epoch_end(State(0, 5.0)) is None
    decision = budget.on_epoch_end(State(1, 500.0))
    assert decision.stop and "time budget" in decision.reason


def test_auto_with_few_labels_picks_the_probe_and_says_why(tiny_images, tmp_path):
    run = graftkit.fit(tiny_images, model=TINY_MODEL, strategy="auto", out=tmp_path / "auto", epochs=2, batch_size=8,
                       num_workers=0, image_size=32)  # fmt: skip
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["strategy"] == "linear-probe" and meta["config"]["strategy"] == "linear-probe"
    auto = meta["auto"]
    assert auto["strategy"] == "linear-probe" and any("Fewer than 20" in r for r in auto["reasons"])
    # the default probe is solved, not trained for epochs: auto plans none and says so
    assert "solved" in auto["reasons"][-1] and run.metrics["probe"]["solver"] == "lbfgs"
    assert 0 <= auto["measurements"]["probe_accuracy"] <= 1
    assert run.metrics["features"]["computed"] == 0  # the quick probe's features were reused from the cache
    report = (run.dir / "report.html").read_text()
    assert "Strategy: linear-probe" in report and "Fewer than 20" in report and "solved" in report
    # calibration is part of every classification run
    val = run.metrics["val"]
    assert val["temperature"] > 0 and 0 <= val["ece"] <= 1 and 0 <= val["ece_calibrated"] <= 1
    assert meta["calibration"]["fitted_on"] == "val" and (run.dir / "reliability.png").is_file()
    assert "Calibration (val)" in report


def test_time_budget_fits_the_epochs_and_auto_measures_an_epoch(tmp_path, monkeypatch):
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "more", per_class=25)  # 20 train / 5 val per class: fine-tuning is in question
    import graftkit.training.auto as auto

    monkeypatch.setattr(auto, "estimate_epoch_seconds", lambda *a, **k: (900.0, {"train_seconds_per_item": 1.0}))
    monkeypatch.setattr(auto, "quick_probe", lambda *a, **k: (0.8, {"probe_seconds": 0.1}))
    args = ["train", str(data), "--model", TINY_MODEL, "--strategy", "auto", "--time-budget", "50m", "--epochs", "4",
            "--batch-size", "20", "--num-workers", "0", "--image-size", "16", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    meta = json.loads((tmp_path / "run" / "graft.json").read_text())
    plan = meta["auto"]
    assert plan["measurements"]["seconds_per_epoch_estimate"] == 900.0 and meta["config"]["time_budget"] == 3000.0
    # 20 per class and a probe at 0.8: partial fine-tuning of the top half; 3 of the 4 epochs fit in 50 minutes.
    assert plan["strategy"] == meta["strategy"] == "partial:3"
    assert plan["epochs"] == meta["config"]["epochs"] == 3 and "3 of the 4 requested epochs" in plan["reasons"][-1]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 3


def test_estimate_leaves_the_model_untouched(tiny_images):
    import torch

    from graftkit.data import read_image_data
    from graftkit.sources import load_backbone
    from graftkit.tasks import ClassificationTask
    from graftkit.training.auto import estimate_epoch_seconds
    from graftkit.training.config import TrainConfig

    data = read_image_data(tiny_images)
    backbone = load_backbone(TINY_MODEL)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = TrainConfig(batch_size=8, num_workers=0, image_size=32)
    seconds, facts = estimate_epoch_seconds(data, backbone, ClassificationTask(data.classes), cfg, steps=2)
    assert seconds > 0 and facts["train_seconds_per_item"] > 0
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
