"""Data and backbones for the selection tools, read exactly as `fit()` reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_data(data: str | Path, cfg: Any, modality: str):
    """`ImageData` or `TextData`, split as `fit()` would with the same settings and seed."""
    from graftkit.training.fit import _read_data

    return _read_data(data, None, cfg, modality)


def load_backbone_for(cfg: Any, modality: str):
    """The backbone `fit()` would train (image size and text settings applied)."""
    from graftkit.training.fit import _load_backbone

    return _load_backbone(cfg, modality)


def modality_of(model_id: str) -> str:
    """`text` for `hf:` ids and `minilm` (and their `scratch:` twins), else `image`."""
    from graftkit.training.fit import model_modality

    return model_modality(model_id)
