"""Frozen-backbone feature extraction, through the feature cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from graftkit.data.cache import FeatureCache, file_digests
from graftkit.engine import Engine, eval_mode
from graftkit.engine.progress import EpochProgress


@dataclass
class FeatureStats:
    """How a set of features was obtained; recorded in the run."""

    computed: int = 0
    cached: int = 0
    seconds: float = 0.0

    def __iadd__(self, other: "FeatureStats") -> "FeatureStats":
        self.computed += other.computed
        self.cached += other.cached
        self.seconds += other.seconds
        return self


def feature_cache_key(backbone: nn.Module, precision: str, channels_last: bool) -> dict:
    """Everything except the image that determines a feature vector."""
    w = backbone.weights
    return {
        "arch": w.arch,
        "weights_sha256": w.sha256 or _state_dict_digest(backbone),
        "preprocess": backbone.preprocess.to_dict(),
        "precision": precision,
        "channels_last": channels_last,
        # 2: 16-bit and DICOM images decode at full depth (float), no longer through uint8;
        # 3: `--layer-pooling weighted` layer-normalises each layer's frames before pooling
        "version": 3,
    }


def _state_dict_digest(module: nn.Module) -> str:
    # Random-init (scratch) weights have no file: hash the tensors themselves.
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def compute_features(backbone: nn.Module, loader, engine: Engine, *, description: str = "features", sink=None) -> torch.Tensor | None:
    """Run the frozen backbone over `loader` (yielding `(inputs, _)`), returning `[N, D]` fp32 on CPU
    in the order of the loader's samples (text loaders that sort by length say how in `order`).

    With several processes each computes its shard of every batch and all get every row (gathered
    once, as computed). With `sink`, each batch's features go to `sink(features)` as computed and
    nothing is kept (returns None): a pass over data larger than memory."""
    out = []
    loader = engine.shard(loader)
    unit = "seq" if getattr(backbone, "modality", "image") == "text" else "img"
    with eval_mode(backbone), EpochProgress(description, total=len(loader), unit=unit) as bar:
        for inputs, targets in loader:
            inputs = engine.to_device(inputs)
            with engine.autocast():
                feats = backbone.forward_features(inputs)  # (B, D)
            rows = engine.gather(feats.float()).cpu()  # several processes: the batch's rows from all, once
            if sink is not None:
                sink(rows)
            else:
                out.append(rows)
            bar.advance(len(targets))
    if sink is not None:
        return None
    if not out:
        return torch.zeros((0, backbone.num_features))
    feats = torch.cat(out)
    order = getattr(loader, "order", None)
    if order is not None:
        from graftkit.data.text_loader import restore_order

        feats = restore_order(feats, order)
    return feats


def extract_features(
    backbone: nn.Module,
    paths: Sequence[Path],
    make_loader,
    engine: Engine,
    cache: FeatureCache | None,
    *,
    description: str = "features",
    digests=None,
) -> tuple[torch.Tensor, FeatureStats]:
    """Features for `paths` (image files, or texts) in order, computing only what the cache lacks.

    Args:
        make_loader: `make_loader(paths) -> DataLoader` yielding preprocessed `(inputs, _)` batches.
        digests: `digests(paths) -> list[str]`, each item's content hash (default: file contents).

    Returns:
        Features `[N, D]` and how many were computed vs read from the cache.
    """
    t0 = time.perf_counter()
    if cache is None:
        feats = compute_features(backbone, make_loader(list(paths)), engine, description=description)
        return feats, FeatureStats(computed=len(paths), seconds=time.perf_counter() - t0)
    digests = (digests or file_digests)(paths)
    if getattr(engine, "processes", 1) == 1:
        places, missing = cache.locate(digests)
        loader = make_loader([paths[i] for i in missing])
        if getattr(loader, "order", None) is None:  # rows come in order: stream them to disk
            return _stream_features(backbone, loader, engine, cache, digests, places, missing, description, t0)
    found, missing = cache.lookup(digests)
    if missing:
        new = compute_features(backbone, make_loader([paths[i] for i in missing]), engine, description=description)
        if engine.is_main:  # several processes computed them together; one writes
            cache.store([digests[i] for i in missing], new)
        engine.wait()
        found.update(zip(missing, new))
    feats = torch.stack([found[i] for i in range(len(paths))]) if paths else torch.zeros((0, backbone.num_features))
    return feats, FeatureStats(computed=len(missing), cached=len(paths) - len(missing), seconds=time.perf_counter() - t0)


def _stream_features(backbone, loader, engine, cache: FeatureCache, digests: list[str], places: dict, missing: list[int], description: str,
                     t0: float) -> tuple[torch.Tensor, FeatureStats]:  # fmt: skip
    """The `missing` features streamed into a new cache shard as computed, then every row read
    memory-mapped (`FeatureCache.assemble`): RAM holds a batch, not `[N, D]`. `places`: where the
    cached ones are (`FeatureCache.locate`)."""
    name = None
    if missing:
        with cache.writer(len(missing), backbone.num_features) as shard:
            compute_features(backbone, loader, engine, description=description, sink=shard.append)
            name = shard.commit([digests[i] for i in missing])
    if not places and name is not None:  # everything is new: the new shard, in order, is the result
        feats = torch.from_numpy(cache.rows(name))
    else:
        new = dict(zip(missing, range(len(missing))))
        feats = cache.assemble([places[i] if i in places else (name, new[i]) for i in range(len(digests))], backbone.num_features)
    return feats, FeatureStats(computed=len(missing), cached=len(digests) - len(missing), seconds=time.perf_counter() - t0)
