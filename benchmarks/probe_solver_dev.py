"""The probe solver's scaling choice and strength grid, chosen on dev data only (never the test sets of probe_vs_sklearn.py).

    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_solver_dev.py
    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_solver_dev.py --before ec3d2ca   # the baseline revision

Compares two versions of `graftkit.training.solver` on the same resamples: `before`, the module
as it is at a git revision (loaded from `git show REV:src/graftkit/training/solver.py`), and
`after`, the working tree's. The protocol is probe_vs_sklearn.py's (a seeded stratified 20 % of the
train rows held out, `solve_probe(monitor="accuracy", refit=True)`, test accuracy; a default
`LogisticRegression()` on unscaled features beside it), on data disjoint from its test sets:

- `fashion`: Fashion-MNIST *training* images only (a seeded pool of 300 per class, drawn as
  `probe_features.py dev` draws its dev splits), EfficientNet-Lite0 features (1,280) through
  graftkit's feature path; train 10 and 100 per class, test 200 other pool images per class.
- `amazon`: VADER's Amazon product-review snippets (|score| > 0.5, as domain_adaptation.py's
  `_vader`; repeated texts dropped), `minilm` sentence embeddings (384); train 8 and 64 per class,
  test 400 other snippets per class.

Five resamples (seeds 0-4) per data set and shot. Features are cached as
`benchmarks/_work/probe_solver_dev/NAME.npz`; results go to benchmarks/results/probe_solver_dev.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, WORK, machine, markdown_table

OUT = WORK / "probe_solver_dev"
RESULT = ROOT / "benchmarks" / "results" / "probe_solver_dev.json"
SEEDS = (0, 1, 2, 3, 4)
SETTINGS = {  # data set: (backbone, train shots per class, test rows per class)
    "fashion": ("efficientnet_lite0", (10, 100), 200),
    "amazon": ("minilm", (8, 64), 400),
}
POOL_PER_CLASS, POOL_SEED = 300, 1  # probe_features.py dev: seed 1, 300 training images per class


def fashion_samples() -> tuple[list, list[str]]:
    """A seeded pool of Fashion-MNIST training images as JPEG folders (probe_features.py's dev1 images)."""
    from types import SimpleNamespace

    from fashion_mnist import CLASSES, read_split
    from probe_features import folder

    images, labels = read_split("train")
    rng = np.random.default_rng(POOL_SEED)
    pool = [rng.choice(np.flatnonzero(labels == c), POOL_PER_CLASS, replace=False) for c in range(10)]
    parts = {"dev1_train": np.concatenate([p[:100] for p in pool]), "dev1_dev": np.concatenate([p[100:] for p in pool])}
    samples = []
    for name, idx in parts.items():  # the same JPEG folders as probe_features.py's dev1_train / dev1_dev
        root = folder(name, images, labels, idx)
        samples += [SimpleNamespace(path=root / CLASSES[labels[i]] / f"{i:05d}.jpg", label=CLASSES[labels[i]]) for i in idx]
    return samples, list(CLASSES)


def amazon_samples() -> tuple[list, list[str]]:
    from domain_adaptation import _vader, extract_vader

    from graftkit.data.text import TextSample

    rows, seen = [], set()
    for text, label in _vader(extract_vader() / "amazonReviewSnippets_GroundTruth.txt"):
        text = " ".join(text.split())
        if text not in seen:
            seen.add(text)
            rows.append(TextSample(text=text, label=label))
    return rows, ["negative", "positive"]


def features(which: str) -> dict[str, np.ndarray]:
    """x `[N, D]`, y `[N]`, keys `[N]` (what `seeded_split` orders by), computed once."""
    path = OUT / f"{which}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    from graftkit.sources import load_backbone
    from graftkit.training.frozen import labelled_features

    samples, classes = fashion_samples() if which == "fashion" else amazon_samples()
    backbone = load_backbone(SETTINGS[which][0], offline=True)
    t0 = time.perf_counter()
    f = labelled_features(backbone, samples, classes, device="cpu", precision="fp32")
    print(f"{which}: {f.features.shape} features in {time.perf_counter() - t0:.0f} s", flush=True)
    keys = [f"{s.path.parent.name}/{s.path.name}" if which == "fashion" else f"{s.text}\0" for s in samples]
    out = {"x": np.asarray(f.features), "y": np.asarray(f.labels), "keys": np.array(keys), "classes": np.array(classes)}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def solver_at(rev: str):
    """`graftkit.training.solver` as it is at git revision `rev`, as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:src/graftkit/training/solver.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path = OUT / f"solver_{rev}.py"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"solver_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def probe_accuracy(solver, task, x, y, keys, train, test) -> tuple[float, dict]:
    """probe_vs_sklearn's protocol (`solve_as_graft_train`) with a given solver module."""
    from probe_vs_sklearn import solve_as_graft_train

    acc, sol, _ = solve_as_graft_train(solver, task, x, y, keys, train, test)
    scaling = getattr(sol, "scaling", None)  # the baseline solver has one scaling, per-feature
    return acc, {"strength": sol.strength, "scaling": "per-feature" if scaling is None else scaling.value, "seconds": sol.seconds}


def compare(which: str, solvers: dict) -> list[dict]:
    from probe_vs_sklearn import resample, sklearn_accuracy

    from graftkit.tasks import ClassificationTask

    data = features(which)
    x, y, keys = data["x"].astype(np.float32), data["y"].astype(np.int64), data["keys"]
    task = ClassificationTask([str(c) for c in data["classes"]])
    _, shots, test_per_class = SETTINGS[which]
    out = []
    for per_class in shots:
        runs = []
        for seed in SEEDS:
            train, test = resample(y, per_class, test_per_class, seed)
            run = {"seed": seed, "n_train": len(train), "n_test": len(test), "sklearn": sklearn_accuracy(x, y, train, test)[0]}
            for name, module in solvers.items():
                run[name], run[f"{name}_how"] = probe_accuracy(module, task, x, y, keys, train, test)
            runs.append(run)
        d = np.array([r["after"] - r["before"] for r in runs])
        row = {"data": which, "backbone": SETTINGS[which][0], "train_per_class": per_class, "n_test": runs[0]["n_test"],
               **{f"{k}_mean": float(np.mean([r[k] for r in runs])) for k in ("before", "after", "sklearn")},
               "diff_mean": float(d.mean()), "diff_min": float(d.min()), "diff_max": float(d.max()), "after_ge": int((d >= 0).sum()),
               "seeds": len(runs), "runs": runs}  # fmt: skip
        out.append(row)
        how = [(r["after_how"]["scaling"], f"{r['after_how']['strength']:.3g}") for r in runs]
        print(f"{which} {per_class}/class: before {row['before_mean']:.4f}, after {row['after_mean']:.4f} ({row['diff_mean'] * 100:+.2f} pts "
              f"[{row['diff_min'] * 100:+.2f}, {row['diff_max'] * 100:+.2f}]), sklearn {row['sklearn_mean']:.4f}; after chose {how}", flush=True)  # fmt: skip
    return out


def timing(solvers: dict, rounds: int = 5) -> dict:
    """Seconds of the 1,000 x 1,280, 10-class synthetic solve of tests/test_solver.py, per solver,
    alternated over `rounds` rounds on one thread (median, min, max)."""
    from test_solver import blobs, classification

    x, y = blobs(1000, d=1280, c=10, spread=0.15)
    xv, yv = blobs(250, d=1280, c=10, seed=1, spread=0.15)
    task = classification(10)
    seconds = {name: [] for name in solvers}
    for name, module in solvers.items():
        module.fit_head(task, x[:50], y[:50], 10, 1.0)  # first-call set-up is not the solve
    for _ in range(rounds):
        for name, module in solvers.items():
            t = time.perf_counter()
            module.solve_probe(task, {"train": x, "val": xv}, {"train": y, "val": yv}, out_features=10, monitor="accuracy")
            seconds[name].append(time.perf_counter() - t)
    return {name: {"median": float(np.median(s)), "min": float(min(s)), "max": float(max(s)), "all": s} for name, s in seconds.items()}


def table(rows: list[dict]) -> str:
    header = ("data (backbone)", "train / class", "test rows", "before", "after", "after - before, mean [min, max]", "after ≥ before",
              "sklearn LogisticRegression()", "after's choices (scaling, strength)")  # fmt: skip
    return markdown_table(header, [
        (f"{r['data']} ({r['backbone']})", r["train_per_class"], r["n_test"], f"{r['before_mean']:.4f}", f"{r['after_mean']:.4f}",
         f"{r['diff_mean'] * 100:+.2f} [{r['diff_min'] * 100:+.2f}, {r['diff_max'] * 100:+.2f}] pts", f"{r['after_ge']}/{r['seeds']}",
         f"{r['sklearn_mean']:.4f}", ", ".join(f"{h['after_how']['scaling'][0]} {h['after_how']['strength']:.3g}" for h in r["runs"]))
        for r in rows])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), help="which dev data sets")
    p.add_argument("--before", default="ec3d2ca", help="git revision of the baseline solver")
    p.add_argument("--features-only", action="store_true", help="compute and cache the features, solve nothing")
    p.add_argument("--timing-only", action="store_true", help="time the synthetic 1,000 x 1,280 solve, before vs after, and stop")
    args = p.parse_args()
    torch.set_num_threads(1)  # the CPU is shared; features and solves stay on one thread
    os.environ.setdefault("GRAFTKIT_CACHE", str(WORK / "cache" / "probe_solver_dev"))
    if args.features_only:
        for which in args.data:
            features(which)
        return
    from graftkit.training import solver

    sys.path.insert(0, str(ROOT / "tests"))
    solvers = {"before": solver_at(args.before), "after": solver}
    seconds = timing(solvers)
    print("1,000 x 1,280 solve, wall s on one thread: " + ", ".join(f"{k} median {v['median']:.3f} [{v['min']:.3f}, {v['max']:.3f}]" for k, v in seconds.items()), flush=True)
    if args.timing_only:
        return
    rows = [r for which in args.data for r in compare(which, solvers)]
    d = [r["diff_mean"] for r in rows]
    result = {
        "command": "OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_solver_dev.py" + ("" if args.data == list(SETTINGS) else " --data " + " ".join(args.data)),
        "before": args.before, "after": "working tree", "machine": machine(),
        "protocol": "probe_vs_sklearn.py's: seeded_split(0.2, seed 0) of the train rows, solve_probe(monitor='accuracy', refit=True), test accuracy; 5 resamples",
        "mean_diff_over_settings": float(np.mean(d)), "synthetic_solve_seconds": seconds, "table": table(rows), "results": rows,
    }  # fmt: skip
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + result["table"] + f"\n\nmean after - before over settings: {np.mean(d) * 100:+.2f} pts\nwrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
