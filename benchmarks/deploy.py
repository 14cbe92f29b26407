"""PyTorch eager vs ONNX Runtime fp32 vs int8 on one run: latency, throughput, validation top-1.

    .venv/bin/python benchmarks/deploy.py                       # trains the image demo run (EfficientNet-Lite0) first
    .venv/bin/python benchmarks/deploy.py --run runs/demo       # an existing run
    .venv/bin/python benchmarks/deploy.py --text                # the text demo run (MiniLM) instead

All three backends run the same preprocessed inputs, in one process, with the same thread count,
`--rounds` rounds (default 3) with the order of the backends reversed every other round: per round
single-input latency (p50/p99 of `--repeats` calls after warm-up) and batch throughput (batches of
`--batch`); quoted as median [min, max] over the rounds, the ratio to eager paired by round; then
top-1 on every validation sample of the run. The
PyTorch model runs as `graftkit.load` runs it (the run's inference precision and memory format).
The export (with its own parity check) is redone first, so the figures belong to this code.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _common import WORK, alternating, load_average, machine, median_spread, report, within_noise


def _demo_run(kind: str) -> Path:
    from graftkit.demo import run_demo

    out = WORK / "runs" / f"deploy-demo-{kind}"
    if not (out / "graft.json").is_file():
        run_demo(kind, out=out)
    return out


def _timings(fn, x, repeats: int, warmup: int = 10) -> np.ndarray:
    for _ in range(warmup):
        fn(x)
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        out[i] = time.perf_counter() - t0
    return out * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="run directory (default: train the demo run into benchmarks/_work)")
    ap.add_argument("--text", action="store_true", help="use the text demo run (MiniLM) when --run is not given")
    ap.add_argument("--rounds", type=int, default=3, help="timings per backend, the order alternating (at least 3)")
    ap.add_argument("--repeats", type=int, default=200, help="single-input calls per backend and round")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=10)
    args = ap.parse_args()

    import graftkit
    from graftkit.deploy.export import export
    from graftkit.deploy.runtime import OnnxRuntimeModel
    from graftkit.deploy.modality import model_batches, signature_for, validation_samples
    from graftkit.deploy.signature import example_inputs
    from graftkit.engine import tune_malloc

    tune_malloc()
    run = args.run or _demo_run("text" if args.text else "image")
    t0 = time.perf_counter()
    result = export(run, "onnx", quantize="int8")
    export_s = time.perf_counter() - t0
    print(result.summary())

    torch_pred = graftkit.load(run)
    meta, task = torch_pred.meta, torch_pred.task
    sig = signature_for(torch_pred.model, meta, torch_pred.task)
    engine = torch_pred.engine

    def torch_fn(batch):  # the model as graftkit.load runs it: inference precision, memory format
        with torch.inference_mode(), engine.autocast():
            return sig.module(*engine.to_device(example_inputs(batch, sig)))

    backends = {"PyTorch eager": torch_fn, "ONNX Runtime fp32": OnnxRuntimeModel(run), "ONNX Runtime int8": OnnxRuntimeModel(run, int8=True)}
    samples = validation_samples(run, meta)
    tokenizer = torch_pred.tokenizer
    val_batches = list(model_batches(samples.items, meta, args.batch, tokenizer))
    single = {k: v[:1] for k, v in val_batches[0].items()}
    big = val_batches[0]  # `--batch` inputs
    targets = task.encode(samples.labels) if samples.real else None

    n_big = len(next(iter(big.values())))
    per_round: dict[str, dict[str, list[float]]] = {name: {"p50_ms": [], "p99_ms": [], "throughput_per_s": []} for name in backends}
    for _, name in alternating(list(backends), args.rounds):
        fn, mine = backends[name], per_round[name]
        lat = _timings(fn, single, args.repeats)
        mine["p50_ms"].append(float(np.percentile(lat, 50)))
        mine["p99_ms"].append(float(np.percentile(lat, 99)))
        mine["throughput_per_s"].append(n_big / float(np.median(_timings(fn, big, args.batches, warmup=2) / 1000)))
    rows, raw = [], {}
    eager = per_round["PyTorch eager"]["p50_ms"]
    for name, fn in backends.items():
        with torch.inference_mode():
            logits = torch.cat([fn(b).float() for b in val_batches])
        top1 = float((logits.argmax(1) == targets).float().mean()) if targets is not None else float("nan")
        mine = per_round[name]
        vs_eager = [a / b for a, b in zip(mine["p50_ms"], eager)]  # paired by round
        raw[name] = {**{k: float(np.median(v)) for k, v in mine.items()}, "top1": top1, "rounds": mine, "p50_vs_eager_rounds": vs_eager}
        rows.append((name, median_spread(mine["p50_ms"]), median_spread(mine["p99_ms"]), median_spread(mine["throughput_per_s"], ".0f"),
                     f"{top1:.4f}", median_spread(vs_eager, ".2f", "×")))  # fmt: skip
    unit = "texts/s" if meta.get("modality") == "text" else "img/s"
    report(
        f"Deploy backends: {meta['model']['model_id']} ({meta['task']['name']}, {len(samples.items)} validation samples), "
        f"{args.rounds} alternating rounds",
        rows,
        ("backend", "1-input p50 ms", "1-input p99 ms", f"batch {args.batch} {unit}", "val top-1", "p50 vs eager (paired)"),
        extra={"machine": machine(), "load": load_average(), "run": str(run), "export_seconds": round(export_s, 1), "samples": samples.source,
               "int8": {k: result.parity["onnx-int8"].get(k) for k in ("quantization", "calibration", "validation", "agreement")},
               "figures": raw},  # fmt: skip
    )
    int8_drop = 100 * (raw["ONNX Runtime fp32"]["top1"] - raw["ONNX Runtime int8"]["top1"])
    verdict = within_noise(raw["ONNX Runtime fp32"]["p50_vs_eager_rounds"], 0.6, higher_is_better=False)
    print(f"\nORT fp32 p50 / eager p50 (target <= 0.6): {verdict}; "
          f"int8 top-1 change {-int8_drop:+.2f} points (target within 1)")  # fmt: skip
    (WORK / "deploy.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
