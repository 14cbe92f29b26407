"""The Backbone contract and its adapters (DESIGN.md §2).

`TimmBackbone` and `TorchvisionBackbone` are imported lazily: importing this package costs only
torch.
"""

from __future__ import annotations

from typing import Any

from graftkit.backbones.base import Backbone, ImagePreprocess, WeightsInfo

_LAZY = {
    "TimmBackbone": "graftkit.backbones.timm_backbone",
    "TorchvisionBackbone": "graftkit.backbones.torchvision_backbone",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graftkit.backbones' has no attribute {name!r}")


__all__ = ["Backbone", "ImagePreprocess", "WeightsInfo", "TimmBackbone", "TorchvisionBackbone"]
