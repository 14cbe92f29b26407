"""1,000 JPEGs → features → head with EfficientNet-Lite0 at 224 px, against this machine's floor.

    .venv/bin/python benchmarks/end_to_end.py
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4 .venv/bin/python benchmarks/end_to_end.py   # allocator lever

The floor is measured in the same run: decoding + resizing the 1,000 JPEGs alone, plus the
backbone's forward pass alone over already-preprocessed batches (graftkit's precision and memory
format). graftkit's time is a cold-cache `graft train --strategy linear-probe` (validation,
hashing, 10 head epochs, report and run directory included), with imports done beforehand.
`--rounds` rounds (default 3), the floor and graftkit's run alternating which goes first; each
stage quoted as median [min, max], graftkit / floor paired by round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import torch

from _common import WORK, alternating, fashion_mnist_folder, fresh_cache, load_average, machine, median_spread, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="runs of each side, the order alternating (at least 3)")
    args = p.parse_args()

    import graftkit
    from graftkit.data import ImageFileDataset, Sample, build_transform, read_image_data
    from graftkit.sources import load_backbone
    from graftkit.engine import LocalEngine, choose_channels_last, choose_precision, tune_malloc

    tune_malloc()  # what graftkit does in every run: the floor is measured under the same allocator settings
    data = fashion_mnist_folder("fmnist-1000-jpg", "train", 100)
    images = read_image_data(data)
    paths = [s.path for s in images.train + images.val]
    backbone = load_backbone("efficientnet_lite0")
    arch = backbone.weights.arch
    engine = LocalEngine(precision=choose_precision(arch, training=False)[0], channels_last=choose_channels_last(arch))
    backbone = engine.setup(backbone).eval()
    ds = ImageFileDataset([Sample(p, "") for p in paths], None, build_transform(backbone.preprocess, "none"))

    def floor() -> tuple[float, float]:
        t0 = time.perf_counter()
        batch = [ds[i][0] for i in range(len(ds))]
        t_decode = time.perf_counter() - t0
        x = torch.stack(batch)
        with torch.inference_mode(), engine.autocast():
            backbone.forward_features(engine.to_device(x[:64]))  # warm-up
            t0 = time.perf_counter()
            for i in range(0, len(x), 64):
                backbone.forward_features(engine.to_device(x[i : i + 64]))
            return t_decode, time.perf_counter() - t0

    import matplotlib.figure  # noqa: F401  (imports paid before timing, as for the floor)
    import sklearn.metrics  # noqa: F401

    def graftkit_run(r: int) -> tuple[float, dict]:
        fresh_cache(f"end-to-end-{r}")  # cold cache every round
        out = WORK / "runs" / "end-to-end"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        run = graftkit.fit(data, model="efficientnet_lite0", strategy="linear-probe", out=out)
        return time.perf_counter() - t0, run.metrics

    decode, forward, graft, metrics = [], [], [], {}
    for r, side in alternating(["floor", "graftkit"], args.rounds):
        if side == "floor":
            t_decode, t_forward = floor()
            decode.append(t_decode)
            forward.append(t_forward)
        else:
            t_graft, metrics = graftkit_run(r)
            graft.append(t_graft)
        print(f"round {r + 1} {side}: {t_decode + t_forward if side == 'floor' else t_graft:.1f} s", flush=True)
    floors = [a + b for a, b in zip(decode, forward)]
    ratios = [g / f for g, f in zip(graft, floors)]  # paired by round
    alloc = "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc, tuned by graftkit"
    n = len(ds)
    report(
        f"End to end: 1,000 JPEGs (256 px) → features → head, EfficientNet-Lite0 224 px, {engine.precision}"
        f"{' channels_last' if engine.channels_last else ''}, {alloc}, {args.rounds} alternating rounds ({machine()}; {load_average()})",
        [
            ("decode + resize alone (1 core)", median_spread(decode, ".1f"), median_spread([n / t for t in decode], ".0f")),
            ("backbone forward alone", median_spread(forward, ".1f"), median_spread([n / t for t in forward], ".0f")),
            ("floor (sum)", median_spread(floors, ".1f"), ""),
            ("graftkit linear-probe, cold cache, end to end", median_spread(graft, ".1f"), median_spread([n / t for t in graft], ".0f")),
            ("graftkit / floor (paired by round)", median_spread(ratios, ".2f", "×"), ""),
        ],
        ("stage", "seconds", "img/s"),
        {"val_accuracy": metrics["val"]["accuracy"], "features": metrics["features"]},
    )


if __name__ == "__main__":
    main()
