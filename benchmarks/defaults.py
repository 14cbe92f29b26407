"""Fine-tuning defaults re-chosen on a development split (issue 10, requirement 2).

    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts python benchmarks/defaults.py text
    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts python benchmarks/defaults.py images

The fine-tuning defaults (`training/config.py: TrainConfig.resolved`) were first picked on figures
that were also reported (images: the test accuracy of `transfer.py`; text: the validation split of
the bundled demo snippets, which overlaps the sentiment benchmark's test texts). This script
chooses between the same candidates on a **development split drawn from the training pool**, never
on a test split:

- `images`: EfficientNet-Lite0, `--strategy finetune`, 128 px, 6 epochs, Fashion-MNIST: training data
  = 100 per class of the official *training* images (transfer.py's training folder, seed 1; graftkit
  holds 20 % of it out as val for the best epoch), dev = 100 per class of *other* training images;
- `text`: `minilm`, `--strategy finetune`, 3 epochs, batch 32, max length 64: training data = 600
  snippets of `vader_split(0)`'s training part, dev = 1,000 other snippets of that training part.
Rounds = seeds 0, 1, 2 (split, head initialisation and data order change); the order of the
candidates reverses every round. The winner is the highest median dev accuracy; ties (within one
dev example) go to the current default.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time

from _common import WORK, fashion_mnist_folder, machine, report, vader_split, write_text_csv

IMAGE_CANDIDATES = {
    "default: random head, lr 1e-3, decay 0.8, backbone 1.0x": dict(head_init="random", lr=1e-3, lr_decay=0.8, backbone_lr_scale=1.0),
    "LP-FT head, lr 1e-3, decay 0.8, backbone 1.0x": dict(head_init="probe", lr=1e-3, lr_decay=0.8, backbone_lr_scale=1.0),
    "LP-FT head, lr 1e-3, no decay, backbone 0.1x": dict(head_init="probe", lr=1e-3, lr_decay=1.0, backbone_lr_scale=0.1),
}
TEXT_CANDIDATES = {
    "default: LP-FT head, lr 1e-3, decay 0.9, backbone 0.05x": dict(head_init="probe", lr=1e-3, lr_decay=0.9, backbone_lr_scale=0.05),
    "random head, lr 1e-3, decay 0.9, backbone 0.05x": dict(head_init="random", lr=1e-3, lr_decay=0.9, backbone_lr_scale=0.05),
    "uniform 5e-5 (Trainer-like), random head": dict(head_init="random", lr=5e-5, lr_decay=1.0, backbone_lr_scale=1.0),
}


def image_data():
    import numpy as np
    from fashion_mnist import pick_per_class, read_split, write_folder

    train = fashion_mnist_folder("fmnist-train-100pc-png", "train", 100, fmt="png", size=None, seed=1)  # transfer.py's
    dev = WORK / "fmnist-dev-100pc-png"
    if not (dev / ".complete").is_file():
        images, labels = read_split("train")
        taken = set(pick_per_class(labels, 100, seed=1).tolist())
        rng = np.random.default_rng(11)
        picked = [rng.choice([i for i in np.flatnonzero(labels == c) if i not in taken], 100, replace=False) for c in range(10)]
        write_folder(dev, images, labels, np.concatenate(picked), fmt="png", size=None)
        (dev / ".complete").write_text("ok")
    return train, dev, dict(model="efficientnet_lite0", strategy="finetune", epochs=6, image_size=128), IMAGE_CANDIDATES


def text_data():
    train_rows, _ = vader_split(0)  # the test part is never touched here
    base = WORK / "defaults-text"
    train = write_text_csv(train_rows[:600], base / "train-600.csv")
    dev = write_text_csv(train_rows[600:1600], base / "dev-1000.csv")
    return train, dev, dict(model="minilm", strategy="finetune", epochs=3, batch_size=32, max_length=64), TEXT_CANDIDATES


def run_one(kind: str, name: str, settings: dict, common: dict, train, dev, seed: int) -> dict:
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    out = WORK / "runs" / f"defaults-{kind}-{abs(hash(name)) % 10**6}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run = graftkit.fit(train, out=out, seed=seed, offline=True, **common, **settings)
    seconds = time.perf_counter() - t0
    dev_metrics = evaluate(out, dev)["test"]
    row = {"candidate": name, "seed": seed, "dev_accuracy": dev_metrics["accuracy"], "dev_n": dev_metrics.get("n"),
           "val_accuracy": run.metrics["val"]["accuracy"], "seconds": round(seconds, 1)}  # fmt: skip
    print(json.dumps(row), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["images", "text"])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    train, dev, common, candidates = image_data() if args.kind == "images" else text_data()
    names = list(candidates)
    rows = []
    for seed in range(args.rounds):
        for name in names if seed % 2 == 0 else names[::-1]:
            rows.append(run_one(args.kind, name, candidates[name], common, train, dev, seed))
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    (WORK / "results" / f"defaults-{args.kind}.json").write_text(json.dumps({"machine": machine(), "common": common, "rows": rows}, indent=1))

    def med(values):
        return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"

    table = []
    default = names[0]
    base = {r["seed"]: r["dev_accuracy"] for r in rows if r["candidate"] == default}
    for name in names:
        mine = [r for r in rows if r["candidate"] == name]
        diffs = [100 * (r["dev_accuracy"] - base[r["seed"]]) for r in mine]
        table.append((name, med([r["dev_accuracy"] for r in mine]), "—" if name == default else f"{statistics.median(diffs):+.1f} [{min(diffs):+.1f}, {max(diffs):+.1f}]",
                      med([r["seconds"] for r in mine])))  # fmt: skip
    report(f"Fine-tuning defaults on a dev split ({args.kind}; {machine()})", table,
           ("candidate", "dev accuracy, median [min, max]", "− default, points, paired by seed", "train s"), common)  # fmt: skip


if __name__ == "__main__":
    main()
