"""Model id -> backbone with weights: `load_backbone`, `build_architecture`, `pull`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from graftkit.backbones.base import Backbone, WeightsInfo
from graftkit.errors import ConfigError
from graftkit.sources import builtin, files, timm_hub, tv_hub
from graftkit.sources._common import is_offline, seeded
from graftkit.sources.ids import ModelSpec, resolve


def _build_random(arch: str) -> nn.Module:
    # `arch` is canonical (`timm:NAME` or `tv:NAME`); uses the caller's RNG.
    source, _, name = arch.partition(":")
    if source == "timm":
        from graftkit.backbones.timm_backbone import TimmBackbone

        return TimmBackbone.create(name, pretrained=False)
    from graftkit.backbones.torchvision_backbone import TorchvisionBackbone

    return TorchvisionBackbone.create(name)


def build_architecture(arch: str, *, seed: int = 0) -> Backbone:
    """The network of `arch` with random weights; never touches the network.

    Used to rebuild a saved run before loading its weights, and for `scratch:` ids.

    Args:
        arch: An architecture id: `timm:NAME`, `tv:NAME` or a built-in name (`WeightsInfo.arch`).
        seed: Seeds the initialisation, in a forked RNG (the global RNG state is untouched).

    Returns:
        The backbone, with `weights.source == "scratch"` and `weights.sha256 is None`.

    Raises:
        UnknownModelError: `arch` is not a known architecture.
        ConfigError: `arch` is a `file:`/`scratch:` id rather than an architecture.

    Example:
        >>> bb = build_architecture("timm:resnet18")
        >>> bb.load_state_dict(saved_state_dict)
    """
    spec = resolve(arch)
    if spec.source not in ("builtin", "timm", "tv"):
        raise ConfigError(f"'{arch}' is not an architecture; use timm:NAME, tv:NAME or a built-in name.")
    with seeded(seed):
        backbone = _build_random(spec.arch)
    backbone.weights = WeightsInfo(model_id=arch, arch=spec.arch, source="scratch", extra={"seed": seed})
    return backbone


def _classifier_keys(arch: str, headless: nn.Module) -> set[str]:
    # Keys the full classifier network has and the headless one lacks; built on the meta device.
    source, _, name = arch.partition(":")
    with torch.device("meta"):
        if source == "timm":
            import timm

            full = timm.create_model(name)
        else:
            from graftkit.backbones.torchvision_backbone import build_classifier_model

            full = build_classifier_model(name)
    return set(full.state_dict()) - set(headless.state_dict())


def _load_file(spec: ModelSpec) -> Backbone:
    assert spec.path is not None  # set by resolve() for file: ids
    backbone = build_architecture(spec.arch)
    net = backbone.model  # type: ignore[attr-defined]  # both image adapters store `.model`
    backbone.weights = files.load_into(
        net, _classifier_keys(spec.arch, net), spec.path, model_id=spec.model_id, arch=spec.arch
    )
    return backbone


def load_backbone(
    model_id: str,
    *,
    arch: str | None = None,
    offline: bool = False,
    seed: int = 0,
    pretrained: bool = True,
) -> Backbone:
    """Build the backbone a model id names, with its weights.

    Args:
        model_id: `efficientnet_lite0`, `timm:NAME`, `tv:NAME`, `file:PATH` or `scratch:ID`.
        arch: For `file:` ids, the architecture the weights fit (`--arch`).
        offline: Never touch the network (also on with `HF_HUB_OFFLINE=1` or `GRAFTKIT_OFFLINE=1`).
        seed: Seeds random initialisation (`scratch:` ids, `pretrained=False`).
        pretrained: False builds the same architecture with random weights, like `scratch:`.

    Returns:
        An `nn.Module` backbone whose `weights` records the id, architecture, source and the
        SHA-256 of the weights file (None for random weights; the seed is in `weights.extra`).

    Raises:
        UnknownModelError: Unknown id; the message lists close matches.
        WeightsNotAvailableError: Weights not cached and offline (or the download failed); the
            message names `graft pull ID`.
        WeightsMismatchError: The weights do not fit the architecture, or fail their checksum.
        ConfigError: `file:` without `arch`, or an unreadable path.

    Example:
        >>> bb = load_backbone("efficientnet_lite0")
        >>> bb.weights.sha256[:8]
        '57934424'
    """
    spec = resolve(model_id, arch)
    if spec.source == "scratch" or not pretrained:
        backbone = build_architecture(spec.arch, seed=seed)
        backbone.weights = replace(backbone.weights, model_id=model_id)
        return backbone
    offline = is_offline(offline)
    if spec.source == "builtin":
        return builtin.load_builtin(spec.name, model_id=model_id)
    if spec.source == "timm":
        return timm_hub.load_timm(spec.name, model_id=model_id, offline=offline)
    if spec.source == "tv":
        return tv_hub.load_tv(spec.name, model_id=model_id, offline=offline)
    return _load_file(spec)


def pull(model_id: str) -> Path:
    """Put the weights of `model_id` into the local cache, downloading them if needed.

    Run it on a machine with network access; then `--offline` loads work there, or on another
    machine once the cache (`HF_HUB_CACHE`, `$TORCH_HOME/hub`) is copied over.

    Args:
        model_id: A built-in, `timm:` or `tv:` id (`file:` ids are returned as they are).

    Returns:
        The local weights file.

    Raises:
        WeightsNotAvailableError: The download failed; the message says why.
        ConfigError: `scratch:` ids have no weights to pull.

    Example:
        >>> pull("timm:resnet18")  # doctest: +SKIP
        PosixPath('~/.cache/huggingface/hub/models--timm--resnet18.a1_in1k/snapshots/.../model.safetensors')
    """
    if model_id.strip().startswith("file:"):
        return files.weights_file(Path(model_id.strip()[len("file:") :]).expanduser())
    spec = resolve(model_id)
    if spec.source == "scratch":
        raise ConfigError(f"'{model_id}' uses random weights; there is nothing to pull.")
    if spec.source == "builtin":
        path, _ = builtin.checked_weights_path(builtin.BUILTINS[spec.name])
        return path
    if spec.source == "timm":
        return timm_hub.locate(spec.name, model_id, offline=is_offline())
    if spec.source == "tv":
        return tv_hub.locate(spec.name, model_id, offline=is_offline())
    raise ConfigError(f"Cannot pull '{model_id}'.")  # unreachable while resolve() knows no other source
