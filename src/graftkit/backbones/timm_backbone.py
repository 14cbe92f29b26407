"""Backbone adapter for timm image models (DESIGN.md §2)."""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from graftkit.backbones._groups import collapse_groups, top_level_group_of
from graftkit.backbones.base import ImagePreprocess, WeightsInfo


def preprocess_from_timm_cfg(cfg: Any) -> ImagePreprocess:
    """Read image size, mean/std, interpolation and crop fraction from a timm pretrained config.

    Args:
        cfg: A timm `pretrained_cfg` (dict or `PretrainedCfg`).

    Returns:
        The evaluation preprocessing the weights were trained with.
    """
    cfg = cfg if isinstance(cfg, dict) else cfg.to_dict()
    default = ImagePreprocess()
    size = cfg.get("input_size") or (3, default.input_size, default.input_size)
    mean = tuple(cfg.get("mean") or default.mean)
    std = tuple(cfg.get("std") or default.std)
    if len(mean) == 1:  # single-channel stats: broadcast to RGB
        mean, std = mean * 3, std * 3
    return ImagePreprocess(
        input_size=int(size[-1]),
        mean=mean,
        std=std,
        interpolation=cfg.get("interpolation") or default.interpolation,
        crop_pct=float(cfg.get("crop_pct") or default.crop_pct),
    )


class TimmBackbone(nn.Module):
    """A timm model without its classifier, exposing the Backbone contract.

    The timm model is stored as `self.model`, so state-dict keys are `model.<timm keys>`.

    Args:
        model: A timm model built with `num_classes=0` (or after `reset_classifier(0)`).
        weights: Where the weights came from.

    Example:
        >>> bb = TimmBackbone.create("resnet18")
        >>> bb.forward_features(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 512])
    """

    modality = "image"

    def __init__(self, model: nn.Module, weights: WeightsInfo) -> None:
        super().__init__()
        if getattr(model, "num_classes", 0) != 0:
            raise ValueError("TimmBackbone needs a headless timm model: call reset_classifier(0) first")
        self.model = model
        self.weights = weights
        # MobileNetV3-style heads add a conv after pooling: head_hidden_size is the pooled width.
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.preprocess = preprocess_from_timm_cfg(model.pretrained_cfg)

    @classmethod
    def create(
        cls, name: str, *, pretrained: bool = False, weights: WeightsInfo | None = None
    ) -> TimmBackbone:
        """Build `timm.create_model(name, pretrained=pretrained, num_classes=0)` and wrap it.

        Args:
            name: A timm model name, optionally with a pretrained tag (`resnet18.a1_in1k`).
            pretrained: Let timm fetch its pretrained weights (may use the network).
            weights: Provenance to record; defaults to the timm id with no checksum.

        Returns:
            The wrapped backbone.
        """
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        info = weights or WeightsInfo(
            model_id=f"timm:{name}", arch=f"timm:{name}", source="timm" if pretrained else "scratch"
        )
        return cls(model, info)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features.

        Args:
            x: Images, `[B, 3, H, W]`, normalised as `preprocess` says.

        Returns:
            `[B, num_features]`.
        """
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `forward_features`."""
        return self.forward_features(x)

    def layer_groups(self) -> list[list[nn.Module]]:
        """Modules from input to output, grouped by timm's own `group_matcher(coarse=True)`.

        Returns:
            Stem first, then one group per stage; timm folds the final conv/norm into the last
            stage. Every parameter appears in exactly one group.
        """
        try:
            matcher = self.model.group_matcher(coarse=True)
        except (AttributeError, NotImplementedError):
            matcher = None
        if not matcher:
            return collapse_groups(self.model, top_level_group_of(self.model))
        from timm.models import group_parameters

        group_id = group_parameters(self.model, matcher, reverse=True)
        return collapse_groups(self.model, group_id.__getitem__)
