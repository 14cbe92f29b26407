"""Fine-tuning throughput of graftkit's loop vs a minimal hand-written PyTorch loop.

    .venv/bin/python benchmarks/loop_overhead.py

Same model (EfficientNet-Lite0, all layers training, new 10-class head), same in-memory batches
(decoding excluded on both sides, so only the loop differs), batch 32, 128 px, fp32 +
channels_last (graftkit's auto choice on this CPU), AdamW, cosine schedule, gradient clipping.
Rounds alternate A/B/A/B to spread machine noise; the best round of each side is compared.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from _common import machine, report

BATCHES, BS, SIZE, ROUNDS = 6, 32, 128, 3


def build():
    from graftkit.sources import load_backbone
    from graftkit.tasks import ClassificationTask, GraftModel

    torch.manual_seed(0)
    backbone = load_backbone("efficientnet_lite0")
    task = ClassificationTask([str(i) for i in range(10)])
    return GraftModel(backbone, task.build_head(backbone.num_features)), task


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BS, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, 10, (BATCHES * BS,), generator=g)
    return TensorDataset(x, y)


def graftkit_round(ds) -> float:
    from graftkit.engine import LocalEngine
    from graftkit.training.loop import LoopOptions, train_loop
    from graftkit.training.schedule import build_scheduler

    model, task = build()
    engine = LocalEngine(precision="fp32", channels_last=True)
    model = engine.setup(model)
    loader = DataLoader(ds, batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(ds.tensors[0][:BS], ds.tensors[1][:BS]), batch_size=BS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = build_scheduler(opt, len(loader), schedule="cosine", warmup_fraction=0.1)
    res = train_loop(model, loader, val, task=task, optimizer=opt, scheduler=sched, engine=engine,
                     options=LoopOptions(epochs=1, grad_clip=1.0, progress=True))
    return res.history[0]["throughput"]  # images/s over the training steps of the epoch


def plain_round(ds) -> float:
    from graftkit.training.schedule import build_scheduler

    model, task = build()
    model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(ds, batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = build_scheduler(opt, len(loader), schedule="cosine", warmup_fraction=0.1)
    model.train()
    t0 = time.perf_counter()
    n = 0
    for x, y in loader:
        x = x.to(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ds = data()
    g, p = [], []
    for r in range(ROUNDS):
        p.append(plain_round(ds))
        g.append(graftkit_round(ds))
        print(f"round {r + 1}: plain {p[-1]:.2f} img/s, graftkit {g[-1]:.2f} img/s", flush=True)
    report(
        f"Loop overhead: fine-tuning EfficientNet-Lite0, batch {BS}, {SIZE} px, fp32 channels_last ({machine()})",
        [("minimal PyTorch loop", f"{max(p):.2f}", "1.00×"), ("graftkit train_loop", f"{max(g):.2f}", f"{max(g) / max(p):.3f}×")],
        ("loop", "best img/s", "ratio"),
        {"plain_rounds": p, "graftkit_rounds": g},
    )


if __name__ == "__main__":
    main()
