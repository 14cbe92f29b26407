"""Fine-tuning throughput of graftkit's loop vs a minimal hand-written PyTorch loop.

    .venv/bin/python benchmarks/loop_overhead.py                       # 7 rounds of 12 batches a side
    .venv/bin/python benchmarks/loop_overhead.py --rounds 3 --batches 6   # the old, short version

Same model (EfficientNet-Lite0, all layers training, new 10-class head), same in-memory batches
(decoding excluded on both sides, so only the loop differs), batch 32, 128 px, fp32 +
channels_last (graftkit's auto choice on this CPU), AdamW, cosine schedule, gradient clipping,
same torch thread count. Each side's model is built once and given one untimed warm-up epoch
(oneDNN primitives, allocator); then every round is one timed epoch per side, the order of the
sides alternating (A B, B A, ...). Reported: each side's img/s as median [min, max] over the
rounds, and graftkit's img/s over the plain loop's **in the same round** (the paired ratio, which
cancels the machine's slow drift), with the verdict for the target (≥ 0.97×, i.e. at most 3 %
slower): met only if every round's ratio clears it, otherwise inside the noise or not met.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from _common import alternating, load_average, machine, median_spread, report, within_noise

BS, SIZE, TARGET = 32, 128, 0.97


def build():
    from graftkit.sources import load_backbone
    from graftkit.tasks import ClassificationTask, GraftModel

    torch.manual_seed(0)
    backbone = load_backbone("efficientnet_lite0")
    task = ClassificationTask([str(i) for i in range(10)])
    return GraftModel(backbone, task.build_head(backbone.num_features)), task


def data(batches: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batches * BS, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, 10, (batches * BS,), generator=g)
    return TensorDataset(x, y)


def graftkit_side(ds):
    """One graftkit epoch per call: `train_loop` on a model set up once; returns its images/s."""
    from graftkit.engine import LocalEngine
    from graftkit.training.loop import LoopOptions, train_loop
    from graftkit.training.schedule import build_scheduler

    model, task = build()
    engine = LocalEngine(precision="fp32", channels_last=True)
    model = engine.setup(model)
    val = DataLoader(TensorDataset(ds.tensors[0][:BS], ds.tensors[1][:BS]), batch_size=BS)

    def epoch() -> float:
        loader = DataLoader(ds, batch_size=BS, shuffle=True, generator=torch.Generator().manual_seed(0))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = build_scheduler(opt, len(loader), schedule="cosine", warmup_fraction=0.1)
        res = train_loop(model, loader, val, task=task, optimizer=opt, scheduler=sched, engine=engine,
                         options=LoopOptions(epochs=1, grad_clip=1.0, progress=True))  # fmt: skip
        return res.history[0]["throughput"]  # images/s over the training steps of the epoch

    return epoch


def plain_side(ds):
    """One epoch of a minimal PyTorch loop per call, on a model built once; returns its images/s."""
    from graftkit.training.schedule import build_scheduler

    model, _ = build()
    model = model.to(memory_format=torch.channels_last)

    def epoch() -> float:
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

    return epoch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="timed epochs per side, sides alternating (at least 3)")
    p.add_argument("--batches", type=int, default=12, help=f"batches of {BS} per epoch")
    p.add_argument("--max-seconds", type=float, default=None, help="start no new round after this long (from start-up); the rounds done are reported")
    args = p.parse_args()
    started = time.perf_counter()
    ds = data(args.batches)
    sides = {"plain": plain_side(ds), "graftkit": graftkit_side(ds)}
    print(f"{machine()}; {load_average()} at the start", flush=True)
    for name, epoch in sides.items():
        print(f"warm-up {name}: {epoch():.2f} img/s (not counted)", flush=True)
    speed: dict[str, list[float]] = {name: [] for name in sides}
    t0 = time.perf_counter()
    for r, name in alternating(list(sides), args.rounds):
        if args.max_seconds is not None and len(speed["plain"]) == len(speed["graftkit"]) and time.perf_counter() - started > args.max_seconds:
            print(f"--max-seconds {args.max_seconds:.0f} reached: {len(speed['plain'])} of {args.rounds} rounds done", flush=True)
            break
        speed[name].append(sides[name]())
        if len(speed["plain"]) == len(speed["graftkit"]):
            print(f"round {r + 1}: plain {speed['plain'][-1]:.2f} img/s, graftkit {speed['graftkit'][-1]:.2f} img/s, "
                  f"ratio {speed['graftkit'][-1] / speed['plain'][-1]:.3f} ({load_average()})", flush=True)  # fmt: skip
    p_, g = speed["plain"], speed["graftkit"]
    rounds = len(p_)
    if rounds == 0:
        raise SystemExit("no round finished inside --max-seconds: nothing to report")
    ratios = [b / a for a, b in zip(p_, g)]
    verdict = within_noise(ratios, TARGET)
    report(
        f"Loop overhead: fine-tuning EfficientNet-Lite0, batch {BS}, {SIZE} px, fp32 channels_last, {rounds} alternating rounds "
        f"of {args.batches} batches ({machine()}; {load_average()} at the end)",
        [("minimal PyTorch loop", ", ".join(f"{x:.1f}" for x in p_), median_spread(p_, ".1f"), "1.00×"),
         ("graftkit train_loop", ", ".join(f"{x:.1f}" for x in g), median_spread(g, ".1f"), median_spread(ratios, ".3f", "×"))],  # fmt: skip
        ("loop", "rounds (img/s)", "median [min, max]", "paired ratio, median [min, max]"),
        {"plain_rounds": p_, "graftkit_rounds": g, "paired_ratios": ratios, "ratio_of_medians": statistics.median(g) / statistics.median(p_),
         "timed_seconds": round(time.perf_counter() - t0, 1)},  # fmt: skip
    )
    print(f"\nTarget ≥ {TARGET}×: {verdict}")


if __name__ == "__main__":
    main()
