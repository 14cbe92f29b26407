"""Precision and memory format on this CPU: fp32 vs bf16 autocast, NCHW vs channels_last.

    .venv/bin/python benchmarks/precision.py

Inference (batch 32, 224 px) and training steps (batch 16, 224 px) for EfficientNet-Lite0 and a
timm ResNet-18 (random weights: speed does not depend on them). The rule graftkit applies with
`--precision auto` (training/engine.py: `choose_precision`) is printed beside the measurements.
The four variants of each model and mode are built once and timed `--rounds` times (default 3),
their order reversed every other round; each variant's speed relative to fp32 NCHW is paired by
round and quoted as median [min, max].
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import alternating, load_average, machine, median_spread, report


def measure(model, x, *, train: bool, bf16: bool, reps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    model.train(train)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        if train:
            loss = out.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    ctx = torch.enable_grad() if train else torch.inference_mode()
    with ctx:
        step()  # warm-up: oneDNN primitive creation
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
    return reps * x.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    import timm

    from graftkit.engine import choose_precision

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="timings per variant, the order alternating (at least 3)")
    args = p.parse_args()
    variants = [(False, False), (True, False), (False, True), (True, True)]  # (channels_last, bf16)
    rows = []
    for name in ("tf_efficientnet_lite0", "resnet18"):
        for train in (False, True):
            bs = 16 if train else 32
            setups = {}
            for cl, bf16 in variants:
                torch.manual_seed(0)
                model = timm.create_model(name, num_classes=10)
                x = torch.randn(bs, 3, 224, 224)
                if cl:
                    model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
                setups[(cl, bf16)] = (model, x)
            results: dict[tuple[bool, bool], list[float]] = {v: [] for v in variants}
            for _, v in alternating(variants, args.rounds):
                model, x = setups[v]
                results[v].append(measure(model, x, train=train, bf16=v[1], reps=3 if train else 4))
            base = results[(False, False)]

            def rel(v: tuple[bool, bool]) -> str:
                return median_spread([a / b for a, b in zip(results[v], base)], ".2f", "×")  # paired by round

            auto = choose_precision(f"timm:{name}", training=train)
            rows.append((name, "train" if train else "inference", median_spread(base, ".1f"), rel((True, False)), rel((False, True)), rel((True, True)),
                         f"{auto[0]} + channels_last"))  # fmt: skip
            print(rows[-1], flush=True)
    report(
        f"Precision and memory format, {args.rounds} alternating rounds ({machine()}; {load_average()})",
        rows,
        ("model", "mode", "fp32 NCHW img/s", "fp32 channels_last", "bf16 NCHW", "bf16 channels_last", "graftkit auto"),
    )


if __name__ == "__main__":
    main()
