"""Regularised fine-tuning (--regularize l2sp | bss | delta): each term's value, and what a run does with it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import graftkit
from graftkit.errors import ConfigError
from graftkit.strategies.regularize import DEFAULT_STRENGTH, L2SP, BatchSpectralShrinkage, DeltaFeatures
from graftkit.tasks import ClassificationTask
from graftkit.tasks.model import GraftModel
from graftkit.training.objective import Objective, TermInput
from tests.conftest import TINY_MODEL


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 6)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))


def _batch(model: GraftModel, x: torch.Tensor) -> TermInput:
    features = model.backbone.forward_features(x)
    return TermInput(model, x, None, features, model.head(features), 0)


def test_l2sp_is_zero_at_the_pretrained_weights_and_half_alpha_times_the_squared_distance_after_a_step():
    model = GraftModel(_Backbone(), nn.Linear(6, 2))
    x = torch.randn(5, 4)
    term = L2SP(model.backbone, alpha=0.3)
    assert float(term(_batch(model, x)).detach()) == 0.0
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    loss = ClassificationTask(["a", "b"]).loss(model(x), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    expected = 0.5 * 0.3 * sum((model.backbone.state_dict()[k] - v).pow(2).sum() for k, v in before.items())
    value = term(_batch(model, x))
    assert float(value.detach()) > 0 and torch.allclose(value, expected)


def test_l2sp_gradient_is_alpha_times_the_displacement():
    backbone = _Backbone()
    term = L2SP(backbone, alpha=2.0)
    with torch.no_grad():
        backbone.body.weight += 0.5
    backbone.zero_grad()
    term(None).backward()
    assert torch.allclose(backbone.body.weight.grad, torch.full_like(backbone.body.weight, 2.0 * 0.5))


def test_bss_is_eta_times_the_smallest_squared_singular_value_of_the_batch_features():
    model = GraftModel(_Backbone(), nn.Linear(6, 2))
    batch = _batch(model, torch.randn(8, 4))
    sigma = torch.linalg.svdvals(batch.features.detach())
    assert torch.allclose(BatchSpectralShrinkage(0.001)(batch), 0.001 * sigma.min() ** 2)
    assert torch.allclose(BatchSpectralShrinkage(0.5, k=2)(batch), 0.5 * (sigma[-2:] ** 2).sum())
    assert BatchSpectralShrinkage(1.0)(batch).requires_grad  # it trains the backbone


def test_delta_is_zero_for_the_pretrained_model_and_the_mean_squared_feature_distance_after_a_change():
    model = GraftModel(_Backbone(), nn.Linear(6, 2))
    x = torch.randn(5, 4)
    term = DeltaFeatures(model.backbone, alpha=0.2)
    assert float(term(_batch(model, x)).detach()) == 0.0
    reference = model.backbone.forward_features(x).detach()
    with torch.no_grad():
        model.backbone.body.bias += 0.3
    batch = _batch(model, x)
    expected = 0.2 * (batch.features - reference).pow(2).sum(1).mean()
    assert float(term(batch)) > 0 and torch.allclose(term(batch), expected)
    assert not any(p.requires_grad for p in term.reference.parameters())  # the pretrained copy stays frozen
    objective = Objective(ClassificationTask(["a", "b"]), [term])
    assert objective.parameters() == []  # nothing of the copy joins the optimizer


def _distance_to_start(run_dir) -> float:
    start = graftkit.sources.load_backbone(TINY_MODEL, seed=0).state_dict()
    trained = load_file(str(run_dir / "model.safetensors"))
    return sum(float((trained[f"backbone.{k}"].float() - v.float()).pow(2).sum()) for k, v in start.items() if v.is_floating_point())


def test_a_strong_l2sp_run_stays_closer_to_the_pretrained_weights_and_records_its_strength(tiny_images, tmp_path):
    common = dict(model=TINY_MODEL, strategy="finetune", epochs=3, batch_size=8, num_workers=0, lr=3e-3, augment="none")
    plain = graftkit.fit(tiny_images, out=tmp_path / "plain", **common)
    pulled = graftkit.fit(tiny_images, out=tmp_path / "l2sp", regularize="l2sp", regularize_strength=50.0, **common)
    near, far = _distance_to_start(pulled.dir), _distance_to_start(plain.dir)
    assert near < 0.5 * far, (near, far)
    config = json.loads((pulled.dir / "graft.json").read_text())["config"]
    assert config["regularize"] == "l2sp" and config["regularize_strength"] == 50.0
    history = [json.loads(line) for line in (pulled.dir / "history.jsonl").read_text().splitlines()]
    assert len(history) == 3
    card = (pulled.dir / "MODEL_CARD.md").read_text()
    assert "| regularize | l2sp |" in card and "| regularize_strength | 50.0 |" in card
    assert "regularize_strength" in (pulled.dir / "report.html").read_text()


@pytest.mark.parametrize("method", ["bss", "delta"])
def test_bss_and_delta_runs_train_with_the_paper_strength(method, tiny_images, tmp_path):
    run = graftkit.fit(tiny_images, out=tmp_path / method, model=TINY_MODEL, strategy="finetune", epochs=1, batch_size=8,
                       num_workers=0, regularize=method)  # fmt: skip
    config = json.loads((run.dir / "graft.json").read_text())["config"]
    assert config["regularize_strength"] == DEFAULT_STRENGTH[method]
    assert graftkit.load(run.dir).predict([str(next(tiny_images.rglob("*.png")))])[0].label in ("cat", "dog", "fox")


def test_regularize_with_nothing_to_regularise_or_a_typo_is_refused_by_name(tiny_images):
    with pytest.raises(ConfigError, match="--strategy linear-probe trains no backbone weight \\(nothing to regularise\\)"):
        graftkit.fit(tiny_images, model=TINY_MODEL, regularize="l2sp")
    with pytest.raises(ConfigError, match="LoRA keeps the pretrained weights frozen"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="lora", regularize="l2sp")
    with pytest.raises(ConfigError, match="--regularize 'l2-sp' is not one of l2sp, bss, delta \\(did you mean 'l2sp'\\?\\)"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", regularize="l2-sp")
    with pytest.raises(ConfigError, match="--regularize-strength must be positive"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", regularize="bss", regularize_strength=0)
    with pytest.raises(ConfigError, match="--regularize-strength needs --regularize"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", regularize_strength=1.0)


def test_regularize_with_the_lp_ft_head_warm_up(tiny_images, tmp_path):
    # Text fine-tuning warms the head up first (`--head-init probe`): that heads-only linear probe must not
    # carry --regularize (a linear-probe config refuses it); the fine-tuning after it keeps it.
    run = graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", head_init="probe", regularize="l2sp", out=tmp_path / "lpft",
                       epochs=1, batch_size=8, num_workers=0)  # fmt: skip
    config = json.loads((run.dir / "graft.json").read_text())["config"]
    assert config["regularize"] == "l2sp" and config["regularize_strength"] == DEFAULT_STRENGTH["l2sp"]
