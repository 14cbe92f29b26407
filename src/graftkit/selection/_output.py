"""The selection tools' output folders."""

from __future__ import annotations

import shutil
from pathlib import Path


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
