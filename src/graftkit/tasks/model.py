"""A pretrained backbone with a new head: the output layer replaced for the user's task."""

from __future__ import annotations

import torch
from torch import nn


class GraftModel(nn.Module):
    """`head(backbone.forward_features(x))`. State-dict keys: `backbone.*` and `head.*`."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))  # (B, D) -> (B, C)
