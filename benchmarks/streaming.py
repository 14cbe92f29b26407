"""Peak RSS and features/s of the probe's feature pass at 10k vs 100k images (issue 11, data larger than memory).

Each measurement runs in a fresh process: tiny 32 px PNGs (generated once into --root), the
random tiny model of the tests (scratch:timm:test_efficientnet, 32 px input), a fresh feature
cache, `extract_features` as the probe calls it (`--mode stream`: features streamed into a
cache shard and read back memory-mapped; `--mode memory`: `--no-feature-cache`'s in-RAM path,
for contrast). Reported: peak RSS of the process (ru_maxrss), RSS before the pass (after imports
and the model), and features/s of the pass. `--rounds` rounds (default 3), the order of the sizes
reversed every other round; one JSON line per measurement, then per size and mode the median
[min, max] of peak RSS and features/s over the rounds.

    python benchmarks/streaming.py --sizes 10000 100000 --rounds 3

`benchmarks/streaming_stages.py N [fake]` breaks one such pass down by stage (RSS and seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "scratch:timm:test_efficientnet"


def make_images(root: Path, n: int) -> list[Path]:
    """`n` 32 px PNGs in `root/<n>/` (made once; 100 per folder)."""
    import numpy as np
    from PIL import Image

    folder = root / str(n)
    done = folder / ".done"
    paths = [folder / f"{i // 100:04d}" / f"{i}.png" for i in range(n)]
    if done.exists():
        return paths
    rng = np.random.default_rng(0)
    for i, p in enumerate(paths):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(p)
    done.write_text("ok")
    return paths


def measure(root: Path, n: int, mode: str, batch_size: int) -> dict:
    """In this process: the feature pass over `n` images; its peak RSS and throughput."""
    os.environ["GRAFTKIT_CACHE"] = tempfile.mkdtemp(prefix="graftkit-bench-cache-")
    from graftkit.data.cache import FeatureCache
    from graftkit.engine import LocalEngine
    from graftkit.sources import load_backbone
    from graftkit.training._build import eval_loader_factory
    from graftkit.training.config import TrainConfig
    from graftkit.training.features import extract_features, feature_cache_key

    paths = make_images(root, n)
    backbone = load_backbone(MODEL)
    backbone.preprocess = dataclasses.replace(backbone.preprocess, input_size=32, crop_pct=1.0)  # the images' own size
    engine = LocalEngine()
    make = eval_loader_factory(backbone, TrainConfig(model=MODEL, batch_size=batch_size, num_workers=0))
    cache = FeatureCache(feature_cache_key(backbone, "fp32", False)) if mode == "stream" else None
    before = _rss_mb()
    t0 = time.perf_counter()
    feats, stats = extract_features(backbone, paths, make, engine, cache)
    seconds = time.perf_counter() - t0
    return {"images": n, "mode": mode, "features_shape": list(feats.shape), "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "seconds": round(seconds, 1),
            "features_per_s": round(n / seconds, 1)}  # fmt: skip


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--modes", nargs="+", default=["stream"], choices=["stream", "memory"])
    parser.add_argument("--rounds", type=int, default=3, help="measurements per size and mode, the order of the sizes alternating (at least 3)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--root", type=Path, default=Path("/tmp/graftkit-streaming-images"))
    parser.add_argument("--one", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.root, int(args.one[0]), args.one[1], args.batch_size)))
        return
    for n in args.sizes:
        make_images(args.root, n)  # outside the measured processes
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import alternating, load_average, median_spread

    rows = []
    for r, n in alternating(args.sizes, args.rounds):
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--one", str(n), mode, "--root", str(args.root), "--batch-size", str(args.batch_size)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["round"] = r + 1
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.rounds} rounds, sizes alternating; {load_average()} at the end; median [min, max]:")
    for n in args.sizes:
        for mode in args.modes:
            mine = [row for row in rows if row["images"] == n and row["mode"] == mode]
            print(f"  {n} images, {mode}: peak RSS {median_spread([row['peak_rss_mb'] for row in mine], '.1f')} MB, "
                  f"features/s {median_spread([row['features_per_s'] for row in mine], '.0f')}")  # fmt: skip


if __name__ == "__main__":
    main()
