"""Regularised fine-tuning (`--regularize l2sp | bss | delta`) against plain fine-tuning, few-shot Fashion-MNIST.

    .venv/bin/python benchmarks/regularize.py                       # 10 and 100 per class, 3 seeds
    .venv/bin/python benchmarks/regularize.py --per-class 10 --seeds 1 --sweep   # the strength sweep (dev split)
    .venv/bin/python benchmarks/regularize.py --per-class 100 --epochs 3 --sweep --methods delta --sweep-factors 0.1,0.01

Data: Fashion-MNIST from Debian's `dataset-fashion-mnist`; per seed s, `per_class` training
images per class drawn with seed s (graftkit's seeded split holds 20 % of them out as the dev /
validation split, which also picks the best epoch), and one fixed test set of 1,000 unseen
`t10k` images (100 per class) for the figures. Model: the pretrained EfficientNet-Lite0 (ImageNet,
the `efficientnet_lite0` PyPI package) at 64 px, grey input (its first convolution adapted to one
channel), `--strategy finetune`, AdamW lr 1e-3 with layer-wise decay 0.8 (graftkit's defaults),
no augmentation. Every method sees the same images and seed; the order of the methods rotates
from seed to seed. `--sweep` runs each regulariser at 0.1x, 1x and 10x its paper strength and
reports the dev (validation) accuracy that chose the strength used in the main table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import WORK, fashion_mnist_folder, fresh_cache, machine, report

METHODS = ["none", "l2sp", "bss", "delta"]


def run_one(data, test, method: str, strength: float | None, seed: int, epochs: int, image_size: int) -> dict:
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    name = f"reg-{data.name}-{method}-{strength}-s{seed}"
    out = WORK / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    reg = {} if method == "none" else {"regularize": method, "regularize_strength": strength}
    t0 = time.perf_counter()
    run = graftkit.fit(data, model="efficientnet_lite0", strategy="finetune", out=out, epochs=epochs, seed=seed, offline=True,
                       image_size=image_size, augment="none", batch_size=32, **reg)  # fmt: skip
    wall = time.perf_counter() - t0
    test_acc = evaluate(out, test)["test"]["accuracy"] if test is not None else None
    row = {"method": method, "strength": json.loads((out / "graft.json").read_text())["config"]["regularize_strength"],
           "seed": seed, "val": run.metrics["val"]["accuracy"], "test": test_acc, "wall_s": round(wall, 1)}  # fmt: skip
    print(f"{name}: val {row['val']:.3f} test {test_acc if test_acc is None else round(test_acc, 3)} ({wall:.0f} s)", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    from graftkit.strategies.regularize import DEFAULT_STRENGTH

    p = argparse.ArgumentParser()
    p.add_argument("--per-class", default="10,100")
    p.add_argument("--epochs", default="15,5", help="epochs per --per-class value")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--test-per-class", type=int, default=100, help="test images per class (from t10k)")
    p.add_argument("--sweep", action="store_true", help="choose each strength on the dev split (0.1x, 1x, 10x the paper's)")
    p.add_argument("--strengths", default="", help="method=strength,... to use (e.g. from --sweep); default the papers'")
    p.add_argument("--methods", default=",".join(METHODS), help="methods to run (none = plain fine-tuning, the paired baseline)")
    p.add_argument("--sweep-factors", default="0.1,1,10", help="--sweep: multiples of each paper strength to try")
    args = p.parse_args()
    sizes = [int(x) for x in args.per_class.split(",")]
    epochs = [int(x) for x in args.epochs.split(",")]
    methods = [m for m in METHODS if m in args.methods.split(",")]
    strengths = dict(DEFAULT_STRENGTH)
    strengths.update({k: float(v) for k, v in (kv.split("=") for kv in args.strengths.split(",") if kv)})
    fresh_cache("regularize")
    results: dict = {"machine": machine(), "strengths": strengths, "runs": {}}
    rows = []
    if args.sweep:
        for per_class, ep in zip(sizes, epochs):
            data = fashion_mnist_folder(f"fmnist-train-{per_class}pc-s0-png", "train", per_class, fmt="png", size=None, seed=0)
            for method in [m for m in methods if m != "none"]:
                for factor in (float(x) for x in args.sweep_factors.split(",")):
                    r = run_one(data, None, method, DEFAULT_STRENGTH[method] * factor, 0, ep, args.image_size)
                    rows.append((per_class, method, f"{r['strength']:g}", f"{r['val']:.3f}", f"{r['wall_s']:.0f}"))
        report(f"Regulariser strength sweep on the dev split, seed 0 ({machine()})", rows, ("per class", "method", "strength", "dev acc", "wall s"))
        return
    test = fashion_mnist_folder(f"fmnist-test-{args.test_per_class}pc-png", "t10k", args.test_per_class, fmt="png", size=None, seed=2)
    for per_class, ep in zip(sizes, epochs):
        runs = []
        for seed in range(args.seeds):
            data = fashion_mnist_folder(f"fmnist-train-{per_class}pc-s{seed}-png", "train", per_class, fmt="png", size=None, seed=seed)
            order = methods[seed % len(methods):] + methods[: seed % len(methods)]  # rotate which method runs first
            for method in order:
                runs.append(run_one(data, test, method, strengths.get(method), seed, ep, args.image_size))
        results["runs"][per_class] = runs
        base = {r["seed"]: r["test"] for r in runs if r["method"] == "none"}
        for method in methods:
            tests = [r["test"] for r in runs if r["method"] == method]
            gains = [r["test"] - base[r["seed"]] for r in runs if r["method"] == method and r["seed"] in base]
            walls = [r["wall_s"] for r in runs if r["method"] == method]
            rows.append((per_class, ep, method, "–" if method == "none" else f"{strengths[method]:g}",
                         f"{statistics.mean(tests):.3f} ± {statistics.pstdev(tests):.3f}", f"{statistics.median(tests):.3f} [{min(tests):.3f}, {max(tests):.3f}]",
                         "–" if method == "none" or not gains else f"{statistics.mean(gains):+.3f} [{min(gains):+.3f}, {max(gains):+.3f}]",
                         f"{statistics.median(walls):.0f}"))  # fmt: skip
    report(
        f"Regularised fine-tuning vs plain, EfficientNet-Lite0 {args.image_size} px, Fashion-MNIST test ({10 * args.test_per_class} images), "
        f"{args.seeds} seeds ({machine()})",
        rows,
        ("per class", "epochs", "method", "strength", "test acc mean ± std", "median [min, max]", "vs plain (paired)", "wall s"),
    )
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    (WORK / "results" / "regularize.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
