"""int8 vs fp32 ONNX on 1,000 validation examples: accuracy change, the export's own choice, latency.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/int8.py --split report           # the figures in RESULTS.md
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/int8.py --split dev              # the split the recipe was chosen on

Two runs, each a linear probe with `--no-refit` (so validation stays held out of the head):
- EfficientNet-Lite0 on Fashion-MNIST: 100 training images per class from the official training
  set; validation = 100 per class of the official test set (`dev`: one half of 200 seeded per class,
  `report`: the other half, so the two never share an image).
- MiniLM on the VADER movie-review snippets: 2,000 training texts; validation = 1,000 of 2,000
  held-out texts (`dev`: the first half, `report`: the second).

Then `graft export --format onnx --quantize int8 --max-samples 1000` (its parity, accuracy and
adoption records are printed), then single-input and batch-32 latency of fp32 and int8 under ONNX
Runtime, alternating which goes first, `--rounds` rounds; median and spread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import WORK, machine, vader_split, write_text_csv

ROOT = Path(__file__).resolve().parents[1]


def _fashion(split: str) -> tuple[Path, Path]:
    from fashion_mnist import pick_per_class, read_split, write_folder

    base = WORK / "int8"
    train, val = base / "fm-train", base / f"fm-{split}"
    if not (train / ".complete").is_file():
        images, labels = read_split("train")
        write_folder(train, images, labels, pick_per_class(labels, 100, seed=0), fmt="jpg", size=256)
        (train / ".complete").write_text("ok")
    if not (val / ".complete").is_file():
        images, labels = read_split("t10k")
        halves = pick_per_class(labels, 200, seed=0).reshape(10, 200)
        write_folder(val, images, labels, (halves[:, :100] if split == "dev" else halves[:, 100:]).ravel(), fmt="jpg", size=256)
        (val / ".complete").write_text("ok")
    return train, val


def _vader(split: str) -> tuple[Path, Path]:
    base = WORK / "int8"
    train, test = vader_split(0, n_train=2000, n_test=2000)
    return write_text_csv(train, base / "vader-train.csv"), write_text_csv(test[:1000] if split == "dev" else test[1000:], base / f"vader-{split}.csv")


def _graft(*args: str) -> str:
    out = subprocess.run([str(Path(sys.executable).with_name("graft")), *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"graft {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout + out.stderr


def _latency(run: Path, rounds: int, repeats: int = 50) -> dict[str, dict[str, list[float]]]:
    """Per backend, per shape (`1`, `32`): one median per round (ms), the order alternated by round."""
    import onnxruntime as ort

    export = run / "export"
    spec = json.loads((export / "preprocess.json").read_text())
    feeds = {}
    for name, meta in spec["inputs"].items():
        shape = [1 if d == "batch" else 24 if d == "sequence" else d for d in meta["shape"]]
        feeds[name] = (np.ones(shape, np.int64) if meta["dtype"] == "int64" else np.random.default_rng(0).normal(size=shape).astype(np.float32))
    sessions = {k: ort.InferenceSession(str(export / f), providers=["CPUExecutionProvider"]) for k, f in (("fp32", "model.onnx"), ("int8", "model.int8.onnx"))}
    out: dict[str, dict[str, list[float]]] = {k: {"1": [], "32": []} for k in sessions}
    for r in range(rounds):
        order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
        for key in order:
            for batch in ("1", "32"):
                x = {n: np.repeat(v, int(batch), axis=0) for n, v in feeds.items()}
                for _ in range(5):
                    sessions[key].run(None, x)
                times = []
                for _ in range(repeats if batch == "1" else max(repeats // 10, 3)):
                    t0 = time.perf_counter()
                    sessions[key].run(None, x)
                    times.append(time.perf_counter() - t0)
                out[key][batch].append(1000 * float(np.median(times)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "report"], default="report")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["image", "text"])
    args = ap.parse_args()
    print(machine(), flush=True)
    import os

    os.environ.setdefault("GRAFTKIT_CACHE", str(WORK / "int8" / "cache"))
    rows = []
    for kind in ("image", "text"):
        if args.only and kind != args.only:
            continue
        train, val = _fashion(args.split) if kind == "image" else _vader(args.split)
        model = "efficientnet_lite0" if kind == "image" else "minilm"
        run = WORK / "int8" / f"run-{kind}-{args.split}"
        t0 = time.perf_counter()
        _graft("train", str(train), "--val", str(val), "--model", model, "--strategy", "linear-probe", "--no-refit", "--overwrite", "--out", str(run))
        t1 = time.perf_counter()
        print(_graft("export", str(run), "--format", "onnx", "--quantize", "int8", "--max-samples", "1000"), flush=True)
        t2 = time.perf_counter()
        rec = json.loads((run / "export" / "parity.json").read_text())["onnx-int8"]
        if not (run / "export" / "model.int8.onnx").is_file():
            print(f"{kind}: int8 removed ({rec['adoption']}); no latency", flush=True)
            lat = None
        else:
            lat = _latency(run, args.rounds)
        val_rec = rec.get("validation", {})
        metric = val_rec.get("metric", "accuracy")
        row = {"kind": kind, "model": model, "n": val_rec.get("n"), "fp32": val_rec.get("onnx", {}).get(metric), "int8": val_rec.get("onnx-int8", {}).get(metric),
               "change": val_rec.get("change"), "agreement": rec["agreement"], "passed": rec["passed"], "adopted": rec.get("adopted"),
               "recipe": (rec.get("quantization") or {}).get("fp32_prefix") or (rec.get("quantization") or {}).get("method"),
               "train_s": round(t1 - t0, 1), "export_s": round(t2 - t1, 1)}  # fmt: skip
        if lat:
            for b in ("1", "32"):
                f, q = np.array(lat["fp32"][b]), np.array(lat["int8"][b])
                row[f"fp32_ms_{b}"] = f"{np.median(f):.1f} ({f.min():.1f}–{f.max():.1f})"
                row[f"int8_ms_{b}"] = f"{np.median(q):.1f} ({q.min():.1f}–{q.max():.1f})"
                ratio = f / q
                row[f"speedup_{b}"] = f"{np.median(ratio):.2f}× ({ratio.min():.2f}–{ratio.max():.2f})"
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    print("\n| model | n | fp32 | int8 | change | agreement | int8 default? | recipe | 1 input fp32 / int8 ms | speed-up | batch 32 fp32 / int8 ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['n']} | {r['fp32']:.4f} | {r['int8']:.4f} | {100 * r['change']:+.1f} pt | {r['agreement']:.3f} | "
              f"{'yes' if r['adopted'] else 'no'} | {r['recipe']} | {r.get('fp32_ms_1', '–')} / {r.get('int8_ms_1', '–')} | {r.get('speedup_1', '–')} | "
              f"{r.get('fp32_ms_32', '–')} / {r.get('int8_ms_32', '–')} | {r.get('speedup_32', '–')} |")  # fmt: skip


if __name__ == "__main__":
    main()
