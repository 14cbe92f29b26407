"""One-channel backbones: the pretrained first convolution adapted to grey input, as timm does.

For `in_chans=1`, timm's `adapt_input_conv` sums the first convolution's RGB filters into one
filter. On a grey image copied to three channels (R = G = B), that summed filter gives the same
response as the original three, when the three channels are normalised alike — so the adapted
network starts exactly where the pretrained one would on a copied-grey input, with a third of the
first layer's multiply-adds and input memory. Normalisation for the single channel uses the mean
of the per-channel means and standard deviations (exact for EfficientNet-Lite's 0.5 / 0.5).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from graftkit.errors import ConfigError

__all__ = ["first_conv", "adapt_input_channels"]


def first_conv(backbone: nn.Module) -> tuple[str, nn.Conv2d]:
    """The convolution that reads the image: timm's `pretrained_cfg["first_conv"]` when known, else
    the first `Conv2d` (in registration order) with 3 input channels.

    Raises:
        ConfigError: the backbone has no such convolution (e.g. a text model).
    """
    model = getattr(backbone, "model", backbone)
    named = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if isinstance(named, str):
        try:
            conv = model.get_submodule(named)
            if isinstance(conv, nn.Conv2d):
                return named, conv
        except AttributeError:
            pass
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels in (1, 3):
            return name, module
    raise ConfigError(f"--in-chans 1: found no image convolution in {type(model).__name__} to adapt; use --in-chans 3")


def adapt_input_channels(backbone: nn.Module, in_chans: int) -> dict[str, str | int]:
    """Make `backbone` take `in_chans` (1 or 3) channels, in place: its first convolution's weights
    go through timm's `adapt_input_conv` (sum of the RGB filters for 1), and its `preprocess`
    gets one mean/std value.

    Returns:
        What was done, for graft.json (`model.extra["input_channels"]`).

    Raises:
        ConfigError: `in_chans` is not 1 or 3, or there is no convolution to adapt.

    Example:
        >>> adapt_input_channels(backbone, 1)
        {'in_chans': 1, 'first_conv': 'conv_stem', 'method': 'sum of the pretrained RGB filters (timm adapt_input_conv)'}
    """
    import torch
    from timm.models import adapt_input_conv

    if in_chans not in (1, 3):
        raise ConfigError(f"--in-chans must be 1 or 3, got {in_chans}")
    name, conv = first_conv(backbone)
    if conv.in_channels != in_chans:
        if conv.in_channels != 3:
            raise ConfigError(f"--in-chans {in_chans}: the first convolution {name} takes {conv.in_channels} channels, not 3")
        with torch.no_grad():
            weight = adapt_input_conv(in_chans, conv.weight.detach())  # (out, 1, k, k): the RGB filters summed
        conv.weight = nn.Parameter(weight.contiguous(), requires_grad=conv.weight.requires_grad)
        conv.in_channels = in_chans
    pre = backbone.preprocess
    if in_chans == 1 and len(pre.mean) == 3:
        mean, std = sum(pre.mean) / 3, sum(pre.std) / 3
        backbone.preprocess = dataclasses.replace(pre, in_chans=1, mean=(mean,), std=(std,))
    return {"in_chans": in_chans, "first_conv": name, "method": "sum of the pretrained RGB filters (timm adapt_input_conv)"}
