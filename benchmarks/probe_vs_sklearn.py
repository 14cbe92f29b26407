"""graftkit's solved linear probe vs a default scikit-learn `LogisticRegression` on data never tuned on (issue 10, req. 1).

    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_vs_sklearn.py
    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_vs_sklearn.py --data digits movies   # a subset
    OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_vs_sklearn.py --precision auto   # -> probe_vs_sklearn_auto.json

The probe's choices (strength grid, patience, k-fold threshold, tolerances) were studied on
Fashion-MNIST only; none of the data here was looked at while making them. Frozen pretrained
features, computed once per data set through graftkit's own feature path (`labelled_features`:
the backbone's preprocess, the engine and cache `graft train` uses, on the CPU, fp32 unless
`--precision auto`, which is bf16 on a CPU with native bf16, as `graft train` picks there) and
cached as `benchmarks/_work/probe_vs_sklearn/NAME[_auto].npz`:

- `digits`: scikit-learn's `load_digits` (1,797 8x8 images, 0-16 scaled to 0-255), upscaled with
  PIL (bicubic, 256 px, grey -> RGB) and written as PNG, EfficientNet-Lite0 features (1,280);
  train 10 and 50 per class, test all the other images.
- `movies`: VADER movie-review snippets (rated 0 and repeated texts dropped, sign = label),
  `minilm` sentence embeddings (384, mean-pooled as the text linear probe computes them);
  train 8, 64 and 256 per class, test 500 other snippets per class.
- `tweets`: VADER tweets, same rule and backbone, same shots and test size.

Per data set, shot and seed (0-4) a stratified train / test resample, disjoint. Both sides see the
same train rows:

- graftkit: as `graft train --head linear-probe` with no val split given: a seeded stratified 20 %
  of the train rows held out (`core.seeded_split`, `--val-fraction 0.2 --seed 0`), then
  `solve_probe(..., monitor="accuracy", refit=True, seed=0)` (k-fold below 200 val rows, refit on
  all train rows; since the solver chooses its feature scaling too, each run records it);
- scikit-learn: `LogisticRegression()` with its defaults, fitted on all train rows, unscaled
  features (as benchmarks/probe_head_timing.py).

Scored by accuracy on the test rows. Reported per data set and shot: both means, the mean paired
difference (graftkit - sklearn) with its min-max over seeds, how many seeds graftkit >= sklearn,
and the binomial standard error of one test set. Accuracy only: no timings (shared CPU).

A diagnosis rides along (the `diagnosis` of each row; it chooses nothing and changes no default):
graftkit's `fit_head` on all train rows at every strength of its grid, scored on the test rows
(the best of these is an upper bound for any strength selection on standardised features), and
`LogisticRegression()` on standardised features: together they say whether a gap comes from the
choice of strength or from the standardisation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, WORK, machine, markdown_table

OUT = WORK / "probe_vs_sklearn"
RESULT = ROOT / "benchmarks" / "results" / "probe_vs_sklearn.json"
SEEDS = (0, 1, 2, 3, 4)
VAL_FRACTION, SPLIT_SEED = 0.2, 0  # graft train's --val-fraction and --seed defaults
SETTINGS = {  # data set: (backbone, train shots per class, test rows per class or None for all the rest)
    "digits": ("efficientnet_lite0", (10, 50), None),
    "movies": ("minilm", (8, 64, 256), 500),
    "tweets": ("minilm", (8, 64, 256), 500),
}
CLASSES = {"digits": [str(d) for d in range(10)], "movies": ["negative", "positive"], "tweets": ["negative", "positive"]}


# --- Data: samples graftkit's readers would make --------------------------------------------------


def digit_samples() -> list:
    """`load_digits` as upscaled RGB PNGs under benchmarks/_work/probe_vs_sklearn/digits/<class>/, one `Sample` each."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from graftkit.data.readers import Sample

    digits = load_digits()
    root = OUT / "digits"
    samples = []
    for i, (img, label) in enumerate(zip(digits.images, digits.target)):
        path = root / str(label) / f"{i:04d}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            grey = Image.fromarray(np.round(img * 255 / 16).astype(np.uint8), mode="L")
            grey.resize((256, 256), Image.BICUBIC).convert("RGB").save(path)
        samples.append(Sample(path=path, label=str(label)))
    return samples


