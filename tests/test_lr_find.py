"""LR finder: the suggestion rule, repeatability, and that the sweep leaves the weights as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graftkit.cli import main
from graftkit.selection.lr_find import exponential_lrs, lr_find, lr_sweep, smooth_zero_phase, suggest
from tests.conftest import TINY_MODEL


def test_suggestion_is_a_tenth_of_the_minimum_and_steepest_is_before_it():
    lrs = exponential_lrs(1e-6, 1.0, 61)
    x = np.log10(lrs)
    loss = np.where(x < -2, 0.4 + 0.1 * (x + 2) ** 2, 0.4 + 3 * (x + 2) ** 2)  # falls until 1e-2, then rises fast
    minimum, steepest, falling = suggest(list(lrs), list(loss))
    assert minimum == pytest.approx(1e-3, rel=0.05)
    assert steepest is not None and steepest < 1e-2 and not falling
    _, _, falling = suggest(list(lrs), list(np.linspace(2, 1, 61)))
    assert falling  # never turned up: the minimum lies beyond end_lr


def test_zero_phase_smoothing_does_not_lag():
    step = [1.0] * 30 + [0.0] * 30
    s = smooth_zero_phase(step, beta=0.9)
    assert s[29] == pytest.approx(0.5, abs=0.15) and s[0] > 0.95 and s[-1] < 0.05  # centred on the step


def _tiny_model():
    from graftkit.sources import load_backbone
    from graftkit.tasks import GraftModel

    backbone = load_backbone(TINY_MODEL)
    return GraftModel(backbone, torch.nn.Linear(backbone.num_features, 3)), backbone


def test_sweep_restores_weights_batchnorm_statistics_flags_and_modes():
    from graftkit.strategies import freeze_layer_groups, layerwise_lr_groups
    from graftkit.tasks import ClassificationTask

    model, backbone = _tiny_model()
    groups = backbone.layer_groups()
    freeze_layer_groups(groups, 2)  # like partial:2
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=gen), torch.arange(16) % 3
    params = layerwise_lr_groups(groups, model.head, lr=1.0, backbone_lr_scale=1.0, decay=0.8, weight_decay=0.01)
    task = ClassificationTask(["a", "b", "c"])
    lrs, losses, _ = lr_sweep(model, [(x[:8], y[:8]), (x[8:], y[8:])], task, params, steps=12, start_lr=1e-4, end_lr=1.0)
    assert len(lrs) == 12 and losses[0] != losses[-1]  # it trained
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)  # BN running stats too
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not model.training and not any(m.training for m in model.modules())


def test_frozen_lr_find_is_repeatable_and_writes_its_plot(tiny_images, tmp_path):
    kw = dict(model=TINY_MODEL, steps=30, batch_size=8, image_size=32, num_workers=0)
    a = lr_find(tiny_images, out=tmp_path / "a", **kw)
    b = lr_find(tiny_images, out=tmp_path / "b", **kw)
    assert a.suggestion == b.suggestion and a.losses == b.losses
    assert a.lrs[0] == pytest.approx(1e-7) and 0 < a.suggestion < 10
    assert (tmp_path / "a" / "lr_find.png").is_file()
    saved = json.loads((tmp_path / "a" / "lr_find.json").read_text())
    assert saved["rule"] == "min/10" and saved["suggestion"] == a.suggestion
    c = lr_find(tiny_images, out=None, seed=1, **kw)
    assert c.losses != a.losses  # another seed, other batches


def test_unfrozen_lr_find_from_the_cli(tiny_images, tmp_path, capsys):
    out = tmp_path / "lr"
    args = ["lr-find", str(tiny_images), "--model", TINY_MODEL, "--strategy", "partial:2", "--steps", "12", "--batch-size", "8",
            "--image-size", "32", "--num-workers", "0", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "suggested learning rate" in capsys.readouterr().out
    saved = json.loads((out / "lr_find.json").read_text())
    assert saved["settings"]["strategy"] == "partial:2" and len(saved["lrs"]) >= 10
