"""`graft curve`: the transfer report — accuracy vs labels and vs wall time, pretrained vs scratch.

The seed's three claims, measured on the user's own data: transfer needs **less data**, **less
time** and reaches **better accuracy** than training the same architecture from random weights.
For each fraction of the training split (stratified, seeded and nested: a smaller fraction is a
subset of every larger one; at least 2 examples per class), two runs are trained with `fit()`:

- **transfer**: the pretrained model with `strategy` (default `linear-probe`);
- **scratch**: `scratch:MODEL` — the same architecture with random weights — fine-tuned (every
  layer must learn; a probe on random features is no from-scratch baseline) with the same
  epochs, image size and every other setting.

All runs are scored on the same, full validation split (and the test split when there is one).
Runs do not use the feature cache unless `settings` says so, so every wall time is the cost of a
run from nothing.
`OUT/curve.json` holds every point; `OUT/curve.png` plots accuracy against the number of labels
and against wall time; `OUT/report.html` shows both with the table. Every run is a complete run
directory under `OUT/runs/`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

CURVE_JSON = "curve.json"
CURVE_PNG = "curve.png"
REPORT_HTML = "report.html"


@dataclass
class CurveResult:
    """Every (fraction, kind) point of the curve."""

    model: str
    strategy: str
    points: list[dict[str, Any]] = field(default_factory=list)
    """`{"fraction", "labels", "kind": "transfer" | "scratch", "val_accuracy", "test_accuracy", "train_seconds", "run_dir"}`."""
    settings: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "strategy": self.strategy, "settings": self.settings, "summary": self.summary, "points": self.points}


def curve(
    data: str | Path,
    *,
    model: str = "efficientnet_lite0",
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
    out: str | Path = "runs/curve",
    strategy: str = "linear-probe",
    epochs: int = 10,
    scratch: bool = True,
    seed: int = 0,
    overwrite: bool = False,
    settings: dict[str, Any] | None = None,
) -> CurveResult:
    """Train on growing fractions of the labels, pretrained and from scratch, and plot both.

    Args:
        data: Classification data, as for `graft train`.
        model: The pretrained model id (its `scratch:` twin is the baseline).
        fractions: Fractions of the training split, each in (0, 1].
        out: Output folder.
        strategy: Strategy of the transfer runs.
        epochs: Epochs of every run (transfer and scratch alike).
        scratch: Also train the from-scratch baseline.
        seed: Seeds the subsets and every run.
        overwrite: Replace an existing `out`.
        settings: Fixed `TrainConfig` settings for every run (`image_size`, `batch_size`, ...).

    Returns:
        A `CurveResult`.

    Raises:
        ConfigError: Bad fractions, or `out` exists without `overwrite`.

    Example:
        >>> r = curve("data/", model="efficientnet_lite0", fractions=[0.1, 0.5, 1], out="runs/curve")
    """

    from graftkit.errors import ConfigError
    from graftkit.selection._output import fresh_out_dir
    from graftkit.sources import resolve
    from graftkit.training.config import TrainConfig
    from graftkit.training.fit import fit
    from graftkit.training.plan import read_data_for
    from graftkit.engine.progress import info

    settings = dict(settings or {})
    # Cold features in every run: the wall times are what a run costs from nothing (a warm cache
    # would make later transfer runs look faster than they are).
    settings.setdefault("feature_cache", False)
    fractions = sorted(set(float(f) for f in fractions))
    problems = []
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        problems.append(f"--fractions must be in (0, 1], got {fractions}")
    clash = sorted({"strategy", "epochs", "seed", "model"} & set(settings))
    if clash:
        problems.append(f"{', '.join(clash)} are set by curve itself; drop them from the fixed settings")
    if model.startswith("scratch:"):
        problems.append(f"--model {model} is already random-init; give the pretrained id (its scratch: twin is the baseline)")
    if problems:
        raise ConfigError("invalid curve settings:\n" + "\n".join(f"  - {p}" for p in problems))
    out = fresh_out_dir(out, overwrite)

    modality = resolve(model, settings.get("arch")).modality
    cfg = TrainConfig.from_settings(model=model, seed=seed, **settings)
    dataset = read_data_for(cfg, data, modality)
    if not dataset.classes:
        raise ConfigError(f"graft curve needs classification data; {data} has no class labels")
    result = CurveResult(model, strategy, settings={"epochs": epochs, "seed": seed, "fractions": fractions, **settings})
    subsets = nested_subsets(dataset.train, fractions, seed)
    # A file: model's twin is its --arch with random weights (the arch setting is for file: ids only).
    scratch_id = f"scratch:{settings['arch']}" if model.startswith("file:") and settings.get("arch") else f"scratch:{model}"
    scratch_settings = {k: v for k, v in settings.items() if k != "arch"}
    kinds = [("transfer", model, strategy, settings)] + ([("scratch", scratch_id, "finetune", scratch_settings)] if scratch else [])
    for fraction, subset in zip(fractions, subsets):
        source = _write_subset(out / "data" / f"fraction-{fraction:g}", subset, dataset, modality)
        for kind, model_id, strat, kw in kinds:
            info(f"curve: {kind} with {len(subset)} labels ({fraction:.0%})")
            run_dir = out / "runs" / f"{kind}-{fraction:g}"
            t0 = time.perf_counter()
            run = fit(source, model=model_id, strategy=strat, out=run_dir, epochs=epochs, seed=seed, **kw)
            result.points.append({
                "fraction": fraction,
                "labels": len(subset),
                "kind": kind,
                "model": model_id,
                "strategy": strat,
                "val_accuracy": run.metrics["val"]["accuracy"],
                "test_accuracy": run.metrics.get("test", {}).get("accuracy"),
                "train_seconds": run.metrics["train_seconds"],
                "wall_seconds": round(time.perf_counter() - t0, 2),
                "run_dir": str(run_dir),
            })  # fmt: skip
    result.summary = _summary(result)
    result.out = write_curve(result, out)
    return result


def nested_subsets(samples: Sequence[Any], fractions: Sequence[float], seed: int) -> list[list[Any]]:
    """Stratified, seeded subsets, one per fraction (ascending), each contained in the next.

    Each class keeps `ceil(n × fraction)` of its n samples, at least 2 (fewer only if it has fewer).

    Example:
        >>> [len(s) for s in nested_subsets(data.train, [0.1, 0.5, 1.0], seed=0)]
        [80, 400, 800]
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Any]] = {}
    for s in samples:
        by_class.setdefault(str(s.label), []).append(s)
    order = {label: [members[i] for i in rng.permutation(len(members))] for label, members in sorted(by_class.items())}
    out = []
    for fraction in sorted(fractions):
        subset = []
        for members in order.values():
            k = min(len(members), max(2, math.ceil(len(members) * fraction)))
            subset.extend(members[:k])
        out.append(subset)
    return out


