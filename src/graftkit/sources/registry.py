"""`graft models`: list model ids, their size, input size and whether their weights are here.

Text models are listed too: the built-in `minilm` and every transformers model in the local
Hugging Face cache (as `hf:ORG/NAME`); their parameters are counted from the safetensors header.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any

import torch

from graftkit.backbones.base import WeightsInfo
from graftkit.sources import builtin, hf_hub, timm_hub
from graftkit.sources.audio_builtin import AUDIO_BUILTINS
from graftkit.sources.ids import tv_names

CURATED: tuple[str, ...] = (
    "timm:resnet18",
    "timm:resnet50",
    "timm:mobilenetv3_large_100",
    "timm:efficientnet_b0",
    "timm:convnext_tiny",
    "timm:vit_tiny_patch16_224",
    "timm:vit_small_patch16_224",
    "tv:resnet18",
    "tv:resnet50",
    "tv:mobilenet_v3_large",
    "tv:efficientnet_b0",
    "tv:convnext_tiny",
    "tv:vit_b_16",
)
"""Common ids listed by default, next to the built-ins."""

_MAX_COUNTED = 40  # beyond this many matches, parameter counts are left out to keep listing fast


@dataclass(frozen=True)
class ModelInfo:
    """One row of `graft models`."""

    id: str
    """The model id to pass to `--model`."""
    source: str
    """`builtin`, `timm`, `tv` or `hf`."""
    params: int | None
    """Parameters of the backbone without classifier; None when not counted (long listings)."""
    input_size: int | None
    """Side of the square input the pretrained weights expect, in pixels (None for text)."""
    available_offline: bool
    """Whether the weights are already on this machine (no network needed)."""
    description: str
    """Where the weights come from, in a line."""
    modality: str = "image"
    """`image`, `text` or `audio`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _all_ids() -> list[str]:
    import timm

    tagged = timm.list_models(pretrained=True)
    archs = dict.fromkeys(name.split(".")[0] for name in tagged)
    timm_ids = sorted(set(archs) | set(tagged))
    return [
        *builtin.BUILTINS,
        *builtin.TEXT_BUILTINS,
        *AUDIO_BUILTINS,
        *(f"timm:{n}" for n in timm_ids),
        *(f"tv:{n}" for n in tv_names()),
        *_hf_cached_ids(),
    ]


def _hf_cached_ids() -> list[str]:
    return [f"hf:{m.repo}" for m in hf_hub.cached_models()]


def _text_info(model_id: str) -> ModelInfo:
    if model_id in builtin.TEXT_BUILTINS:
        entry = builtin.TEXT_BUILTINS[model_id]
        try:
            folder = entry.folder()
        except Exception:  # package not installed
            return ModelInfo(model_id, "builtin", None, None, False, entry.description, "text")
        here = entry.weights_path().is_file()
        return ModelInfo(model_id, "builtin", hf_hub.count_parameters(folder), None, here, entry.description, "text")
    name = model_id[len("hf:") :]
    local = hf_hub.find_cached(*hf_hub.split_revision(name))
    if local is None:
        return ModelInfo(model_id, "hf", None, None, False, "transformers model on the Hugging Face hub", "text")
    kind = next((m.model_type for m in hf_hub.cached_models() if m.folder == local), None)
    desc = f"transformers {kind or 'text'} model in the Hugging Face cache"
    return ModelInfo(model_id, "hf", hf_hub.count_parameters(local), None, True, desc, "text")


