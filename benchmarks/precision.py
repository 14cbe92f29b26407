"""Precision and memory format on this CPU: fp32 vs bf16 autocast, NCHW vs channels_last.

    .venv/bin/python benchmarks/precision.py

Inference (batch 32, 224 px) and training steps (batch 16, 224 px) for EfficientNet-Lite0 and a
timm ResNet-18 (random weights: speed does not depend on them). The rule graftkit applies with
`--precision auto` (training/engine.py: `choose_precision`) is printed beside the measurements.
"""

from __future__ import annotations

import time

import torch

from _common import machine, report


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

    rows = []
    for name in ("tf_efficientnet_lite0", "resnet18"):
        for train in (False, True):
            bs = 16 if train else 32
            results = {}
            for cl in (False, True):
                for bf16 in (False, True):
                    torch.manual_seed(0)
                    model = timm.create_model(name, num_classes=10)
                    x = torch.randn(bs, 3, 224, 224)
                    if cl:
                        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
                    results[(cl, bf16)] = measure(model, x, train=train, bf16=bf16, reps=3 if train else 4)
            base = results[(False, False)]
            auto = choose_precision(f"timm:{name}", training=train)
            rows.append((
                name, "train" if train else "inference", f"{base:.1f}",
                f"{results[(True, False)] / base:.2f}×", f"{results[(False, True)] / base:.2f}×", f"{results[(True, True)] / base:.2f}×",
                f"{auto[0]} + channels_last",
            ))
            print(rows[-1], flush=True)
    report(
        f"Precision and memory format ({machine()})",
        rows,
        ("model", "mode", "fp32 NCHW img/s", "fp32 channels_last", "bf16 NCHW", "bf16 channels_last", "graftkit auto"),
    )


if __name__ == "__main__":
    main()
