"""Model ids -> weights (DESIGN.md §1): built-in offline models, timm, torchvision, transformers
(`hf:`), local files.

Importing this package costs only torch; timm, torchvision, transformers and huggingface_hub are
imported by the functions that need them.
"""

from __future__ import annotations

from graftkit.sources.ids import ModelSpec, resolve
from graftkit.sources.loading import build_architecture, load_backbone, pull
from graftkit.sources.registry import ModelInfo, list_models

__all__ = ["resolve", "load_backbone", "build_architecture", "list_models", "pull", "ModelSpec", "ModelInfo"]
