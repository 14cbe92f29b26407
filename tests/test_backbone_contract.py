"""The Backbone contract (DESIGN.md §2), checked over every model `graft models` lists by default.

Built-ins load their real weights; every other id is built with random weights (no download).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graftkit.backbones.base import Backbone, ImagePreprocess
from graftkit.sources import build_architecture, list_models, load_backbone
from graftkit.sources.builtin import BUILTINS

DEFAULT_IDS = [m.id for m in list_models() if m.modality == "image"]  # text: tests/test_text_sources.py
FIXED_SIZE = ("vit",)  # ViTs take exactly their pretrained size (batch 1); CNNs run at 64 px


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _backbone(model_id: str) -> nn.Module:
    return load_backbone(model_id) if model_id in BUILTINS else build_architecture(model_id)


def _check_preprocess(p: ImagePreprocess) -> None:
    assert 32 <= p.input_size <= 1024
    assert len(p.mean) == len(p.std) == 3
    assert all(0 <= m <= 1 for m in p.mean) and all(0 < s <= 1 for s in p.std)
    assert p.interpolation in ("bilinear", "bicubic", "nearest")
    assert 0.5 <= p.crop_pct <= 1.0


def _check_layer_groups(bb: nn.Module) -> None:
    groups = bb.layer_groups()
    assert len(groups) >= 2 and all(groups)
    order = {id(p): i for i, p in enumerate(bb.parameters())}
    seen: list[int] = []
    first_positions = []
    for group in groups:
        ids = [id(p) for module in group for p in module.parameters()]
        assert ids, "a layer group without parameters"
        seen += ids
        first_positions.append(min(order[i] for i in ids))
    assert sorted(seen) == sorted(order), "every parameter must be in exactly one layer group"
    assert first_positions == sorted(first_positions), "layer groups must run from input to output"
    assert first_positions[0] == 0


@pytest.mark.parametrize("model_id", DEFAULT_IDS)
def test_backbone_contract(model_id: str) -> None:
    bb = _backbone(model_id)
    assert isinstance(bb, nn.Module) and isinstance(bb, Backbone)
    assert bb.modality == "image"
    assert bb.weights.arch.split(":")[0] in ("timm", "tv")
    _check_preprocess(bb.preprocess)
    _check_layer_groups(bb)

    fixed = any(k in model_id for k in FIXED_SIZE)
    batch, size = (1, bb.preprocess.input_size) if fixed else (2, 64)
    x = torch.randn(batch, 3, size, size)
    bb.eval()
    with torch.no_grad():
        feats = bb(x)  # forward == forward_features; the rebuilt copy below calls the latter
    assert feats.shape == (batch, bb.num_features)
    assert torch.isfinite(feats).all()

    # A saved run is rebuilt from `weights.arch` alone, then loaded strictly.
    rebuilt = build_architecture(bb.weights.arch)
    rebuilt.load_state_dict(bb.state_dict(), strict=True)
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.forward_features(x), feats)
