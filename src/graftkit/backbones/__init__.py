"""The Backbone contract and its adapters (DESIGN.md §2).

`TimmBackbone`, `TorchvisionBackbone` and `HFBackbone` are imported lazily: importing this package
costs only torch. Building them from weights is `graftkit.sources`' job (`load_backbone`,
`build_architecture`, `sources.hf_weights.build_hf_architecture`).
"""

from __future__ import annotations

from typing import Any

from graftkit.backbones.base import Backbone, ImagePreprocess, TextPreprocess, WeightsInfo

_LAZY = {
    "TimmBackbone": "graftkit.backbones.timm_backbone",
    "TorchvisionBackbone": "graftkit.backbones.torchvision_backbone",
    "HFBackbone": "graftkit.backbones.hf_backbone",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graftkit.backbones' has no attribute {name!r}")


__all__ = [
    "Backbone",
    "ImagePreprocess",
    "TextPreprocess",
    "WeightsInfo",
    "TimmBackbone",
    "TorchvisionBackbone",
    "HFBackbone",
]
