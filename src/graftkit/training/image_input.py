"""Image input settings of a run: channels (`--in-chans`), grey window (`--window`) and intensity
normalisation (`--intensity`), applied to the backbone before anything is computed.

They all land in the backbone's `ImagePreprocess`, so graft.json records them, the feature-cache
key includes them (a different window or channel count never reuses a feature), and evaluate,
predict, export and serve decode new images the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from graftkit.training.config import TrainConfig, parse_window

GREY_DEFAULT_IN_CHANS = 1
"""`--in-chans` for grey data when it is not given: 1 (adapted first convolution). Measured on
Fashion-MNIST against copying grey to 3 channels (`benchmarks/one_channel.py`, RESULTS.md): validation
accuracy ties (probe identical; fine-tune +0.2 points median over 6 paired seeds, within noise), and
the tie goes to the network that does less work (1.9 % fewer FLOPs, a third of the input)."""


def apply_image_settings(backbone: nn.Module, cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
    """Set the backbone's channels, window and intensity statistics from the run's settings.

    Args:
        backbone: An image backbone with pretrained (or random) weights; changed in place.
        cfg: The run's settings (`in_chans`, `window`, `intensity`, `seed`).
        dataset: The validated data (its `train` samples decide grey-ness and the statistics).

    Returns:
        What was decided and why, recorded in graft.json under `model.extra["input"]`.
    """
    from graftkit.backbones.channels import adapt_input_channels
    from graftkit.data.intensity import all_single_channel, intensity_stats

    paths = [s.path for s in dataset.train]
    window = parse_window(cfg.window) if cfg.window is not None else None
    if cfg.in_chans is not None:
        in_chans, reason = cfg.in_chans, f"--in-chans {cfg.in_chans}"
    elif all_single_channel(paths, seed=cfg.seed):
        in_chans = GREY_DEFAULT_IN_CHANS
        reason = f"every sampled training image is grey: {in_chans} channel(s), the measured default for grey data"
    else:
        in_chans, reason = 3, "colour training images"
    decided: dict[str, Any] = {"in_chans": in_chans, "reason": reason}
    if in_chans == 1:
        decided.update(adapt_input_channels(backbone, 1))
    backbone.preprocess = dataclasses.replace(backbone.preprocess, window=window)
    if cfg.intensity == "dataset":
        mean, std = intensity_stats(paths, channels=in_chans, window=window, seed=cfg.seed)
        backbone.preprocess = dataclasses.replace(backbone.preprocess, mean=mean, std=std, intensity="dataset")
        decided["intensity"] = {"mean": list(mean), "std": list(std), "images": min(len(paths), 256)}
    backbone.weights = dataclasses.replace(backbone.weights, extra={**backbone.weights.extra, "input": decided})
    return decided
