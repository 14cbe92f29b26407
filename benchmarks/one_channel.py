"""One-channel input: adapted first convolution (`--in-chans 1`) vs grey copied to 3 channels.

Fashion-MNIST (Debian `dataset-fashion-mnist`, grey 28x28) written as PNG split folders:
a fixed validation set (from the official test images) and, per seed, a different training
subset (from the official training images). EfficientNet-Lite0 (built-in ImageNet weights) at
64 px. Three measurements, every one alternating the order of the two sides:

1. accuracy: a short fine-tune per (round, seed) on both sides with the same data and seed, so
   each seed gives a paired difference (1 channel minus 3 channels); plus one linear probe per
   round (the two sides compute the same function there, so it checks the adaptation);
2. speed of the network alone: forward passes (inference, batch 32 at 64 px, 8 at 224 px) and
   training steps (forward + backward + SGD step, batch 32, 64 px), interleaved side by side
   repetition by repetition, wall time and process CPU time per call, so a load spike from the
   other jobs on the machine hits both sides rather than one;
3. end-to-end wall time of each fit (data decoding, training, evaluation, writing the run).

    nice -n 10 python benchmarks/one_channel.py --rounds 3 --seeds 2 --out /tmp/one_channel
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

import graftkit

ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
SIDES = (1, 3)


def _idx(name: str, offset: int) -> np.ndarray:
    with gzip.open(ROOT / name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def _write(images: np.ndarray, labels: np.ndarray, per_class: int, seed: int, folder: Path) -> None:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in rng.permutation(np.flatnonzero(labels == c))[:per_class]:
            Image.fromarray(images[i], mode="L").save(d / f"{i}.png")


def write_data(out: Path, seed: int, per_class: int, val_per_class: int) -> Path:
    """`out/seed-N/{train,val}`: a training subset drawn with `seed`, the same validation set for every seed."""
    root = out / f"seed-{seed}"
    if not (root / "train").is_dir():
        _write(_idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28), _idx("train-labels-idx1-ubyte.gz", 8), per_class, seed, root / "train")
        _write(_idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28), _idx("t10k-labels-idx1-ubyte.gz", 8), val_per_class, 12345, root / "val")
    return root


def fit_side(data: Path, out: Path, in_chans: int, strategy: str, epochs: int, seed: int) -> dict:
    t = time.perf_counter()
    cache = strategy == "linear-probe"  # features once per side (the cache key includes the channel count)
    run = graftkit.fit(data, out=out, model="efficientnet_lite0", strategy=strategy, epochs=epochs, in_chans=in_chans, seed=seed,
                       image_size=64, batch_size=32, feature_cache=cache, overwrite=True, offline=True)  # fmt: skip
    metrics = json.loads((run.dir / "metrics.json").read_text())
    return {"accuracy": metrics["val"]["accuracy"], "seconds": round(time.perf_counter() - t, 2), "run": str(run.dir)}


# ----------------------------------------------------------------------------------------------
# Speed of the network alone


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _calls(model: torch.nn.Module, in_chans: int, batch: int) -> dict[str, Callable[[], None]]:
    gen = torch.Generator().manual_seed(0)
    x64 = torch.randn(batch, in_chans, 64, 64, generator=gen)
    x224 = torch.randn(max(batch // 4, 1), in_chans, 224, 224, generator=gen)  # a quarter of the batch: same time scale
    target = torch.randint(0, len(CLASSES), (batch,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def forward(x: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            with torch.inference_mode():
                model(x)

        return run

    def train_step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x64), target).backward()
        opt.step()

    return {"forward_64px": forward(x64), "forward_224px": forward(x224), "train_step_64px": train_step}


BATCH_DIVISOR = {"forward_224px": 4}  # images per call = batch // this


def measure_speed(runs: dict[int, str], order: tuple[int, int], reps: int, batch: int) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """Per call kind and side: `reps` (wall, cpu) seconds, the sides interleaved call by call."""
    calls = {side: _calls(graftkit.load(runs[side]).model, side, batch) for side in order}
    out: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for kind in calls[order[0]]:
        for side in order:  # warm-up (allocator, one-time kernels)
            calls[side][kind]()
        for r in range(reps):
            for side in order if r % 2 == 0 else order[::-1]:
                out.setdefault(kind, {}).setdefault(side, []).append(_timed(calls[side][kind]))
    return out


# ----------------------------------------------------------------------------------------------


def _spread(values: list[float], digits: int = 3) -> dict:
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"median": round(statistics.median(values), digits), "q1": round(q[0], digits), "q3": round(q[2], digits),
            "min": round(min(values), digits), "max": round(max(values), digits), "n": len(values)}  # fmt: skip


def summarise(fits: list[dict], speed: list[dict], batch: int) -> dict:
    summary: dict = {"fits": {}, "paired_accuracy_difference": {}, "speed": {}}
    for strategy in sorted({f["strategy"] for f in fits}):
        rows = [f for f in fits if f["strategy"] == strategy]
        for side in SIDES:
            mine = [f for f in rows if f["in_chans"] == side]
            summary["fits"][f"{strategy} in_chans={side}"] = {
                "accuracy": _spread([f["accuracy"] for f in mine]), "seconds": _spread([f["seconds"] for f in mine], 1)}  # fmt: skip
        by_key = {(f["round"], f["seed"], f["in_chans"]): f["accuracy"] for f in rows}
        diffs = [by_key[(r, s, 1)] - by_key[(r, s, 3)] for (r, s, c) in by_key if c == 1 and (r, s, 3) in by_key]
        summary["paired_accuracy_difference"][strategy] = {**_spread(diffs), "wins_1ch": sum(d > 0 for d in diffs),
                                                           "ties": sum(d == 0 for d in diffs), "wins_3ch": sum(d < 0 for d in diffs)}  # fmt: skip
    for kind in speed[0]:
        entry: dict = {}
        images = max(batch // BATCH_DIVISOR.get(kind, 1), 1)
        walls = {side: [w for rnd in speed for w, _ in rnd[kind][side]] for side in SIDES}
        cpus = {side: [c for rnd in speed for _, c in rnd[kind][side]] for side in SIDES}
        for side in SIDES:
            entry[f"in_chans={side}"] = {"images_per_s_wall": _spread([images / w for w in walls[side]], 1),
                                         "images_per_cpu_s": _spread([images / c for c in cpus[side] if c > 0], 1)}  # fmt: skip
        # adjacent calls of the two sides, paired: >1 means the one-channel network is faster
        entry["speedup_1ch_wall"] = _spread([b / a for a, b in zip(walls[1], walls[3])])
        entry["speedup_1ch_cpu"] = _spread([b / a for a, b in zip(cpus[1], cpus[3]) if a > 0])
        summary["speed"][kind] = entry
    return summary


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seeds", type=int, default=2, help="fine-tune seeds per round (each a different training subset)")
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--epochs", type=int, default=1, help="fine-tune epochs")
    p.add_argument("--reps", type=int, default=8, help="timed calls per side, kind and round")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("/tmp/one_channel"))
    args = p.parse_args()
    os.environ.setdefault("GRAFTKIT_CACHE", str(args.out / "cache"))  # the probes' features stay with the benchmark
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    fits: list[dict] = []
    speed: list[dict] = []
    for r in range(args.rounds):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        last: dict[int, str] = {}
        for s in range(args.seeds):
            seed = r * args.seeds + s  # every (round, seed) its own training subset and initialisation
            data = write_data(args.out / "data", seed, args.per_class, args.val_per_class)
            side_order = order if s % 2 == 0 else order[::-1]
            for in_chans in side_order:
                res = fit_side(data, args.out / "runs" / f"ft-{in_chans}-{seed}", in_chans, "finetune", args.epochs, seed)
                fits.append({"round": r, "seed": seed, "strategy": f"finetune {args.epochs} epochs", "in_chans": in_chans, **res})
                last[in_chans] = res["run"]
                print(r, seed, "finetune", in_chans, res, os.getloadavg()[0], flush=True)
        data = write_data(args.out / "data", r * args.seeds, args.per_class, args.val_per_class)
        for in_chans in order:
            res = fit_side(data, args.out / "runs" / f"probe-{in_chans}-{r}", in_chans, "linear-probe", 10, r * args.seeds)
            fits.append({"round": r, "seed": r * args.seeds, "strategy": "linear-probe 10 epochs", "in_chans": in_chans, **res})
            print(r, "probe", in_chans, res, flush=True)
        speed.append(measure_speed(last, order, args.reps, args.batch))
        print(r, "speed done", os.getloadavg()[0], flush=True)
    summary = summarise(fits, speed, args.batch)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__, "started": started.isoformat(timespec="seconds"),
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "process_cpu_s": round(time.process_time() - cpu0, 1),
               "children_cpu_s": round(sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]), 1),
               "args": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip; children: data-loader workers
    print(json.dumps({"machine": machine, **summary}, indent=2))
    (args.out / "summary.json").write_text(json.dumps({"machine": machine, "summary": summary, "fits": fits, "speed": speed}, indent=2))


if __name__ == "__main__":
    main()
