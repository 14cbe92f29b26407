"""`--strategy auto` against every fixed strategy, each with the same time budget, at several data sizes.

    .venv/bin/python benchmarks/auto_strategy.py                                  # images, 10 and 100 per class
    .venv/bin/python benchmarks/auto_strategy.py --per-class 10,100,1000 --budgets 60,150,600
    .venv/bin/python benchmarks/auto_strategy.py --text --per-class 10,100 --budgets 60,120

Images: Fashion-MNIST (`per_class` training images per class, 20 % of them held out for
validation by graftkit's seeded split), EfficientNet-Lite0 at 64 px (Fashion-MNIST is 28 px; 64
keeps fine-tuning affordable on a CPU); test accuracy on 1,000 unseen test images (100 per class).
Text: VADER movie-review snippets with `minilm`, tested on 1,000 held-out snippets.

Every run — `linear-probe`, `partial:N` (N = half the layer groups, what auto would pick),
`finetune` (and `lora` for text), and `auto` — is `graftkit.fit(..., time_budget=B, epochs=10)`
with a fresh, empty feature cache: the budget covers everything (data checks, the feature pass,
auto's quick probe and epoch measurement, training, and the final validation pass), and fixed
strategies get the same epoch fitting to the budget that auto gets. The criterion (issue 5):
`auto` within 1 point of the best fixed strategy's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import WORK, fashion_mnist_folder, fresh_cache, machine, report


def _groups(model: str) -> int:
    from graftkit.sources import resolve
    from graftkit.training.config import TrainConfig
    from graftkit.training.plan import load_backbone_for

    return len(load_backbone_for(TrainConfig(model=model, offline=True), resolve(model).modality).layer_groups())


def run_one(name: str, data, test, model: str, strategy: str, budget: float, extra: dict) -> dict:
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    out = WORK / "runs" / f"auto-{name}-{strategy.replace(':', '')}"
    shutil.rmtree(out, ignore_errors=True)
    fresh_cache(f"auto-{name}")
    t0 = time.perf_counter()
    run = graftkit.fit(data, model=model, strategy=strategy, out=out, epochs=10, time_budget=budget, seed=0, offline=True, **extra)
    wall = time.perf_counter() - t0
    meta = json.loads((out / "graft.json").read_text())
    test_acc = evaluate(out, test)["test"]["accuracy"]
    plan = meta.get("auto") or meta.get("time_budget") or {}
    row = {"strategy": strategy, "chosen": meta["strategy"], "epochs": run.metrics["epochs"], "wall_s": round(wall, 1),
           "val": run.metrics["val"]["accuracy"], "test": test_acc, "reasons": plan.get("reasons", [])}  # fmt: skip
    print(f"{name} {strategy}: {meta['strategy']} x{row['epochs']} epochs, test {test_acc:.3f}, {wall:.0f} s", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-class", default="10,100")
    p.add_argument("--budgets", default="60,150", help="seconds per run, one per --per-class value")
    p.add_argument("--text", action="store_true", help="VADER sentiment with minilm instead of Fashion-MNIST")
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()
    sizes = [int(x) for x in args.per_class.split(",")]
    budgets = [float(x) for x in args.budgets.split(",")]
    if args.text:
        from _common import few_shot, vader_split, write_text_csv

        model, extra = "minilm", {"batch_size": 32}
        train_rows, test_rows = vader_split()
        test = write_text_csv(few_shot(test_rows, 500, seed=1), WORK / "auto-text-test.csv")
        fixed = ["linear-probe", f"partial:{math.ceil(_groups(model) / 2)}", "finetune", "lora"]
    else:
        model, extra = "efficientnet_lite0", {"image_size": args.image_size}
        test = fashion_mnist_folder("fmnist-test-100pc-png", "t10k", 100, fmt="png", size=None, seed=2)
        fixed = ["linear-probe", f"partial:{math.ceil(_groups(model) / 2)}", "finetune"]
    results, rows = {}, []
    for per_class, budget in zip(sizes, budgets):
        if args.text:
            data = write_text_csv(few_shot(train_rows, per_class, seed=0), WORK / f"auto-text-{per_class}pc.csv")
        else:
            data = fashion_mnist_folder(f"fmnist-train-{per_class}pc-png", "train", per_class, fmt="png", size=None, seed=1)
        name = f"{'text' if args.text else 'img'}{per_class}"
        runs = [run_one(name, data, test, model, s, budget, extra) for s in [*fixed, "auto"]]
        results[per_class] = runs
        best = max(runs[:-1], key=lambda r: r["test"])
        auto = runs[-1]
        for r in runs:
            rows.append((per_class, f"{budget:.0f}", r["strategy"], r["chosen"], r["epochs"], f"{r['wall_s']:.0f}", f"{r['val']:.3f}", f"{r['test']:.3f}"))
        gap = auto["test"] - best["test"]
        rows.append((per_class, "", "**auto − best fixed**", f"best: {best['strategy']}", "", "", "", f"**{gap:+.3f}** ({'within' if gap >= -0.01 else 'NOT within'} 1 point)"))
    report(
        f"--strategy auto vs fixed strategies, {model}, same time budget per run ({machine()})",
        rows,
        ("per class", "budget s", "strategy", "ran as", "epochs", "wall s", "val acc", "test acc"),
        {str(k): [r["reasons"] for r in v if r["strategy"] == "auto"] for k, v in results.items()},
    )
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    (WORK / "results" / f"auto_strategy{'_text' if args.text else ''}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
