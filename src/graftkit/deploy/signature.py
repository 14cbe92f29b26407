"""What an exported model takes and returns, per modality: names, shapes, dynamic axes.

Image runs take `pixel_values` `[batch, 3, S, S]` (float32, already resized, cropped and
normalised); text runs take `input_ids` and `attention_mask` `[batch, sequence]` (int64), both
axes dynamic. Every run returns `logits` `[batch, C]`: the head's raw outputs, which the task's
`activate` turns into probabilities (softmax, sigmoid) or values (regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


OUTPUT_NAME = "logits"


@dataclass
class Signature:
    """The exported graph's interface."""

    module: nn.Module
    """Takes the inputs positionally, in `input_names` order; returns `[batch, C]` logits."""
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    """Per input and output name: axis index → symbolic name (`batch`, `sequence`)."""
    input_spec: dict[str, dict[str, Any]]
    """Per input: `shape` (symbolic names for dynamic axes) and `dtype`, for preprocess.json."""
    output_spec: dict[str, Any]
    """How to read `logits` (the task's `export_spec()`: activation, thresholds, scaling)."""


class TextLogits(nn.Module):
    """A text `GraftModel` with positional tensor inputs (exporters trace tensors, not dicts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})  # (B, T) -> (B, C)


def example_inputs(batch: dict[str, torch.Tensor], sig: Signature) -> tuple[torch.Tensor, ...]:
    """A batch's tensors in the signature's positional order."""
    return tuple(batch[n] for n in sig.input_names)
