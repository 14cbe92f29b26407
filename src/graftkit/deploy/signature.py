"""What an exported model takes and returns, per modality: names, shapes, dynamic axes.

Image runs take `pixel_values` `[batch, 3, S, S]` (float32, already resized, cropped and
normalised); text runs take `input_ids` and `attention_mask` `[batch, sequence]` (int64), both
axes dynamic. Every run returns `logits` `[batch, C]`: the head's raw outputs, which the task's
`activate` turns into probabilities (softmax, sigmoid) or values (regression).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    output_names: list[str] = field(default_factory=lambda: [OUTPUT_NAME])
    """The graph's outputs: `logits`, or one per task for a multitask run (`split_outputs`)."""


class SplitOutputs(nn.Module):
    """A model whose logits `[B, sum C_t]` leave the graph as one output per task `[B, C_t]`."""

    def __init__(self, module: nn.Module, widths: list[int]) -> None:
        super().__init__()
        self.module = module
        self.widths = list(widths)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.module(*inputs).split(self.widths, dim=1))


def split_outputs(sig: Signature) -> Signature:
    """One output per part when the task's export spec lists `outputs` with widths (multitask);
    consumers concatenate them back (`join_outputs`), so the task reads the same logits."""
    parts = sig.output_spec.get("outputs")
    if not isinstance(parts, dict) or not all(isinstance(p, dict) and "width" in p for p in parts.values()):
        return sig
    names = list(parts)
    axes = {k: v for k, v in sig.dynamic_axes.items() if k != OUTPUT_NAME}
    if OUTPUT_NAME in sig.dynamic_axes:
        axes.update({n: dict(sig.dynamic_axes[OUTPUT_NAME]) for n in names})
    return Signature(SplitOutputs(sig.module, [int(parts[n]["width"]) for n in names]).eval(), sig.input_names, axes, sig.input_spec,
                     sig.output_spec, names)  # fmt: skip


def join_outputs(outputs: Any) -> Any:
    """The logits from a graph's outputs: one tensor / array as is, several side by side."""
    if isinstance(outputs, (tuple, list)):
        if len(outputs) == 1:
            return outputs[0]
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(list(outputs), dim=1)
        import numpy as np

        return np.concatenate(list(outputs), axis=1)
    return outputs


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
