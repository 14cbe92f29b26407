"""The solved linear probe (L-BFGS, strength chosen on validation, refit) vs the SGD probe and a
default scikit-learn LogisticRegression on the same frozen EfficientNet-Lite0 features.

    .venv/bin/python benchmarks/probe_solver.py    # needs `apt-get install -y dataset-fashion-mnist`

Data not used to tune anything in graftkit/training/solver.py (its grid and thresholds were set on
synthetic blobs in tests/test_solver.py): Fashion-MNIST, 100 training images per class (seeded),
scored on 200 per class of the official test images (2,000, seeded). graftkit sees 80 % of the
training images as train and 20 % as validation (seeded, stratified), then refits on all of them;
scikit-learn's `LogisticRegression()` (defaults, no scaling) is fitted on all 1,000 training
features. Head-fitting times alternate the order of the sides over ROUNDS rounds on cached features.
"""

from __future__ import annotations

import shutil
import statistics
import time

import numpy as np

from _common import WORK, fashion_mnist_folder, machine, report

ROUNDS, SEED = 3, 0


def split_folder() -> "Path":
    train = fashion_mnist_folder("fm-train-100", "train", 100)
    test = fashion_mnist_folder("fm-test-200", "t10k", 200)
    root = WORK / "fm-probe-solver"
    if not root.exists():
        root.mkdir(parents=True)
        (root / "train").symlink_to(train, target_is_directory=True)
        (root / "test").symlink_to(test, target_is_directory=True)
    return root


def graftkit_run(data, out, **kw) -> dict:
    import graftkit

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run = graftkit.fit(data, model="efficientnet_lite0", strategy="linear-probe", seed=SEED, out=out, offline=True, **kw)
    return {"seconds": time.perf_counter() - t0, "test": run.metrics["test"]["accuracy"], "val": run.metrics["val"]["accuracy"],
            "probe": run.metrics.get("probe")}  # fmt: skip


def features(data):
    from graftkit.data import read_dataset
    from graftkit.data.labels import LabelKind
    from graftkit.sources import load_backbone
    from graftkit.training.frozen import labelled_features

    ds = read_dataset(data, modality="image", label_kind=LabelKind.CLASS, seed=SEED)
    backbone = load_backbone("efficientnet_lite0", offline=True)
    classes = sorted({s.label for s in ds.train})
    out = {}
    for split in ("train", "val", "test"):
        f = labelled_features(backbone, list(getattr(ds, split)), classes)
        out[split] = (f.features.astype(np.float32), f.labels)
    return out


def sklearn_default(feats) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([feats["train"][0], feats["val"][0]])
    y = np.concatenate([feats["train"][1], feats["val"][1]])
    t0 = time.perf_counter()
    model = LogisticRegression().fit(x, y)
    return time.perf_counter() - t0, float(model.score(*feats["test"]))


def solver_only(feats) -> tuple[float, float]:
    import torch

    from graftkit.tasks import ClassificationTask
    from graftkit.training.solver import solve_probe

    task = ClassificationTask([str(i) for i in range(10)])
    t = {k: torch.from_numpy(v[0]) for k, v in feats.items()}
    y = {k: torch.from_numpy(v[1]).long() for k, v in feats.items()}
    t0 = time.perf_counter()
    sol = solve_probe(task, {"train": t["train"], "val": t["val"]}, {"train": y["train"], "val": y["val"]}, out_features=10, monitor="accuracy")
    seconds = time.perf_counter() - t0
    return seconds, float(((t["test"] @ sol.weight.T + sol.bias).argmax(1) == y["test"]).float().mean())


def main() -> None:
    data = split_folder()
    solved = graftkit_run(data, WORK / "runs" / "probe-lbfgs")  # computes and caches the features
    sgd = graftkit_run(data, WORK / "runs" / "probe-sgd", probe_solver="sgd")
    no_refit = graftkit_run(data, WORK / "runs" / "probe-norefit", refit=False)
    feats = features(data)
    times = {"solver": [], "sklearn": []}
    acc = {}
    for r in range(ROUNDS):
        order = ("solver", "sklearn") if r % 2 == 0 else ("sklearn", "solver")
        for side in order:
            s, a = solver_only(feats) if side == "solver" else sklearn_default(feats)
            times[side].append(s)
            acc[side] = a
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in times.items()}
    rows = [
        ("graftkit linear-probe (L-BFGS, refit)", f"{solved['test']:.4f}", f"{solved['val']:.4f}", f"{solved['probe']['seconds']:.2f}", f"{solved['seconds']:.0f}"),
        ("graftkit linear-probe --no-refit", f"{no_refit['test']:.4f}", f"{no_refit['val']:.4f}", f"{no_refit['probe']['seconds']:.2f}", f"{no_refit['seconds']:.0f}"),
        ("graftkit --probe-solver sgd (10 epochs)", f"{sgd['test']:.4f}", f"{sgd['val']:.4f}", "-", f"{sgd['seconds']:.0f}"),
        (f"solve_probe on cached features, {ROUNDS} rounds", f"{acc['solver']:.4f}", "-", f"{med['solver']:.2f} ({spread['solver']})", "-"),
        (f"sklearn LogisticRegression() on all 1,000, {ROUNDS} rounds", f"{acc['sklearn']:.4f}", "-", f"{med['sklearn']:.2f} ({spread['sklearn']})", "-"),
    ]
    report("Probe solver vs SGD probe vs default scikit-learn (Fashion-MNIST 100/class, 2,000 official test images)", rows,
           ("side", "test acc", "val acc (held-out)", "head fit s (median, range)", "run s"),
           {"machine": machine(), "chosen strength": solved["probe"]["strength"], "selection": solved["probe"]["selection"]})  # fmt: skip


if __name__ == "__main__":
    main()
