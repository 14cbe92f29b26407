"""GPU check, run on a CUDA machine: training throughput in fp32 vs bf16 autocast through graftkit's
own engine and loop, for an EfficientNet-Lite0-shaped CNN and a MiniLM-shaped transformer (random
weights of the same architectures: the point is speed and that the bf16 path trains).

    PYTHONPATH=src python benchmarks/gpu_check.py --out results.json

Prints one JSON object: per model and precision, training samples/s and the loss after the timed
steps (finite = bf16 trains). `--rounds` rounds (default 3) of `--steps` timed steps (after one
warm-up step), fp32 and bf16 alternating which goes first; the step time is the median of the
rounds' medians, with the rounds listed, and the bf16 speed-up is paired by round (median [min, max]).
`--device cpu` with a small `--cnn-batch` / `--cnn-size` runs the same code as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from _common import alternating, median_spread


def _sync(engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def _train_speed(model, batch_fn, loss_fn, engine, steps: int = 30, warmup: int = 5) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, loss = [], None
    for i in range(warmup + steps):
        inputs, targets = batch_fn()
        _sync(engine)
        t0 = time.perf_counter()
        with engine.autocast():
            out = model(engine.to_device(inputs))
        loss = loss_fn(out.float(), targets.to(engine.device))
        opt.zero_grad(set_to_none=True)
        engine.backward(loss)
        opt.step()
        _sync(engine)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"step_ms": round(1000 * statistics.median(times), 2), "loss": float(loss.detach())}


def main() -> None:
    from graftkit.sources import build_architecture
    from graftkit.tasks import ClassificationTask, GraftModel
    from graftkit.engine import LocalEngine, choose_precision

    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--minilm-config", default=None, help="folder with a MiniLM config.json + tokenizer (random init)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--rounds", type=int, default=3, help="rounds per precision, the order alternating (at least 3)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--cnn-batch", type=int, default=128)
    p.add_argument("--cnn-size", type=int, default=224)
    args = p.parse_args()
    dev = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else "none (--device cpu)"
    result = {"gpu": gpu, "torch": torch.__version__, "auto_precision": choose_precision("x", training=True, device=dev.type), "rounds": args.rounds}

    def compare(name: str, model, batch_fn, batch: int, **engine_kw) -> None:
        """fp32 vs bf16 on one model: `--rounds` alternating rounds of `--steps` steps."""
        runs = {precision: [] for precision in ("fp32", "bf16")}
        engines = {precision: LocalEngine(dev, precision=precision, **engine_kw) for precision in runs}
        for _, precision in alternating(list(runs), args.rounds):
            engine = engines[precision]
            runs[precision].append(_train_speed(engine.setup(model), batch_fn, task.loss, engine, steps=args.steps, warmup=1))
        for precision, rs in runs.items():
            step_ms = [r["step_ms"] for r in rs]
            result[f"{name}_{precision}"] = {"step_ms": statistics.median(step_ms), "step_ms_rounds": step_ms, "loss": rs[-1]["loss"],
                                             "samples_per_s": round(batch / (statistics.median(step_ms) / 1000), 1)}  # fmt: skip
        paired = [a["step_ms"] / b["step_ms"] for a, b in zip(runs["fp32"], runs["bf16"])]
        result[f"{name}_bf16_speedup"] = round(statistics.median(paired), 2)
        result[f"{name}_bf16_speedup_paired"] = median_spread(paired, ".2f", "x")

    task = ClassificationTask([str(i) for i in range(10)])

    # CNN: EfficientNet-Lite0 architecture, 224 px, batch 128, channels_last.
    bb = build_architecture("timm:tf_efficientnet_lite0")
    model = GraftModel(bb, task.build_head(bb.num_features))
    B = args.cnn_batch
    x, y = torch.randn(B, 3, args.cnn_size, args.cnn_size), torch.randint(0, 10, (B,))
    compare("efficientnet_lite0", model, lambda: (x, y), B, channels_last=True)

    if args.minilm_config:
        from graftkit.sources.hf_weights import build_hf_architecture

        tb = build_hf_architecture(Path(args.minilm_config), head_kind="features")
        model = GraftModel(tb, task.build_head(tb.num_features))
        B, T = 64, 128
        ids = torch.randint(100, 1000, (B, T))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        yt = torch.randint(0, 10, (B,))
        compare("minilm", model, lambda: (batch, yt), B)
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
