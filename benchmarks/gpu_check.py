"""GPU check, run on a CUDA machine: training throughput in fp32 vs bf16 autocast through graftkit's
own engine and loop, for an EfficientNet-Lite0-shaped CNN and a MiniLM-shaped transformer (random
weights of the same architectures: the point is speed and that the bf16 path trains).

    PYTHONPATH=src python benchmarks/gpu_check.py --out results.json

Prints one JSON object: per model and precision, training samples/s (median of timed steps after
warm-up) and the loss after the timed steps (finite = bf16 trains).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _train_speed(model, batch_fn, loss_fn, engine, steps: int = 30, warmup: int = 5) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times, loss = [], None
    for i in range(warmup + steps):
        inputs, targets = batch_fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with engine.autocast():
            out = model(engine.to_device(inputs))
        loss = loss_fn(out.float(), targets.to(engine.device))
        opt.zero_grad(set_to_none=True)
        engine.backward(loss)
        opt.step()
        torch.cuda.synchronize()
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
    args = p.parse_args()
    dev = torch.device("cuda")
    result = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "auto_precision": choose_precision("x", training=True, device="cuda")}
    task = ClassificationTask([str(i) for i in range(10)])

    # CNN: EfficientNet-Lite0 architecture, 224 px, batch 128, channels_last.
    bb = build_architecture("timm:tf_efficientnet_lite0")
    model = GraftModel(bb, task.build_head(bb.num_features))
    B = 128
    x, y = torch.randn(B, 3, 224, 224), torch.randint(0, 10, (B,))
    for precision in ("fp32", "bf16"):
        engine = LocalEngine(dev, precision=precision, channels_last=True)
        m = engine.setup(model)
        r = _train_speed(m, lambda: (x, y), task.loss, engine)
        r["samples_per_s"] = round(B / (r["step_ms"] / 1000), 1)
        result[f"efficientnet_lite0_{precision}"] = r

    if args.minilm_config:
        from graftkit.sources.hf_weights import build_hf_architecture

        tb = build_hf_architecture(Path(args.minilm_config), head_kind="features")
        model = GraftModel(tb, task.build_head(tb.num_features))
        B, T = 64, 128
        ids = torch.randint(100, 1000, (B, T))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        y = torch.randint(0, 10, (B,))
        for precision in ("fp32", "bf16"):
            engine = LocalEngine(dev, precision=precision)
            m = engine.setup(model)
            r = _train_speed(m, lambda: (batch, y), task.loss, engine)
            r["samples_per_s"] = round(B / (r["step_ms"] / 1000), 1)
            result[f"minilm_{precision}"] = r
    for name in [k for k in result if k.endswith("_fp32")]:
        base = name[: -len("_fp32")]
        result[f"{base}_bf16_speedup"] = round(result[f"{base}_fp32"]["step_ms"] / result[f"{base}_bf16"]["step_ms"], 2)
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