def _write_subset(folder: Path, train: list[Any], dataset: Any, modality: str) -> Path:
    """The subset as data `fit()` reads: an image manifest with a split column, or text split files."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = [("train", train), ("val", dataset.val), ("test", dataset.test)]
    if modality == "text":
        for name, samples in splits:
            if samples:
                with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    w.writerow(["text", "label"])
                    w.writerows([s.text, s.label] for s in samples)
        return folder
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for name, samples in splits:
            w.writerows([str(Path(s.path).absolute()), s.label, name] for s in samples)
    return manifest


def _summary(result: CurveResult) -> list[str]:
    """The seed's claims, in numbers: accuracy gap at each size, labels and time to match scratch."""
    transfer = sorted((p for p in result.points if p["kind"] == "transfer"), key=lambda p: p["labels"])
    scratch = sorted((p for p in result.points if p["kind"] == "scratch"), key=lambda p: p["labels"])
    if not transfer or not scratch:
        return []
    lines = []
    best_scratch = max(scratch, key=lambda p: p["val_accuracy"])
    full_t, full_s = transfer[-1], scratch[-1]
    lines.append(
        f"Better accuracy: with all {full_t['labels']} labels, transfer reaches {full_t['val_accuracy']:.3f} "
        f"vs {full_s['val_accuracy']:.3f} from scratch ({full_t['val_accuracy'] - full_s['val_accuracy']:+.3f})."
    )
    match = next((p for p in transfer if p["val_accuracy"] >= best_scratch["val_accuracy"]), None)
    if match is not None:
        lines.append(
            f"Less data: transfer with {match['labels']} labels ({match['fraction']:.0%}) matches or beats the best "
            f"from-scratch run ({best_scratch['val_accuracy']:.3f} with {best_scratch['labels']} labels)."
        )
    else:
        lines.append(f"Less data: no transfer run reached the best from-scratch accuracy ({best_scratch['val_accuracy']:.3f}).")
    lines.append(
        f"Less time: the full-data transfer run took {full_t['train_seconds']:.0f} s, "
        f"the from-scratch run {full_s['train_seconds']:.0f} s."
    )
    return lines


def write_curve(result: CurveResult, out: str | Path) -> Path:
    """Write `curve.json`, `curve.png` and `report.html` into `out`; return the folder."""
    from html import escape

    from graftkit.selection._report import img, new_figure, save_figure, table_html, write_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CURVE_JSON).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    fig, (ax_n, ax_t) = new_figure(10.0, 3.8, ncols=2)
    styles = {"transfer": ("tab:blue", f"pretrained ({result.strategy})"), "scratch": ("tab:red", "random init (finetune)")}
    for kind, (colour, label) in styles.items():
        pts = sorted((p for p in result.points if p["kind"] == kind), key=lambda p: p["labels"])
        if not pts:
            continue
        acc = [p["val_accuracy"] for p in pts]
        ax_n.plot([p["labels"] for p in pts], acc, marker="o", color=colour, label=label)
        ax_t.plot([p["train_seconds"] for p in pts], acc, marker="o", color=colour, label=label)
        for p in pts:
            ax_t.annotate(str(p["labels"]), (p["train_seconds"], p["val_accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    labels = sorted({p["labels"] for p in result.points})
    ax_n.set_xscale("log")
    ax_n.set_xticks(labels, labels=[str(n) for n in labels])
    ax_t.set_xscale("log")
    ax_t.xaxis.set_major_formatter(ScalarFormatter())
    for ax, xlabel in ((ax_n, "labelled training examples"), (ax_t, "training wall time (s)")):
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax_n.set_title("accuracy vs labels")
    ax_t.set_title("accuracy vs wall time (points: labels)")
    save_figure(fig, out / CURVE_PNG)
    rows = [[p["kind"], p["labels"], f"{p['fraction']:.0%}", p["val_accuracy"], p["test_accuracy"], p["train_seconds"], p["run_dir"]] for p in result.points]
    sections = []
    if result.summary:
        sections += ["<h2>Summary</h2>", "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in result.summary) + "</ul>"]
    sections += [
        "<h2>Learning curves</h2>",
        img(CURVE_PNG, "accuracy vs labels and vs wall time"),
        "<h2>Runs</h2>",
        table_html(["kind", "labels", "fraction", "val accuracy", "test accuracy", "train s", "run directory"], rows),
        f'<p class="meta">Transfer: {escape(result.model)} with {escape(result.strategy)}. Scratch: the same '
        f"architecture with random weights, fine-tuned with the same settings: {escape(json.dumps(result.settings))}.</p>",
    ]
    write_page(out / REPORT_HTML, f"graft curve · {result.model}", sections)
    return out
