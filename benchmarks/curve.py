"""`graft curve` on real data: pretrained vs random init, accuracy against labels and against wall time.

    .venv/bin/python benchmarks/curve.py
    .venv/bin/python benchmarks/curve.py --strategy finetune --image-size 64

Fashion-MNIST, 100 training images per class (800 train / 200 val after graftkit's seeded split),
fractions 0.1, 0.25, 0.5, 1 of the training split. Transfer: ImageNet EfficientNet-Lite0 with
`--strategy` (default `linear-probe`); scratch: the same architecture from random init,
fine-tuned, same epochs and image size. No feature cache: every wall time is a run from nothing.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import WORK, fashion_mnist_folder, machine, report


def main() -> None:
    import graftkit

    p = argparse.ArgumentParser()
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--fractions", default="0.1,0.25,0.5,1")
    p.add_argument("--strategy", default="linear-probe")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()
    data = fashion_mnist_folder(f"fmnist-train-{args.per_class}pc-png", "train", args.per_class, fmt="png", size=None, seed=1)
    r = graftkit.curve(data, model="efficientnet_lite0", fractions=[float(f) for f in args.fractions.split(",")],
                       out=WORK / "runs" / "curve", strategy=args.strategy, epochs=args.epochs, overwrite=True,
                       settings={"image_size": args.image_size, "offline": True})  # fmt: skip
    rows = [(p["kind"], p["labels"], f"{p['val_accuracy']:.3f}", f"{p['train_seconds']:.0f}") for p in sorted(r.points, key=lambda p: (p["kind"], p["labels"]))]
    report(
        f"graft curve: Fashion-MNIST, EfficientNet-Lite0 ({args.strategy}) vs random init (finetune), "
        f"{args.epochs} epochs, {args.image_size} px ({machine()})",
        rows,
        ("kind", "labels", "val accuracy (200)", "train s"),
        {"summary": r.summary},
    )
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    (WORK / "results" / "curve.json").write_text(json.dumps(r.to_dict(), indent=1))


if __name__ == "__main__":
    main()