def _audio_info(model_id: str) -> ModelInfo:
    entry = AUDIO_BUILTINS[model_id]
    try:
        here = entry.weights_path().is_file()
    except Exception:  # package not installed
        here = False
    return ModelInfo(model_id, "builtin", None, None, here, entry.description, "audio")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _timm_info(model_id: str, name: str, count: bool) -> tuple[int | None, int | None, bool, str]:
    import timm
    from timm.models import get_pretrained_cfg

    params = None
    if count:
        with torch.device("meta"):
            params = _count(timm.create_model(name, num_classes=0))
    cfg = get_pretrained_cfg(name)
    size = int(cfg.input_size[-1]) if cfg and cfg.input_size else None
    try:
        weights = timm_hub.timm_weights(name, model_id)
    except Exception:  # no pretrained weights for this name
        return params, size, False, "timm, no pretrained weights"
    where = weights.hf_repo or weights.url or ""
    return (
        params,
        size,
        timm_hub.find_cached(weights) is not None,
        f"timm {cfg.architecture}.{cfg.tag} from {where}",
    )


def _tv_info(name: str, count: bool) -> tuple[int | None, int | None, bool, str]:
    from graftkit.backbones.torchvision_backbone import (
        TorchvisionBackbone,
        build_classifier_model,
        default_weights,
        preprocess_from_tv_weights,
    )

    weights = default_weights(name)
    params = None
    if count:
        with torch.device("meta"):
            info = WeightsInfo(model_id=f"tv:{name}", arch=f"tv:{name}", source="scratch")
            params = _count(
                TorchvisionBackbone(build_classifier_model(name), info, preprocess_from_tv_weights(None))
            )
    if weights is None:
        return params, None, False, "torchvision, no pretrained weights"
    acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    desc = f"torchvision {weights}" + (f", ImageNet-1k top-1 {acc}%" if acc else "")
    cached = timm_hub.torch_hub_checkpoint(weights.url).is_file()
    return params, preprocess_from_tv_weights(weights).input_size, cached, desc


def model_info(model_id: str, *, count_params: bool = True) -> ModelInfo:
    """Describe one built-in, `timm:`, `tv:` or `hf:` id without loading weights or using the network.

    Args:
        model_id: The id.
        count_params: Count parameters (builds the network on the meta device: no memory).

    Returns:
        The description.
    """
    if model_id in AUDIO_BUILTINS:
        return _audio_info(model_id)
    if model_id in builtin.TEXT_BUILTINS or model_id.startswith("hf:"):
        return _text_info(model_id)
    if model_id in builtin.BUILTINS:
        entry = builtin.BUILTINS[model_id]
        params, size, _, _ = _timm_info(model_id, entry.timm_name, count_params)
        try:
            here = entry.weights_path().is_file()
        except Exception:  # package not installed
            here = False
        return ModelInfo(model_id, "builtin", params, size, here, entry.description)
    source, _, name = model_id.partition(":")
    if source == "timm":
        params, size, here, desc = _timm_info(model_id, name, count_params)
    else:
        params, size, here, desc = _tv_info(name, count_params)
    return ModelInfo(model_id, source, params, size, here, desc)


def list_models(pattern: str | None = None, all: bool = False) -> list[ModelInfo]:  # noqa: A002
    """List model ids: by default the built-ins, a curated set of common models and the
    transformers models already in the local Hugging Face cache.

    Args:
        pattern: Shell-style wildcards matched against every id, case-insensitively
            (`timm:*resnet*`, `*lite*`, `tv:vit_*`, `hf:*`); searches all timm pretrained names,
            all torchvision classification models and the cached transformers models.
        all: List every id (without a pattern). Parameter counts are only filled in when at most
            40 ids are listed.

    Returns:
        One `ModelInfo` per id, built-ins first.

    Example:
        >>> [m.id for m in list_models("*lite0")]
        ['efficientnet_lite0', 'timm:efficientnet_lite0', 'timm:tf_efficientnet_lite0']
    """
    if pattern is None and not all:
        ids = [*builtin.BUILTINS, *builtin.TEXT_BUILTINS, *AUDIO_BUILTINS, *CURATED, *_hf_cached_ids()]
    else:
        wanted = (pattern or "*").lower()
        ids = [i for i in _all_ids() if fnmatch.fnmatchcase(i.lower(), wanted)]
    count = len(ids) <= _MAX_COUNTED
    return [model_info(i, count_params=count) for i in ids]
