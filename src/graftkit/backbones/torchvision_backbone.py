"""Backbone adapter for torchvision classification models (DESIGN.md §2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from graftkit.backbones._groups import collapse_groups
from graftkit.backbones.state import load_strict
from graftkit.backbones.base import ImagePreprocess, WeightsInfo
from graftkit.errors import ConfigError

_HEAD_ATTRS = ("fc", "classifier", "heads", "head")
_AUX_ATTRS = ("aux1", "aux2", "AuxLogits")  # GoogLeNet / Inception auxiliary classifiers
# Containers whose children are the network's stages, tried in order.
_STAGE_CONTAINERS = ("encoder.layers", "trunk_output", "features", "layers", "blocks")


def default_weights(name: str) -> Any | None:
    """The `DEFAULT` member of a model's weights enum, or None when it has no pretrained weights.

    Args:
        name: A torchvision classification model name (`resnet18`).

    Returns:
        A `torchvision.models.WeightsEnum` member, or None.
    """
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (KeyError, ValueError, AttributeError):
        return None


def _builder_kwargs(name: str, weights: Any | None) -> dict[str, Any]:
    # Mirrors what each torchvision builder overrides when it is given `weights`, so that the
    # random-init architecture is exactly the one the pretrained state dict fits.
    if weights is None:
        return {}
    kwargs: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    if name.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    if name.startswith("maxvit"):
        kwargs["input_size"] = weights.meta["min_size"]
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    return kwargs


def build_classifier_model(name: str) -> nn.Module:
    """A torchvision classifier with random weights, shaped for its `DEFAULT` pretrained weights.

    Args:
        name: A torchvision classification model name.

    Returns:
        The full model, classifier included; nothing is downloaded.
    """
    from torchvision.models import get_model

    return get_model(name, weights=None, **_builder_kwargs(name, default_weights(name)))


def preprocess_from_tv_weights(weights: Any | None) -> ImagePreprocess:
    """Read crop size, resize size, mean/std and interpolation from a weights enum's transforms.

    Args:
        weights: A `WeightsEnum` member, or None for ImageNet defaults.

    Returns:
        The evaluation preprocessing; `crop_pct = crop_size / resize_size`.
    """
    if weights is None:
        return ImagePreprocess()
    t = weights.transforms()
    crop = int(t.crop_size[0])
    resize = int(t.resize_size[0]) if getattr(t, "resize_size", None) else crop
    interp = getattr(t.interpolation, "value", str(t.interpolation))
    return ImagePreprocess(
        input_size=crop,
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        interpolation=interp,
        crop_pct=crop / resize,
    )


def find_classifier(model: nn.Module) -> tuple[str, int]:
    """Locate the final classification layer of a torchvision model.

    Args:
        model: A torchvision classification model.

    Returns:
        The layer's dotted path (`fc`, `classifier.3`, `heads.head`) and its input width.

    Raises:
        ConfigError: No `fc`/`classifier`/`heads`/`head` ending in a Linear or 1x1 Conv2d.
    """
    for attr in _HEAD_ATTRS:
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            return attr, head.in_features
        if isinstance(head, nn.Sequential):
            for child_name, child in reversed(list(head.named_children())):
                if isinstance(child, nn.Linear):
                    return f"{attr}.{child_name}", child.in_features
                if isinstance(child, nn.Conv2d):  # SqueezeNet's classifier is a 1x1 conv
                    return f"{attr}.{child_name}", child.in_channels
    raise ConfigError(
        f"Cannot find the classifier of torchvision model {type(model).__name__}; "
        "use a timm: model id instead."
    )


def _stage_names(model: nn.Module) -> list[str]:
    modules = dict(model.named_modules())
    for container in _STAGE_CONTAINERS:
        if container in modules:
            return [f"{container}.{n}" for n, _ in modules[container].named_children()]
    children = [n for n, _ in model.named_children()]
    for prefix in ("layer", "stage"):  # ResNet layer1..4, ShuffleNet stage2..4
        stages = [n for n in children if n.startswith(prefix) and n[len(prefix) :].isdigit()]
        if stages:
            return stages
    return children


def _stage_group_of(model: nn.Module) -> dict[str, tuple[int, ...]]:
    # Parameters before the first stage form the stem (0,), each stage is (1, i), and what
    # follows the stages (final norm, pre-logits layers) is the last group (2,).
    stages = _stage_names(model)
    group: dict[str, tuple[int, ...]] = {}
    seen_stage = False
    for name, _ in model.named_parameters():
        index = next((i for i, s in enumerate(stages) if name.startswith(s + ".")), None)
        if index is not None:
            group[name], seen_stage = (1, index), True
        else:
            group[name] = (2,) if seen_stage else (0,)
    return group


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier with its last layer replaced by Identity: the Backbone contract.

    The torchvision model is stored as `self.model`, so state-dict keys are `model.<tv keys>`.

    Args:
        model: A full torchvision classification model; its classifier layer (and any auxiliary
            classifiers) are replaced in place.
        weights: Where the weights came from.
        preprocess: The preprocessing the weights expect.

    Example:
        >>> bb = TorchvisionBackbone.create("resnet18")
        >>> bb.forward_features(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 512])
    """

    modality = "image"

    def __init__(self, model: nn.Module, weights: WeightsInfo, preprocess: ImagePreprocess) -> None:
        super().__init__()
        path, self.num_features = find_classifier(model)
        model.set_submodule(path, nn.Identity())
        if getattr(model, "aux_logits", False):
            model.aux_logits = False
        for attr in _AUX_ATTRS:
            if getattr(model, attr, None) is not None:
                setattr(model, attr, None)
        self.model = model
        self.weights = weights
        self.preprocess = preprocess

    @classmethod
    def create(
        cls,
        name: str,
        *,
        weights: WeightsInfo | None = None,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        what: str = "",
        hint: str = "",
    ) -> TorchvisionBackbone:
        """Build torchvision model `name`, optionally fill it from a full state dict, and wrap it.

        Args:
            name: A torchvision classification model name.
            weights: Provenance to record; defaults to random init.
            state_dict: Weights for the *full* model (classifier included), loaded strictly.
            what: Names the weights in error messages.
            hint: The fix an error message suggests.

        Returns:
            The wrapped backbone; preprocessing comes from the `DEFAULT` weights' transforms.

        Raises:
            WeightsMismatchError: `state_dict` does not fit the architecture.
        """
        model = build_classifier_model(name)
        if state_dict is not None:
            load_strict(model, state_dict, what=what or f"tv:{name}", hint=hint)
        info = weights or WeightsInfo(model_id=f"tv:{name}", arch=f"tv:{name}", source="scratch")
        return cls(model, info, preprocess_from_tv_weights(default_weights(name)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features.

        Args:
            x: Images, `[B, 3, H, W]`, normalised as `preprocess` says.

        Returns:
            `[B, num_features]`.
        """
        return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `forward_features`."""
        return self.forward_features(x)

    def layer_groups(self) -> list[list[nn.Module]]:
        """Modules from input to output: stem, one group per stage, then what follows the stages.

        ResNets: `[conv1, bn1]`, `layer1` ... `layer4`; models with `.features`: one group per
        child; ViT: patch projection + class token + position embedding, each encoder layer, the
        final LayerNorm. Every parameter appears in exactly one group.

        Returns:
            Lists of modules, input first.
        """
        group = _stage_group_of(self.model)
        return collapse_groups(self.model, group.__getitem__)
