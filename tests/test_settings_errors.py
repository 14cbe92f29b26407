"""Every training-setting check says what is wrong and how to fix it (issue 11, item 7).

Each row sets one bad value and pins the line the user reads; a check that is removed or reworded
fails its row. The cache tests pin that features computed under other settings are never reused.
"""

from __future__ import annotations

import pytest
import torch

import graftkit
from graftkit.cli import main
from graftkit.errors import ConfigError
from graftkit.training.config import TrainConfig
from tests.conftest import TINY_MODEL

BAD_SETTINGS = [
    ({"epochs": 0}, r"--epochs must be at least 1, got 0"),
    ({"batch_size": 0}, r"--batch-size must be at least 1, got 0"),
    ({"accumulate": 0}, r"--accumulate must be at least 1, got 0"),
    ({"strategy": "finetuen"}, r"finetuen"),
    ({"image_size": 8}, r"--image-size must be at least 16 pixels, got 8"),
    ({"lr": 0.0}, r"--lr must be positive, got 0.0"),
    ({"lr": -1e-3}, r"--lr must be positive, got -0.001"),
    ({"lr_decay": 0.0}, r"--lr-decay must be in \(0, 1\], got 0.0"),
    ({"lr_decay": 1.5}, r"--lr-decay must be in \(0, 1\], got 1.5"),
    ({"backbone_lr_scale": 2.0}, r"--backbone-lr-scale must be in \(0, 1\], got 2.0"),
    ({"weight_decay": -0.1}, r"--weight-decay must be >= 0, got -0.1"),
    ({"warmup_fraction": 1.0}, r"--warmup-fraction must be in \[0, 1\), got 1.0"),
    ({"warmup_fraction": -0.1}, r"--warmup-fraction must be in \[0, 1\), got -0.1"),
    ({"grad_clip": 0.0}, r"--grad-clip must be positive, got 0.0"),
    ({"label_smoothing": 1.0}, r"--label-smoothing must be in \[0, 1\), got 1.0"),
    ({"head_dropout": 1.0}, r"--head-dropout must be in \[0, 1\), got 1.0"),
    ({"val_fraction": 0.0}, r"--val-fraction must be in \(0, 1\), got 0.0"),
    ({"time_budget": 0.0}, r"--time-budget must be positive, got 0.0"),
    ({"patience": 0}, r"--patience must be at least 1, got 0"),
    ({"lora_r": 0}, r"--lora-r must be at least 1, got 0"),
    ({"num_beams": 0}, r"--num-beams must be at least 1, got 0"),
    ({"max_seconds": 0.0}, r"--max-seconds must be a positive number of seconds, got 0.0"),
    ({"max_length": 1}, r"--max-length must be at least 2 tokens, got 1"),
    ({"lora_dropout": 1.0}, r"--lora-dropout must be in \[0, 1\), got 1.0"),
    ({"num_workers": -1}, r"--num-workers must be >= 0, got -1"),
    ({"schedule": "linearr"}, r"--schedule 'linearr' is not one of"),
    ({"precision": "fp8"}, r"--precision 'fp8' is not one of auto, fp32, bf16, fp16"),
    ({"augment": "heavy"}, r"--augment 'heavy' is not one of none, light, strong, randaugment"),
    ({"mix": "mixxup"}, r"--mix 'mixxup' is not one of"),
    ({"class_weights": "auto"}, r"--class-weights 'auto' is not one of none, balanced"),
    ({"probe_solver": "adam"}, r"--probe-solver 'adam' is not one of"),
    ({"device": "gpu"}, r"--device 'gpu' is not one of auto, cpu, cuda, cuda:N"),
    ({"task": "clasification"}, r"--task 'clasification' is not one of"),
    ({"monitor": "bleu"}, r"--monitor 'bleu' is not a classification metric; choose one of accuracy"),
    ({"pooling": "max"}, r"--pooling 'max' is not one of mean, cls, last"),
    ({"target_sensitivity": 0.0}, r"--target-sensitivity must be in \(0, 1\], got 0.0"),
    ({"focal_gamma": -1.0}, r"--focal-gamma must be >= 0, got -1.0"),
    ({"in_chans": 2}, r"--in-chans must be 1 or 3, got 2"),
    ({"window": "40"}, r"--window '40' must be CENTRE,WIDTH"),
    ({"window": "40,0"}, r"--window '40,0': the width must be at least 1"),
    ({"detector": "yolo"}, r"--detector applies to --task detection only"),
    ({"task": "detection", "detector": "yolo"}, r"--detector 'yolo' is not one of"),
]


@pytest.mark.parametrize("bad, message", BAD_SETTINGS, ids=[next(iter(b)) + "=" + str(next(iter(b.values()))) for b, _ in BAD_SETTINGS])
def test_each_bad_setting_is_named_with_its_fix(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**bad)


def test_all_bad_settings_are_reported_together():
    with pytest.raises(ConfigError) as info:
        TrainConfig(lr=-1.0, weight_decay=-1.0, patience=0)
    text = str(info.value)
    assert text.startswith("invalid training settings:")
    assert all(flag in text for flag in ("--lr", "--weight-decay", "--patience"))


def test_the_cli_prints_one_error_line_not_a_traceback(tiny_images, capsys):
    rc = main(["train", str(tiny_images), "--model", TINY_MODEL, "--out", "run", "--lr-decay", "1.5", "--grad-clip", "0"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert "--lr-decay must be in (0, 1], got 1.5" in err and "--grad-clip must be positive, got 0.0" in err


def test_device_cuda_without_cuda_says_use_cpu(tiny_images, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device cuda: no CUDA GPU is usable here .*use --device cpu"):
        graftkit.fit(tiny_images, model=TINY_MODEL, out="run", device="cuda", epochs=1)


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_export_min_agreement_outside_0_1_is_refused(value, capsys):
    rc = main(["export", "no-such-run", "--min-agreement", value])
    err = capsys.readouterr().err
    assert rc != 0 and f"--min-agreement must be between 0 and 1, got {float(value)}" in err


@pytest.mark.parametrize(
    "change",
    [{"image_size": 48}, {"precision": "bf16"}, {"channels_last": True}],
    ids=["image size", "precision", "memory format"],
)
def test_the_feature_cache_is_not_reused_across_settings_that_change_features(tiny_images, tmp_path, change):
    base = {"model": TINY_MODEL, "epochs": 1, "batch_size": 8, "num_workers": 0, "image_size": 32, "precision": "fp32", "channels_last": False}
    first = graftkit.fit(tiny_images, out=tmp_path / "a", **base)
    again = graftkit.fit(tiny_images, out=tmp_path / "b", **base)
    changed = graftkit.fit(tiny_images, out=tmp_path / "c", **{**base, **change})
    assert first.metrics["features"]["computed"] == 24
    assert again.metrics["features"]["cached"] == 24  # the cache works...
    assert changed.metrics["features"]["computed"] == 24 and changed.metrics["features"]["cached"] == 0  # ...and is keyed
