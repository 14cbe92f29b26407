"""`file:PATH` weights: a local state dict (`.safetensors`, `.pth`, `.pt`, `.bin`) or a folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from graftkit.backbones.state import load_strict
from graftkit.backbones.base import WeightsInfo
from graftkit.errors import ConfigError, WeightsMismatchError
from graftkit.sources._common import sha256_file

_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_PREFERRED = ("model.safetensors", "pytorch_model.bin")
_WRAPPER_KEYS = ("state_dict", "model")  # checkpoints that nest the state dict
_PREFIXES = ("module.", "model.")  # DDP wrapping; graftkit backbones store the net as `.model`


def weights_file(path: Path) -> Path:
    """The weights file `path` names: the file itself, or the one weights file in a folder.

    Args:
        path: A file, or a folder holding `model.safetensors`, `pytorch_model.bin` or a single
            `.safetensors`/`.pth`/`.pt`/`.bin` file.

    Returns:
        The file to read.

    Raises:
        ConfigError: Missing, unsupported suffix, or a folder with no or several candidates.
    """
    if path.is_dir():
        for name in _PREFERRED:
            if (path / name).is_file():
                return path / name
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
        if len(found) != 1:
            what = (
                "no weights file"
                if not found
                else f"{len(found)} weights files ({', '.join(p.name for p in found)})"
            )
            raise ConfigError(f"{path} holds {what}; name the file: file:{path}/NAME{_SUFFIXES[0]}.")
        return found[0]
    if not path.is_file():
        raise ConfigError(f"Weights file {path} does not exist (from a file: model id).")
    if path.suffix not in _SUFFIXES:
        raise ConfigError(
            f"{path}: unsupported weights format '{path.suffix}'; use one of {', '.join(_SUFFIXES)}."
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without pickle: safetensors, or `torch.load(weights_only=True)`.

    A checkpoint that nests the weights under `state_dict` or `model` is unwrapped.

    Args:
        path: A weights file.

    Returns:
        Tensors by name.

    Raises:
        WeightsMismatchError: The file is unreadable or holds something other than tensors.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsMismatchError(
            f"Cannot read {path} as a state dict ({type(e).__name__}: {str(e)[:200]}). Save weights with "
            "safetensors or `torch.save(model.state_dict(), path)`; arbitrary pickles are refused."
        ) from e
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatchError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return dict(obj)


def normalise_keys(
    state_dict: Mapping[str, torch.Tensor], classifier_keys: set[str]
) -> dict[str, torch.Tensor]:
    """Map saved keys onto the bare network's keys.

    Takes the `backbone.*` part of a graftkit run's weights, strips a `module.` or `model.`
    prefix shared by every key, and drops the classifier (this backbone has none).

    Args:
        state_dict: Keys as saved.
        classifier_keys: The classifier's keys in the bare network's naming.

    Returns:
        The state dict to load strictly into the bare network.
    """
    sd = dict(state_dict)
    if any(k.startswith("backbone.") for k in sd) and all(k.startswith(("backbone.", "head.")) for k in sd):
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if k not in classifier_keys}


def load_into(
    net: nn.Module, classifier_keys: set[str], path: Path, *, model_id: str, arch: str
) -> WeightsInfo:
    """Fill `net` (a bare timm/torchvision network without classifier) from a `file:` path.

    Args:
        net: The network to fill, strictly.
        classifier_keys: Keys of the classifier the full network would have; dropped from the file.
        path: The `file:` path (file or folder).
        model_id: The id to record.
        arch: The `--arch` the file should fit.

    Returns:
        The provenance to record.

    Raises:
        ConfigError: The path is missing or not a weights file.
        WeightsMismatchError: The keys or shapes do not fit `arch`.
    """
    file = weights_file(path)
    state_dict = normalise_keys(read_state_dict(file), classifier_keys)
    load_strict(
        net,
        state_dict,
        what=str(file),
        hint=f"Check that --arch {arch} is the architecture they were saved from.",
    )
    return WeightsInfo(
        model_id=model_id, arch=arch, source="file", sha256=sha256_file(file), extra={"path": str(file)}
    )
