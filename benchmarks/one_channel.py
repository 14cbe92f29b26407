"""One-channel input: adapted first convolution (`--in-chans 1`) vs grey copied to 3 channels.

Fashion-MNIST (Debian `dataset-fashion-mnist`, grey 28x28) subset written as PNG split folders;
EfficientNet-Lite0 (built-in ImageNet weights) at 64 px; a linear probe (features not cached, so
the time includes extraction) and a short fine-tune, per side; sides alternate order each round.

    python benchmarks/one_channel.py --rounds 3 --per-class 60 --out /tmp/one_channel
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

import graftkit

ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def _idx(name: str, offset: int) -> np.ndarray:
    with gzip.open(ROOT / name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def write_subset(out: Path, per_class: int, val_per_class: int, seed: int = 0) -> Path:
    images = _idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _idx("train-labels-idx1-ubyte.gz", 8)
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))[: per_class + val_per_class]
        for split, chosen in (("train", idx[:per_class]), ("val", idx[per_class:])):
            d = out / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i], mode="L").save(d / f"{i}.png")
    return out


def run_side(data: Path, out: Path, in_chans: int, strategy: str, epochs: int) -> dict:
    t = time.perf_counter()
    run = graftkit.fit(data, out=out, model="efficientnet_lite0", strategy=strategy, epochs=epochs, in_chans=in_chans,
                       image_size=64, batch_size=32, feature_cache=False, overwrite=True, offline=True)  # fmt: skip
    metrics = json.loads((run.dir / "metrics.json").read_text())
    return {"accuracy": metrics["val"]["accuracy"], "seconds": round(time.perf_counter() - t, 2)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("/tmp/one_channel"))
    args = p.parse_args()
    data = write_subset(args.out / "data", args.per_class, args.val_per_class)
    results: dict[str, list] = {}
    for r in range(args.rounds):
        order = (1, 3) if r % 2 == 0 else (3, 1)
        for strategy, epochs in (("linear-probe", 10), ("finetune", 1)):
            for in_chans in order:
                key = f"{strategy} in_chans={in_chans}"
                res = run_side(data, args.out / "runs" / f"{strategy}-{in_chans}-{r}", in_chans, strategy, epochs)
                results.setdefault(key, []).append(res)
                print(r, key, res, flush=True)
    summary = {}
    for key, rows in results.items():
        acc, sec = [x["accuracy"] for x in rows], [x["seconds"] for x in rows]
        summary[key] = {"accuracy_median": statistics.median(acc), "accuracy_range": [min(acc), max(acc)],
                        "seconds_median": statistics.median(sec), "seconds_range": [min(sec), max(sec)]}  # fmt: skip
    print(json.dumps(summary, indent=2))
    (args.out / "summary.json").write_text(json.dumps({"rounds": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