def _vader_rows(name: str) -> list[tuple[str, str]]:
    """(text, `positive`|`negative`) of a VADER ground-truth file: rated 0 and repeated texts dropped."""
    import io
    import tarfile

    from vader import INNER, _decode, download_sdist

    with tarfile.open(download_sdist(WORK / "vader")) as outer:
        inner = outer.extractfile(INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as t:
        raw = t.extractfile(f"hutto_ICWSM_2014/{name}_GroundTruth.txt").read()
    rows, seen = [], set()
    for line in raw.splitlines():
        if not line.strip():
            continue
        _, score, *text = _decode(line).split("\t")
        text = " ".join(" ".join(text).split())  # runs of spaces → one, as scripts/vader.py
        if float(score) != 0 and text and text not in seen:
            seen.add(text)
            rows.append((text, "positive" if float(score) > 0 else "negative"))
    return rows


def text_samples(which: str) -> list:
    from graftkit.data.text import TextSample

    name = {"movies": "movieReviewSnippets", "tweets": "tweets"}[which]
    return [TextSample(text=t, label=lab) for t, lab in _vader_rows(name)]


def content_key(which: str, sample) -> str:
    """What `core.seeded_split` orders a sample by in graftkit's readers: the path under the data
    root for images, the text (and empty target) for texts."""
    if which == "digits":
        return f"{sample.path.parent.name}/{sample.path.name}"
    return f"{sample.text}\0"


def features(which: str, precision: str = "fp32") -> dict[str, np.ndarray]:
    """x `[N, D]`, y `[N]`, keys `[N]` of a data set, computed once through graftkit's feature path."""
    path = OUT / f"{which}{'' if precision == 'fp32' else '_' + precision}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    from graftkit.sources import load_backbone
    from graftkit.training.frozen import labelled_features

    samples = digit_samples() if which == "digits" else text_samples(which)
    backbone = load_backbone(SETTINGS[which][0], offline=True)
    t0 = time.perf_counter()
    f = labelled_features(backbone, samples, CLASSES[which], device="cpu", precision=precision)
    print(f"{which}: {f.features.shape} features in {time.perf_counter() - t0:.0f} s ({f.computed} computed, {f.cached} cached)", flush=True)
    out = {"x": f.features, "y": f.labels, "keys": np.array([content_key(which, s) for s in samples])}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


# --- One resample, both sides -----------------------------------------------------------------------


def resample(y: np.ndarray, per_class: int, test_per_class: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, disjoint train / test row indices: `per_class` train rows of each class, then
    `test_per_class` of the others (None: all the others)."""
    g = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        rows = g.permutation(np.flatnonzero(y == c))
        train.append(rows[:per_class])
        test.append(rows[per_class:] if test_per_class is None else rows[per_class : per_class + test_per_class])
        if test_per_class is not None and len(test[-1]) < test_per_class:
            raise ValueError(f"class {c}: {len(rows)} rows, fewer than {per_class} + {test_per_class}")
    return g.permutation(np.concatenate(train)), np.concatenate(test)


def solve_as_graft_train(solver, task, x, y, keys, train, test) -> tuple[float, object, int]:
    """The linear probe as `graft train` runs it on a train split alone (seeded 20 % held out, solve,
    refit on all) with the `solver` module: test accuracy, the solution, the held-out row count."""
    from types import SimpleNamespace

    from graftkit.data.core import LabelKind, seeded_split

    rows = [SimpleNamespace(i=int(i), label=str(y[i]), key=str(keys[i])) for i in train]
    fit, held = seeded_split(rows, VAL_FRACTION, SPLIT_SEED, kind=LabelKind.CLASS, content=lambda r: r.key)
    fit_i, val_i = np.array([r.i for r in fit]), np.array([r.i for r in held])
    t = torch.from_numpy
    sol = solver.solve_probe(task, {"train": t(x[fit_i]), "val": t(x[val_i])}, {"train": t(y[fit_i]), "val": t(y[val_i])},
                             out_features=len(task.classes), monitor=task.default_monitor, refit=True, seed=SPLIT_SEED)  # fmt: skip
    pred = (t(x[test]) @ sol.weight.T + sol.bias).argmax(1).numpy()
    return float((pred == y[test]).mean()), sol, len(val_i)


def graftkit_accuracy(task, x, y, keys, train, test) -> tuple[float, dict]:
    """graftkit's side: `solve_as_graft_train` with the library's solver, and how it chose."""
    from graftkit.training import solver

    acc, sol, val_rows = solve_as_graft_train(solver, task, x, y, keys, train, test)
    return acc, {"strength": sol.strength, "scaling": sol.scaling.value, "selection": sol.selection, "val_rows": val_rows}


def sklearn_accuracy(x, y, train, test) -> tuple[float, int]:
    """Default `LogisticRegression()` on all train rows, unscaled; also how many ConvergenceWarnings it raised."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression().fit(x[train], y[train])
    return float(model.score(x[test], y[test])), sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def diagnose(task, x, y, train, test) -> dict:
    """Test accuracy of graftkit's standardised fit at each fixed grid strength (all train rows), and of
    `LogisticRegression()` on standardised features. Diagnostic only: nothing is chosen from it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from graftkit.training import solver

    t = lambda a: torch.from_numpy(a)
    fixed = {}
    for strength in solver.STRENGTHS:
        w, b = solver.fit_head(task, t(x[train]), t(y[train]), len(task.classes), strength)
        fixed[f"{strength:.3g}"] = float(((t(x[test]) @ w.T + b).argmax(1).numpy() == y[test]).mean())
    scaler = StandardScaler().fit(x[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        std = LogisticRegression().fit(scaler.transform(x[train]), y[train]).score(scaler.transform(x[test]), y[test])
    return {"graftkit_fixed_strength": fixed, "graftkit_best_fixed": max(fixed.values()), "sklearn_standardised": float(std)}


def compare(which: str, precision: str) -> list[dict]:
    from graftkit.tasks import ClassificationTask

    data = features(which, precision)
    x, y, keys = data["x"].astype(np.float32), data["y"].astype(np.int64), data["keys"]
    task = ClassificationTask(CLASSES[which])
    _, shots, test_per_class = SETTINGS[which]
    out = []
    for per_class in shots:
        runs = []
        for seed in SEEDS:
            train, test = resample(y, per_class, test_per_class, seed)
            g, how = graftkit_accuracy(task, x, y, keys, train, test)
            s, warned = sklearn_accuracy(x, y, train, test)
            runs.append({"seed": seed, "graftkit": g, "sklearn": s, "diff": g - s, "n_train": len(train), "n_test": len(test),
                         "sklearn_convergence_warnings": warned, **how, "diagnosis": diagnose(task, x, y, train, test)})  # fmt: skip
        out.append(summarise(which, per_class, runs))
        r = out[-1]
        print(f"{which} {per_class}/class: graftkit {r['graftkit_mean']:.4f}, sklearn {r['sklearn_mean']:.4f}, "
              f"diff {r['diff_mean']:+.4f} [{r['diff_min']:+.4f}, {r['diff_max']:+.4f}], graftkit >= sklearn {r['graftkit_ge']}/{len(runs)}", flush=True)  # fmt: skip
    return out


def summarise(which: str, per_class: int, runs: list[dict]) -> dict:
    d = np.array([r["diff"] for r in runs])
    g, s = np.mean([r["graftkit"] for r in runs]), np.mean([r["sklearn"] for r in runs])
    n_test = runs[0]["n_test"]
    se = float(np.sqrt(s * (1 - s) / n_test))  # binomial SE of one test-set accuracy at sklearn's level
    diag = {k: float(np.mean([r["diagnosis"][k] for r in runs])) for k in ("graftkit_best_fixed", "sklearn_standardised")}
    return {
        "data": which, "backbone": SETTINGS[which][0], "train_per_class": per_class, "n_train": runs[0]["n_train"], "n_test": n_test,
        "graftkit_mean": float(g), "sklearn_mean": float(s), "diff_mean": float(d.mean()), "diff_min": float(d.min()), "diff_max": float(d.max()),
        "graftkit_ge": int((d >= 0).sum()), "seeds": len(runs), "binomial_se": se,
        "diff_mean_in_test_images": float(d.mean() * n_test), "diff_se_over_seeds": float(d.std(ddof=1) / np.sqrt(len(d))),
        "diagnosis_means": diag, "runs": runs,
    }  # fmt: skip


def verdict(rows: list[dict]) -> str:
    behind = [r for r in rows if r["diff_mean"] < 0]
    if not behind:
        return f"graftkit >= sklearn on the mean of every one of the {len(rows)} data set x shot settings (5 paired seeds each)"
    parts = []
    for r in behind:
        inside = abs(r["diff_mean"]) <= r["binomial_se"]
        parts.append(f"{r['data']} {r['train_per_class']}/class by {-r['diff_mean'] * 100:.2f} points ({-r['diff_mean_in_test_images']:.1f} of "
                     f"{r['n_test']} test rows; {'inside' if inside else 'outside'} one binomial SE {r['binomial_se'] * 100:.2f}; "
                     f"graftkit >= sklearn on {r['graftkit_ge']}/{r['seeds']} seeds)")  # fmt: skip
    return f"graftkit >= sklearn on the mean of {len(rows) - len(behind)} of {len(rows)} settings; behind on " + "; ".join(parts)


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor()


def table(rows: list[dict]) -> str:
    header = ("data (backbone)", "train / class", "test rows", "graftkit solve_probe", "sklearn LogisticRegression()", "diff, mean [min, max]",
              "graftkit ≥ sklearn", "1 binomial SE", "SE of mean diff")  # fmt: skip
    return markdown_table(header, [
        (f"{r['data']} ({r['backbone']})", r["train_per_class"], r["n_test"], f"{r['graftkit_mean']:.4f}", f"{r['sklearn_mean']:.4f}",
         f"{r['diff_mean'] * 100:+.2f} [{r['diff_min'] * 100:+.2f}, {r['diff_max'] * 100:+.2f}] pts", f"{r['graftkit_ge']}/{r['seeds']}",
         f"{r['binomial_se'] * 100:.2f} pts", f"{r['diff_se_over_seeds'] * 100:.2f} pts")
        for r in rows])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), help="which data sets")
    p.add_argument("--precision", default="fp32", choices=("fp32", "auto"), help="feature precision (auto: as graft train on this machine)")
    args = p.parse_args()
    torch.set_num_threads(1)  # the CPU is shared; features and solves stay on one thread
    os.environ.setdefault("GRAFTKIT_CACHE", str(WORK / "cache" / "probe_vs_sklearn"))
    rows = [r for which in args.data for r in compare(which, args.precision)]
    result = {
        "command": "OMP_NUM_THREADS=1 PYTHONPATH=src:scripts:benchmarks python benchmarks/probe_vs_sklearn.py" + ("" if args.data == list(SETTINGS) else " --data " + " ".join(args.data)) + ("" if args.precision == "fp32" else f" --precision {args.precision}"),
        "feature_precision": args.precision,
        "machine": machine(), "cpu_model": lscpu_model(),
        "protocol": {"seeds": list(SEEDS), "graftkit": f"seeded_split(val_fraction={VAL_FRACTION}, seed={SPLIT_SEED}) of the train rows, solve_probe(monitor='accuracy', refit=True)",
                     "sklearn": "LogisticRegression() defaults on all train rows, unscaled", "metric": "test accuracy"},
        "verdict": verdict(rows), "table": table(rows), "results": rows,
    }  # fmt: skip
    out = RESULT if args.precision == "fp32" else RESULT.with_name(f"{RESULT.stem}_{args.precision}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + result["table"] + "\n\n" + result["verdict"] + f"\n\n{result['cpu_model']}; {result['machine']}\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
