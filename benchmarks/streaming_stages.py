"""Where the probe's feature pass spends memory and time, stage by stage (issue 11's profile).

Runs `extract_features` as `benchmarks/streaming.py` does (same images, model and cache), with a
thread sampling RSS every 20 ms; each stage (content digests, cache lookup, loader, feature
computation, shard commit) is marked by wrapping the function that does it. Prints, per stage,
the RSS after it, the peak during it and its seconds. `fake` skips the model (zeros streamed
into the shard) to see the bookkeeping alone.

    python benchmarks/streaming_stages.py 100000 [fake]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import streaming  # noqa: E402

_stage, _peaks, _t = ["start"], {}, [time.perf_counter()]


def _rss() -> tuple[float, float, float]:
    with open("/proc/self/status") as f:
        d = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS", "RssAnon", "RssFile"))}
    return d["VmRSS"] / 1024, d["RssAnon"] / 1024, d["RssFile"] / 1024


def _sample() -> None:
    while True:
        _peaks[_stage[0]] = max(_peaks.get(_stage[0], 0.0), _rss()[0])
        time.sleep(0.02)


def _mark(next_stage: str) -> None:
    now = time.perf_counter()
    rss, anon, file = _rss()
    print(f"{_stage[0]:>10}: {now - _t[0]:6.1f} s, RSS after {rss:6.1f} MB (anon {anon:.1f}, file {file:.1f}), "
          f"peak during {_peaks.get(_stage[0], rss):6.1f} MB", flush=True)  # fmt: skip
    _stage[0], _t[0] = next_stage, now


def _wrap(owner, name: str, stage: str) -> None:
    f = getattr(owner, name)

    def wrapped(*a, **k):
        _mark(stage)
        return f(*a, **k)

    setattr(owner, name, wrapped)


def main() -> None:
    n, fake = int(sys.argv[1]), sys.argv[2:] == ["fake"]
    threading.Thread(target=_sample, daemon=True).start()
    os.environ["GRAFTKIT_CACHE"] = tempfile.mkdtemp(prefix="graftkit-stages-cache-")
    import torch

    from graftkit.data.cache import FeatureCache, ShardWriter
    from graftkit.sources import load_backbone
    from graftkit.engine import LocalEngine
    from graftkit.training import features as F
    from graftkit.training._build import eval_loader_factory
    from graftkit.training.config import TrainConfig

    _mark("paths")
    paths = streaming.make_images(Path("/tmp/graftkit-streaming-images"), n)
    _mark("model")
    backbone = load_backbone(streaming.MODEL)
    backbone.preprocess = dataclasses.replace(backbone.preprocess, input_size=32, crop_pct=1.0)
    make = eval_loader_factory(backbone, TrainConfig(model=streaming.MODEL, batch_size=256, num_workers=0))

    def loader(p):
        _mark("loader")
        return make(p)

    cache = FeatureCache(F.feature_cache_key(backbone, "fp32", False))
    _wrap(F, "file_digests", "digests")
    _wrap(FeatureCache, "locate", "locate")
    _wrap(ShardWriter, "commit", "commit")
    if fake:
        def compute(backbone, loader, engine, description="", sink=None):
            _mark("compute")
            for start in range(0, len(loader.dataset), 256):
                sink(torch.zeros(min(256, len(loader.dataset) - start), backbone.num_features))

        F.compute_features = compute
    else:
        _wrap(F, "compute_features", "compute")
    feats, stats = F.extract_features(backbone, paths, loader, LocalEngine(), cache)
    _mark("end")
    import resource

    print(f"features {tuple(feats.shape)}, computed {stats.computed}; peak RSS (ru_maxrss) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
