"""timm weights: find them in the Hugging Face hub cache (or torch hub cache), download, load.

Loading goes through timm's own pretrained machinery (`create_model(pretrained=True)` with the
located file as the pretrained source), so checkpoint filters and classifier handling are timm's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from graftkit.backbones.base import WeightsInfo
from graftkit.errors import WeightsMismatchError, WeightsNotAvailableError
from graftkit.sources._common import download_errors, not_available, sha256_file

if TYPE_CHECKING:
    from graftkit.backbones.timm_backbone import TimmBackbone

_HF_WEIGHTS = "pytorch_model.bin"
_ETAG_TIMEOUT_S = 5.0  # the metadata request of a download; a dead network should fail fast


@dataclass(frozen=True)
class TimmWeights:
    """Where timm gets the pretrained weights of one model name."""

    name: str
    """The timm name, e.g. `resnet18` or `resnet18.a1_in1k`."""
    hf_repo: str | None
    """Hugging Face repo id, e.g. `timm/resnet18.a1_in1k`, when the weights are on the hub."""
    hf_revision: str | None
    """Hub revision, when the config pins one."""
    hf_filenames: tuple[str, ...]
    """Files to try in the repo, safetensors first."""
    url: str | None
    """Direct download URL, for the few models not on the hub."""
    custom_load: Any
    """timm's `custom_load` flag for these weights."""


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, honouring `HF_HUB_CACHE`/`HF_HOME` as set *now*.

    huggingface_hub reads these variables once, at import; reading them here lets tests and
    launchers set them later.
    """
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def torch_hub_checkpoint(url: str) -> Path:
    """Where `torch.hub.load_state_dict_from_url` caches `url` (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _safe_alternatives(filename: str) -> list[str]:
    if filename == _HF_WEIGHTS:
        return ["model.safetensors"]
    if filename.endswith(".bin"):
        return [filename[: -len(".bin")] + ".safetensors"]
    return []


def timm_weights(name: str, model_id: str) -> TimmWeights:
    """Look up where timm would fetch the pretrained weights of `name` (no network).

    Args:
        name: A timm model name, optionally tagged.
        model_id: The id to name in errors.

    Returns:
        The weights location.

    Raises:
        WeightsNotAvailableError: timm has no pretrained weights for this name.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsNotAvailableError(
            f"timm has no pretrained weights for {model_id}; use scratch:{model_id} for random "
            "weights, or file:PATH --arch " + f"timm:{name} for your own."
        )
    repo, revision = None, None
    if cfg.hf_hub_id:
        repo, _, rev = cfg.hf_hub_id.partition("@")
        revision = rev or None
    filename = cfg.hf_hub_filename or _HF_WEIGHTS
    files = (filename,) if cfg.custom_load == "hf" else (*_safe_alternatives(filename), filename)
    return TimmWeights(name, repo, revision, files, cfg.url or None, cfg.custom_load)


def describe_cache(w: TimmWeights) -> str:
    """Where `find_cached` looks, for messages."""
    if w.hf_repo:
        return f"{hf_cache_dir()} (Hugging Face repo {w.hf_repo})"
    return str(torch_hub_checkpoint(w.url or ""))


def find_cached(w: TimmWeights) -> Path | None:
    """The weights file if it is already on this machine (never touches the network).

    Args:
        w: The weights location.

    Returns:
        The cached file, or None.
    """
    if w.hf_repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in w.hf_filenames:
            hit = try_to_load_from_cache(
                w.hf_repo, filename, cache_dir=hf_cache_dir(), revision=w.hf_revision
            )
            if isinstance(hit, str):
                return Path(hit)
        return None
    path = torch_hub_checkpoint(w.url or "")
    return path if path.is_file() else None


def download(w: TimmWeights, model_id: str) -> Path:
    """Download the weights into the cache timm uses.

    Args:
        w: The weights location.
        model_id: The id to name in errors.

    Returns:
        The cached file.

    Raises:
        WeightsNotAvailableError: The download failed (no network, no such file, offline mode).
    """
    if w.hf_repo:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import RemoteEntryNotFoundError

        for filename in w.hf_filenames:
            # One HEAD request without retries first: hf_hub_download backs off for ~20 s per
            # file when the network is down; a dead network must fail at once.
            url = hf_hub_url(w.hf_repo, filename, revision=w.hf_revision)
            try:
                get_hf_file_metadata(url, timeout=_ETAG_TIMEOUT_S, retry_on_errors=False)
            except RemoteEntryNotFoundError:
                continue  # try the next file name (safetensors first, then the .bin)
            except download_errors() as e:  # no network, offline mode, gated repo, timeout
                raise not_available(model_id, describe_cache(w), offline=False, cause=_short(e)) from e
            try:
                return Path(
                    hf_hub_download(
                        w.hf_repo,
                        filename,
                        revision=w.hf_revision,
                        cache_dir=hf_cache_dir(),
                        etag_timeout=_ETAG_TIMEOUT_S,
                    )
                )
            except download_errors() as e:
                raise not_available(model_id, describe_cache(w), offline=False, cause=_short(e)) from e
        files = ", ".join(w.hf_filenames)
        raise not_available(
            model_id, describe_cache(w), offline=False, cause=f"{w.hf_repo} has none of {files}"
        )
    path = torch_hub_checkpoint(w.url or "")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(w.url or "", str(path), progress=True)
    except download_errors() as e:
        raise not_available(model_id, describe_cache(w), offline=False, cause=_short(e)) from e
    return path


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def locate(name: str, model_id: str, *, offline: bool) -> Path:
    """The cached weights file of `name`, downloading it first unless `offline`.

    Args:
        name: A timm model name.
        model_id: The id to name in errors.
        offline: Never touch the network.

    Returns:
        A local weights file.

    Raises:
        WeightsNotAvailableError: Not cached and offline, or the download failed.
    """
    return _locate(timm_weights(name, model_id), model_id, offline=offline)


def _locate(w: TimmWeights, model_id: str, *, offline: bool) -> Path:
    cached = find_cached(w)
    if cached is not None:
        return cached
    if offline:
        raise not_available(model_id, describe_cache(w), offline=True)
    return download(w, model_id)


def load_timm(name: str, *, model_id: str, offline: bool) -> TimmBackbone:
    """Load timm model `name` with its pretrained weights, from the cache or a download.

    Args:
        name: A timm model name, optionally tagged (`resnet18.a1_in1k`).
        model_id: The id to record.
        offline: Never touch the network.

    Returns:
        A `TimmBackbone` with `weights.sha256` set to the checksum of the file loaded.

    Raises:
        WeightsNotAvailableError: Not cached and offline, or the download failed.
        WeightsMismatchError: The file does not fit the architecture.
    """
    import timm

    from graftkit.backbones.timm_backbone import TimmBackbone

    w = timm_weights(name, model_id)
    path = _locate(w, model_id, offline=offline)
    # Hub files are plain timm state dicts; only url/`hf` custom loaders need the model's own.
    custom = w.custom_load if (w.url and not w.hf_repo) or w.custom_load == "hf" else False
    overlay = {"file": str(path), "custom_load": custom}
    try:
        # Full classifier so timm loads strictly; the classifier is removed right after.
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        raise WeightsMismatchError(
            f"Weights in {path} do not load into timm:{name}: {_short(e)}. The cached file may be "
            f"corrupt: delete it and run `graft pull {model_id}`."
        ) from e
    model.reset_classifier(0)
    _check_headless_keys(model, name)
    info = WeightsInfo(
        model_id=model_id,
        arch=f"timm:{name}",
        source="timm",
        sha256=sha256_file(path),
        extra={"path": str(path)},
    )
    return TimmBackbone(model, info)


def _check_headless_keys(model: torch.nn.Module, name: str) -> None:
    # `build_architecture` uses create_model(num_classes=0); the loaded model must have exactly
    # the same keys, or a saved run could not be rebuilt. Checked on the meta device: no memory.
    import timm

    with torch.device("meta"):
        reference = timm.create_model(name, num_classes=0)
    if set(reference.state_dict()) != set(model.state_dict()):
        raise WeightsMismatchError(
            f"timm:{name} after reset_classifier(0) differs from create_model(num_classes=0); "
            "this model is not supported."
        )
