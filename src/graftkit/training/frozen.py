"""Frozen-backbone features of labelled samples, with the engine and cache key `fit()` uses.

Shared by `--strategy auto` (its quick probe) and `graftkit.selection` (ranking, LR finder,
tuning): features computed by any of them are read back from the cache by the others and by the
linear probe.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def inference_engine(backbone: nn.Module, precision: str = "auto"):
    """The inference engine `fit()` uses for this backbone's frozen features."""
    from graftkit.training.engine import LocalEngine, choose_channels_last, choose_precision

    arch = backbone.weights.arch
    prec, _ = choose_precision(arch, training=False, requested=precision)
    return LocalEngine(precision=prec, channels_last=choose_channels_last(arch, None))


def labelled_features(
    backbone: nn.Module,
    samples: Sequence[Any],
    classes: list[str],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    cache: bool = True,
    engine: Any = None,
) -> Features:
    """Features of labelled image samples (`.path`, `.label`), computing only what the cache lacks.

    Args:
        backbone: The backbone; its groups are frozen and it is put in eval mode while extracting.
        samples: Samples with `path` and `label`.
        classes: Class names; a label's index in this list is its integer label.
        batch_size: Images per forward pass.
        num_workers: Loader worker processes (None: from the CPU count).
        cache: Use the on-disk feature cache (`$GRAFTKIT_CACHE/features`).
        engine: Inference engine; default `inference_engine(backbone)`.

    Returns:
        `Features` in the order of `samples`.

    Example:
        >>> f = labelled_features(backbone, data.train, data.classes)
        >>> f.features.shape, f.cached
        ((800, 1280), 800)
    """
    from graftkit.data.cache import FeatureCache
    from graftkit.strategies import freeze_layer_groups
    from graftkit.training._build import eval_loader_factory
    from graftkit.training.config import TrainConfig
    from graftkit.training.features import extract_features, feature_cache_key

    engine = engine or inference_engine(backbone)
    freeze_layer_groups(backbone.layer_groups(), 0)
    backbone = engine.setup(backbone)
    store = FeatureCache(feature_cache_key(backbone, engine.precision, engine.channels_last)) if cache else None
    cfg = TrainConfig(batch_size=batch_size, num_workers=num_workers)
    feats, stats = extract_features(
        backbone, [s.path for s in samples], eval_loader_factory(backbone, cfg), engine, store, description="features"
    )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[s.label] for s in samples], dtype=np.int64)
    return Features(feats.numpy().astype(np.float32), labels, stats.computed, stats.cached, stats.seconds)
