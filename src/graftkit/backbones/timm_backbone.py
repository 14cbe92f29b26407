"""Backbone adapter for timm image models (DESIGN.md §2)."""

from __future__ import annotations

import inspect
from typing import Any

import timm
import torch
from torch import nn

from graftkit.backbones._groups import collapse_groups, top_level_group_of
from graftkit.backbones.base import ImagePreprocess, WeightsInfo
from graftkit.errors import ConfigError


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
        self.block_outputs: dict[str, Any] | None = None
        """`forward_intermediates` arguments under `--layer-pooling concat`, else None."""

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
        if self.block_outputs is None:
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        final, blocks = self.model.forward_intermediates(x, **self.block_outputs)
        parts = [self.model.forward_head(final, pre_logits=True)]
        for b in blocks:
            parts += [b.mean(dim=(2, 3)), b.amax(dim=(2, 3)), b.std(dim=(2, 3), correction=0)]
        return torch.cat(parts, dim=1)

    def use_layer_pooling(self, kind: str) -> None:
        """Switch to `kind` and record it in `preprocess`: `last`, the pooled output, or `concat`,
        the pooled output followed by every block's spatial mean, max and standard deviation
        (multi-layer features in the manner of Head2Toe, Evci et al. 2022: data far from ImageNet,
        such as Fashion-MNIST, keep more of what they need in the early blocks). `num_features`
        grows to match.

        Raises:
            ConfigError: `weighted` (blocks differ in width), an unknown kind, or a timm model
                without `forward_intermediates`.
        """
        import dataclasses as dc

        if kind == "weighted":
            raise ConfigError("--layer-pooling weighted mixes layers of one width (audio encoders); an image model's blocks "
                              "differ in width: use --layer-pooling concat (every block's pooled output, side by side)")  # fmt: skip
        self.preprocess = dc.replace(self.preprocess, layer_pooling=kind)  # ImagePreprocess refuses an unknown kind
        self.block_outputs = None
        if kind == "concat":
            if not hasattr(self.model, "forward_intermediates"):
                raise ConfigError(f"--layer-pooling concat needs a timm model with forward_intermediates; "
                                  f"{self.weights.model_id} has none: use --layer-pooling last")  # fmt: skip
            self.block_outputs = {}
            if "extra_blocks" in inspect.signature(self.model.forward_intermediates).parameters:
                # EfficientNet / MobileNet: every block, not only the stage ends; the stem (index 0) left out
                self.block_outputs = {"extra_blocks": True, "indices": list(range(1, len(self.model.blocks) + 1))}
        self.num_features = self._pooled_width()

    def _pooled_width(self) -> int:
        """Width of `forward_features` (one forward pass on a blank image)."""
        was_training = self.training
        size = self.preprocess.input_size
        with torch.no_grad():
            width = self.eval().forward_features(torch.zeros(1, self.preprocess.in_chans, size, size)).shape[1]
        self.train(was_training)
        return int(width)

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
