"""Data and backbones for the selection tools, read exactly as `fit()` reads them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def read_data(data: str | Path, cfg: Any, modality: str):
    """`ImageData` or `TextData`, split as `fit()` would with the same settings and seed."""
    from graftkit.training.fit import read_data as fit_read_data

    return fit_read_data(data, None, cfg, modality)


def load_backbone_for(cfg: Any, modality: str):
    """The backbone `fit()` would train (image size and text settings applied)."""
    from graftkit.training.fit import load_backbone_for as fit_load_backbone

    return fit_load_backbone(cfg, modality)


def modality_of(model_id: str) -> str:
    """`text` for `hf:` ids and `minilm` (and their `scratch:` twins), else `image`."""
    from graftkit.training.fit import model_modality

    return model_modality(model_id)


def fresh_out_dir(out: str | Path, overwrite: bool) -> Path:
    """`out`, empty: refuse a non-empty folder unless `overwrite`, which clears it first."""
    from graftkit.errors import ConfigError

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out} already exists: choose another --out or pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
