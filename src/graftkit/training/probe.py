"""Linear probe: features computed once through the cache, then the head trains on them in the loop."""

from __future__ import annotations

import torch
from torch import nn

from graftkit.strategies import count_parameters, freeze_layer_groups
from graftkit.tasks import GraftModel
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.features import FeatureStats, extract_features, feature_cache_key
from graftkit.engine import LocalEngine
from graftkit.training.loop import predict_probs, train_loop
from graftkit.engine.progress import info


def probe_features(inputs, backbone, cfg, engine, splits=("train", "val", "test")) -> tuple[dict[str, torch.Tensor], FeatureStats]:
    """Frozen-backbone features `[N, D]` per split, through the on-disk feature cache."""
    freeze_layer_groups(backbone.layer_groups(), 0)
    backbone = engine.setup(backbone)
    cache = None
    if cfg.feature_cache:
        from graftkit.data.cache import FeatureCache

        cache = FeatureCache(feature_cache_key(backbone, engine.precision, engine.channels_last))
    stats = FeatureStats()
    feats = {}
    for split in splits:
        items = inputs.items(split)
        if items:
            feats[split], s = extract_features(
                backbone, items, inputs.unlabelled_loader, engine, cache, description=f"{split} features", digests=inputs.digests
            )
            stats += s
    info(f"features: {stats.computed} computed, {stats.cached} from cache ({stats.seconds:.1f} s)")
    return feats, stats


def train_probe(inputs, backbone, head, task, cfg, engine, callbacks, resume_point, splits=("train", "val", "test")):
    """Linear probe: features once (cached across runs), then the head trains on them."""
    from torch.utils.data import DataLoader, TensorDataset

    feats, stats = probe_features(inputs, backbone, cfg, engine, splits)
    head_engine = LocalEngine()
    labels = {split: inputs.targets(split, task) for split in feats}
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(TensorDataset(feats["train"], labels["train"]), batch_size=cfg.batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(TensorDataset(feats["val"], labels["val"]), batch_size=1024)
    trainable, frozen = count_parameters(nn.ModuleList([backbone, head]))
    info(f"parameters: {trainable:,} trainable (head), {frozen:,} frozen (backbone)")

    if resume_point is not None:
        head.load_state_dict({k.removeprefix("head."): v for k, v in resume_point.model.items()})
    groups = [{"params": [p for p in head.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in head.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    optimizer, scheduler = build_optimizer(groups, cfg, cfg.epochs * len(train_loader), resume_point)
    # The loop trains the head on cached features; state-dict keys stay `head.*` as in the full model.
    result = train_loop(
        GraftModel(PrecomputedFeatures(), head),
        train_loader,
        val_loader,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        engine=head_engine,
        options=loop_options(cfg, resume_point, unit="feat"),
        callbacks=callbacks,
    )
    if result.best_state is not None:
        head.load_state_dict({k.removeprefix("head."): v for k, v in result.best_state.items()})
    outputs = {}
    for split in ("val", "test"):
        if split in feats:
            loader = DataLoader(TensorDataset(feats[split], labels[split]), batch_size=1024)
            outputs[split] = predict_probs(head, loader, head_engine, task)
    return result, outputs, stats


class PrecomputedFeatures(nn.Module):
    """Stands in for a frozen backbone whose features are already computed (the probe's input)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, D) features pass straight to the head
