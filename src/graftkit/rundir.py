"""The run directory (DESIGN.md §5): the one artifact every command reads.

Writing happens in training; reading in evaluation and deploy. Nothing here unpickles: weights are
safetensors, everything else JSON.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from graftkit.errors import RunDirError

SCHEMA_VERSION = 1
REQUIRED_FILES = ("graft.json", "model.safetensors")


def prepare_run_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create (or reuse, for --resume) a run directory, failing early if it cannot be written.

    Raises:
        RunDirError: the folder cannot be created or written, or holds a finished run and
            neither `resume` nor `overwrite` was asked for (nothing saved is ever lost silently).
    """
    path = Path(out)
    if resume:
        if not (path / "checkpoints" / "last.pt").is_file():
            raise RunDirError(f"cannot resume: {path} has no checkpoints/last.pt. Run without --resume to start it.")
        return path
    if (path / "graft.json").exists() and not overwrite:
        raise RunDirError(
            f"{path} already holds a run. Choose another --out, pass --overwrite to replace it, or --resume to continue it."
        )
    try:
        if overwrite and path.exists():
            for name in ("checkpoints", "eval"):
                shutil.rmtree(path / name, ignore_errors=True)
            for name in ("history.jsonl", "metrics.json", "graft.json", "model.safetensors"):
                (path / name).unlink(missing_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to output folder {path}: {e.strerror or e}. Choose a writable --out.") from None
    return path


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def library_versions() -> dict[str, str]:
    import timm
    import torch
    import torchvision

    import graftkit

    return {
        "graftkit": graftkit.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def check_run_dir(run_dir: str | Path) -> Path:
    """Raises RunDirError naming what is missing if `run_dir` is not a finished run."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist. Train one with `graft train DATA --out {path}`.")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise RunDirError(
            f"{path} is not a finished run (missing {', '.join(missing)}). "
            "If training was interrupted, continue it with `graft train ... --resume`."
        )
    meta = read_json(path / "graft.json")
    if meta.get("schema_version", 0) > SCHEMA_VERSION:
        raise RunDirError(f"{path} was written by a newer graftkit (schema {meta['schema_version']}); upgrade graftkit.")
    return path


def load_model(run_dir: str | Path):
    """Rebuild the trained model from a run directory alone: architecture from graft.json (and,
    for text models, the config + tokenizer in `RUN/hf/`), weights from model.safetensors
    (strict). No network, no training data, no pickle.

    Returns:
        (`GraftModel` — or `GenerativeModel` for seq2seq / causal-lm — in eval mode, graft.json dict, task)
    """
    from safetensors.torch import load_file

    from graftkit.tasks import GenerativeModel, GraftModel, task_from_dict

    path = check_run_dir(run_dir)
    meta = read_json(path / "graft.json")
    task = task_from_dict(meta["task"])
    if meta.get("modality") == "text":
        from graftkit.backbones.base import TextPreprocess
        from graftkit.backbones.hf_backbone import build_hf_architecture

        backbone = build_hf_architecture(
            path / meta["text"].get("architecture_dir", "hf"),
            head_kind=meta["text"]["head_kind"],
            preprocess=TextPreprocess.from_dict(meta["preprocess"]),
        )
    else:
        from graftkit.backbones.base import ImagePreprocess
        from graftkit.sources import build_architecture

        backbone = build_architecture(meta["model"]["arch"])
        backbone.preprocess = ImagePreprocess.from_dict(meta["preprocess"])
    if "lora" in meta:
        from graftkit.strategies import apply_lora

        lora = meta["lora"]
        apply_lora(backbone, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"], targets=lora["target_modules"])
    if meta.get("head") is None:
        model = GenerativeModel(backbone)
    else:
        model = GraftModel(backbone, task.build_head(backbone.num_features, meta["head"].get("dropout", 0.0)))
    state = load_file(str(path / "model.safetensors"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RunDirError(f"{path}/model.safetensors does not fit the architecture in graft.json: {str(e)[:300]}") from None
    model.eval()
    return model, meta, task
