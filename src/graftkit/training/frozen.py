"""Frozen-backbone features of labelled samples, with the engine and cache key `fit()` uses.

Shared by `--strategy auto` (its quick probe) and `graftkit.selection` (ranking, LR finder):
features computed by any of them are read back from the cache by the others and by the linear
probe. Works for every modality through the training input adapters (`training/inputs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from torch import nn


@dataclass
class Features:
    """Features `[N, D]` and integer labels `[N]` of some samples, with how they were obtained."""

    features: np.ndarray
    labels: np.ndarray
    computed: int
    cached: int
    seconds: float


def inference_engine(backbone: nn.Module, precision: str = "auto", device: str = "auto", channels_last: bool | None = None):
    """The inference engine `fit()` uses for this backbone's frozen features (same device,
    precision and memory format for the same settings, hence the same feature-cache key).

    Args:
        precision: `--precision` (`auto`, `fp32`, `bf16`).
        device: `--device`.
        channels_last: `--channels-last` (None: per model).
    """
    from graftkit.engine import inference_settings

    modality = getattr(backbone, "modality", "image")
    return inference_settings(backbone.weights.arch, device=device, precision=precision, channels_last=channels_last, modality=modality).engine()


def labelled_features(
    backbone: nn.Module,
    samples: Sequence[Any],
    classes: list[str],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    cache: bool = True,
    engine: Any = None,
    device: str = "auto",
    precision: str = "auto",
    channels_last: bool | None = None,
) -> Features:
    """Features of labelled samples (images or texts), computing only what the cache lacks.

    Args:
        backbone: The backbone; its groups are frozen and it is put in eval mode while extracting.
        samples: Image samples (`.path`, `.label`) or text samples (`.text`, `.label`).
        classes: Class names; a label's index in this list is its integer label.
        batch_size: Inputs per forward pass (text loaders use at least 64).
        num_workers: Image loader worker processes (None: from the CPU count).
        cache: Use the on-disk feature cache (`$GRAFTKIT_CACHE/features`).
        engine: Inference engine; default `inference_engine(backbone, precision, device, channels_last)`.
        device: `auto` (a CUDA GPU when there is one), `cpu` or `cuda[:N]`, as `--device`.
        precision: `auto`, `fp32` or `bf16`, as `--precision` (the run's, so the cache is shared).
        channels_last: As `--channels-last` (None: per model).

    Returns:
        `Features` in the order of `samples`.

    Example:
        >>> f = labelled_features(backbone, data.train, data.classes)
        >>> f.features.shape, f.cached
        ((800, 1280), 800)
    """
    from graftkit.data.cache import FeatureCache
    from graftkit.strategies import freeze_layer_groups
    from graftkit.training.config import TrainConfig
    from graftkit.training.features import extract_features, feature_cache_key
    from graftkit.training.inputs import make_inputs

    engine = engine or inference_engine(backbone, precision=precision, device=device, channels_last=channels_last)
    freeze_layer_groups(backbone.layer_groups(), 0)
    backbone = engine.setup(backbone)
    store = FeatureCache(feature_cache_key(backbone, engine.precision, engine.channels_last)) if cache else None
    cfg = TrainConfig(batch_size=batch_size, num_workers=num_workers)
    inputs = make_inputs(SimpleNamespace(train=list(samples), val=[], test=[]), backbone, cfg)
    items = inputs.items("train")
    feats, stats = extract_features(
        backbone, items, inputs.unlabelled_loader, engine, store, description="features", digests=inputs.digests
    )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[s.label] for s in samples], dtype=np.int64)
    return Features(feats.numpy().astype(np.float32), labels, stats.computed, stats.cached, stats.seconds)
