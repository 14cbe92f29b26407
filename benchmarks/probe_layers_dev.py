"""Which layers and poolings the image probe reads: chosen on Fashion-MNIST dev splits, never the test images.

    PYTHONPATH=src:scripts python benchmarks/probe_layers_dev.py

Two dev splits (seeds 1, 2) drawn from the official *training* images only, as `probe_features.py
dev` draws them: 100 per class to train the probe (20 % of it held out to choose the strength,
then refit), 200 per class of other training images to score it. EfficientNet-Lite0 at 224 px;
every block's output is read by forward hooks and pooled several ways, once, and each variant is a
column subset of those features solved by `solve_probe`. `--layer-pooling concat` implements the
variant this study picked ("last + mean + max + std, every block"); see RESULTS.md, "Probe solver".
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from _common import machine  # noqa: E402
from fashion_mnist import CLASSES, read_split  # noqa: E402
from probe_features import folder  # noqa: E402

POOLS = ("mean", "max", "std")
VARIANTS = {  # name -> (poolings, blocks); every variant keeps the network's pooled output first
    "last (the default)": ((), ()),
    "+ mean, stage ends": (("mean",), (0, 1, 2, 4, 6)),
    "+ mean, every block": (("mean",), tuple(range(7))),
    "+ mean + max, stage ends": (("mean", "max"), (0, 1, 2, 4, 6)),
    "+ mean + max, every block": (("mean", "max"), tuple(range(7))),
    "+ mean + max + std, every block (= concat)": (("mean", "max", "std"), tuple(range(7))),
}


def features(bb, samples) -> dict[str, torch.Tensor]:
    """The pooled output and each block's output under each pooling, per sample."""
    from graftkit.training.frozen import labelled_features

    outs: dict[int, torch.Tensor] = {}
    for i, block in enumerate(bb.model.blocks):
        block.register_forward_hook(lambda mod, inp, out, i=i: outs.__setitem__(i, out.float()))
    last = bb.forward_features
    with torch.no_grad():
        bb.eval()(torch.zeros(1, 3, 64, 64))  # eval: a train-mode pass would move the BatchNorm statistics
    widths = [outs[i].shape[1] for i in range(len(bb.model.blocks))]

    def every_pooling(x: torch.Tensor) -> torch.Tensor:
        pooled = last(x).float()
        parts = [outs[i].mean((2, 3)) for i in outs] + [outs[i].amax((2, 3)) for i in outs] + [outs[i].std((2, 3), correction=0) for i in outs]
        return torch.cat([pooled, *parts], 1)

    bb.forward_features = every_pooling
    f = np.asarray(labelled_features(bb, samples, CLASSES, cache=False).features)
    cols, at = {"last": slice(0, bb.num_features)}, bb.num_features
    for pool in POOLS:
        for i, w in enumerate(widths):
            cols[(pool, i)] = slice(at, at + w)
            at += w
    bb.forward_features = last
    return {k: torch.from_numpy(f[:, s]).float() for k, s in cols.items()}


def main() -> None:
    from graftkit.sources import load_backbone
    from graftkit.tasks import ClassificationTask
    from graftkit.training import solver

    task = ClassificationTask([str(i) for i in range(10)])
    images, labels = read_split("train")
    rows = {name: [] for name in VARIANTS}
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        pool = [rng.choice(np.flatnonzero(labels == c), 300, replace=False) for c in range(10)]
        split = {"train": np.concatenate([p[:100] for p in pool]), "dev": np.concatenate([p[100:] for p in pool])}
        feats = {}
        for part, idx in split.items():
            bb = load_backbone("efficientnet_lite0", offline=True)
            path = folder(f"dev{seed}_{part}", images, labels, idx)
            samples = [SimpleNamespace(path=path / CLASSES[labels[i]] / f"{i:05d}.jpg", label=CLASSES[labels[i]]) for i in idx]
            feats[part] = features(bb, samples)
        y = {part: torch.from_numpy(labels[idx]).long() for part, idx in split.items()}
        held = torch.from_numpy(np.random.default_rng(0).permutation(1000))
        va, tr = held[:200], held[200:]
        for name, (pools, blocks) in VARIANTS.items():
            def cat(part):
                return torch.cat([feats[part]["last"]] + [feats[part][(p, i)] for p in pools for i in blocks], 1)
            x = cat("train")
            sol = solver.solve_probe(task, {"train": x[tr], "val": x[va]}, {"train": y["train"][tr], "val": y["train"][va]},
                                     out_features=10, monitor="accuracy")  # fmt: skip
            acc = float(((cat("dev") @ sol.weight.T + sol.bias).argmax(1) == y["dev"]).float().mean())
            rows[name].append((acc, x.shape[1]))
            print(f"seed {seed}  {name:40s} {x.shape[1]:5d} features  dev acc {acc:.4f}", flush=True)
    print(f"\n### Image probe layers on the dev splits ({machine()})\n")
    print("| features | width | dev acc, seed 1 | dev acc, seed 2 | gain over last, mean |\n|---|---|---|---|---|")
    base = [a for a, _ in rows["last (the default)"]]
    for name, r in rows.items():
        gain = 100 * float(np.mean([a - b for (a, _), b in zip(r, base)]))
        print(f"| {name} | {r[0][1]} | {r[0][0]:.4f} | {r[1][0]:.4f} | {gain:+.2f} pt |")


if __name__ == "__main__":
    main()
