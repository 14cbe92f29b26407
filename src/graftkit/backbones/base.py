"""The Backbone contract (DESIGN.md §2): one interface over every source and modality.

Head replacement, freezing, discriminative learning rates and feature caching are written once,
against this interface, never against a particular library's model class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from graftkit.errors import ConfigError


@dataclass(frozen=True)
class ImagePreprocess:
    """How raw images become the tensors a backbone expects (timm's pretrained-config fields)."""

    input_size: int = 224
    """Side of the square crop fed to the network, in pixels."""
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    """Per-channel mean subtracted after scaling to [0, 1]."""
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    """Per-channel standard deviation divided by after subtracting the mean."""
    interpolation: str = "bilinear"
    """Resize interpolation: `bilinear`, `bicubic` or `nearest`."""
    crop_pct: float = 0.875
    """Evaluation resizes the short side to `input_size / crop_pct`, then centre-crops."""
    in_chans: int = 3
    """Channels the network takes: 3, or 1 for a first convolution adapted to grey input
    (`mean` and `std` then hold one value each)."""
    window: tuple[float, float] | None = None
    """Grey window `(centre, width)` applied when decoding 16-bit and DICOM images (`--window`);
    None: the file's own (DICOM) or the full range."""
    intensity: str = "backbone"
    """Where `mean` / `std` come from: `backbone` (the pretrained weights') or `dataset` (measured
    on the training images, `--intensity dataset`)."""
    layer_pooling: str = "last"
    """`last`: the network's pooled output; `concat`: that, followed by the spatial mean, max and
    standard deviation of every block's output (`--layer-pooling concat`, `TimmBackbone.use_layer_pooling`)."""

    def __post_init__(self) -> None:
        if self.layer_pooling not in IMAGE_LAYER_POOLINGS:
            raise ConfigError(f"--layer-pooling for an image model must be one of {', '.join(IMAGE_LAYER_POOLINGS)}, "
                              f"got {self.layer_pooling!r}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": "image", **asdict(self)}
        for name, default in _IMAGE_DEFAULTS.items():  # written only when set: older runs and caches keep their keys
            if d[name] == default:
                del d[name]
        if d.get("window") is not None:
            d["window"] = list(d["window"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImagePreprocess":
        d = {k: v for k, v in d.items() if k != "kind"}
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        if d.get("window") is not None:
            d["window"] = tuple(float(x) for x in d["window"])
        return cls(**d)


_IMAGE_DEFAULTS = {"in_chans": 3, "window": None, "intensity": "backbone", "layer_pooling": "last"}

IMAGE_LAYER_POOLINGS = ("last", "concat")


_POOLINGS = ("mean", "cls", "last")


@dataclass(frozen=True)
class TextPreprocess:
    """How raw text becomes a text backbone's inputs; the tokenizer itself is saved next to the run."""

    max_length: int = 128
    """Texts are cut to this many tokens (special tokens included)."""
    pooling: str = "mean"
    """How token states become one vector: `mean` (masked mean), `cls` (first token) or `last`
    (last non-padding token; the decoders' default)."""

    def __post_init__(self) -> None:
        if self.pooling not in _POOLINGS:
            raise ConfigError(f"--pooling must be one of {', '.join(_POOLINGS)}, got {self.pooling!r}")
        if self.max_length < 1:
            raise ConfigError(f"--max-length must be a positive number of tokens, got {self.max_length}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "text", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TextPreprocess":
        return cls(**{k: v for k, v in d.items() if k != "kind"})


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from; recorded in every run's graft.json."""

    model_id: str
    """The id the user asked for, e.g. `efficientnet_lite0`, `timm:resnet18`, `scratch:tv:resnet18`."""
    arch: str
    """Canonical architecture, `timm:NAME` or `tv:NAME` (rebuilds the network without weights), or
    `hf:MODEL_TYPE` for transformers models, which are rebuilt from the saved config instead."""
    source: str
    """`builtin`, `timm`, `tv`, `hf`, `file` or `scratch`."""
    sha256: str | None = None
    """SHA-256 of the source weights file (None for random init)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Backbone(Protocol):
    """What every backbone exposes. Implementations are `nn.Module`s."""

    modality: str
    num_features: int
    preprocess: ImagePreprocess | TextPreprocess
    weights: WeightsInfo

    def forward_features(self, x: Any) -> torch.Tensor:
        """Pooled features, `[B, num_features]`: from images `[B, 3, H, W]`, or from a text batch
        (`{"input_ids": ..., "attention_mask": ...}`)."""
        ...

    def layer_groups(self) -> list[list[nn.Module]]:
        """Modules in order from input to output; partial/gradual unfreezing and layer-wise LR use it."""
        ...
