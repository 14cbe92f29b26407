"""The solved probe head vs a default scikit-learn `LogisticRegression` on the same cached features.

    PYTHONPATH=src:scripts python benchmarks/probe_features.py official   # once: the features
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/probe_head_timing.py
    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/probe_head_timing.py --pooling concat   # after PROBE_POOLING=concat probe_features.py official

Fashion-MNIST, 100 per class of the official training images (seed 0; graftkit holds 20 per class
out as validation to choose the strength, then refits on all 1,000) and 200 per class of the
official test images (2,000), EfficientNet-Lite0 features (1,280; 3,632 under `--layer-pooling concat`). scikit-learn's
`LogisticRegression()` (defaults, no scaling) is fitted on all 1,000. Head-fit times alternate
the order of the two sides over 3 rounds; median (min-max).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from _common import WORK, machine
from graftkit.tasks import ClassificationTask
from graftkit.training import solver

D = WORK / "probe_study"


def load(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    z = np.load(D / f"{name}.npz")
    return torch.from_numpy(z["x"]), torch.from_numpy(z["y"]).long()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pooling", default="last", choices=("last", "concat"), help="which cached features (--layer-pooling)")
    suffix = "" if (pooling := p.parse_args().pooling) == "last" else f"_{pooling}"
    task = ClassificationTask([str(i) for i in range(10)])
    x, y = load(f"off_train{suffix}")
    xt, yt = load(f"off_test{suffix}")
    g = np.random.default_rng(0)
    held = []
    for c in range(10):
        r = np.flatnonzero(y.numpy() == c)
        g.shuffle(r)
        held += list(r[:20])
    m = np.zeros(len(y), bool)
    m[held] = True
    tr, va = torch.from_numpy(~m), torch.from_numpy(m)
    times: dict[str, list[float]] = {"probe": [], "sklearn": []}
    acc: dict[str, float] = {}
    for r in range(3):
        for side in ("probe", "sklearn") if r % 2 == 0 else ("sklearn", "probe"):
            t = time.perf_counter()
            if side == "probe":
                sol = solver.solve_probe(task, {"train": x[tr], "val": x[va]}, {"train": y[tr], "val": y[va]}, out_features=10, monitor="accuracy")
                times[side].append(time.perf_counter() - t)
                acc[side] = float(((xt @ sol.weight.T + sol.bias).argmax(1) == yt).float().mean())
            else:
                model = LogisticRegression().fit(x.numpy(), y.numpy())
                times[side].append(time.perf_counter() - t)
                acc[side] = float(model.score(xt.numpy(), yt.numpy()))
    print(f"### Probe head on cached features, --layer-pooling {pooling} ({machine()})\n")
    print("| side | test acc (2,000) | head fit s, median (min-max), 3 alternated rounds |\n|---|---|---|")
    for side, label in (("probe", f"graftkit solve_probe (strength {sol.strength:g} by {sol.selection}, refit)"), ("sklearn", "sklearn LogisticRegression()")):
        v = times[side]
        print(f"| {label} | {acc[side]:.4f} | {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f}) |")


if __name__ == "__main__":
    main()
