"""`graft rank`: which pretrained backbone transfers best to this data, measured in minutes.

For every candidate the frozen features of the labelled data are computed once (through the
feature cache `graft train` uses, so the probe that follows reads them back), then every score of
`selection.transferability` is computed from them: LogME, H-score, NCE and LEEP (from the
backbone's original classifier, where it has one) and a k-fold linear-probe accuracy. Models
whose weights are not on this machine are listed as skipped with the command that fetches them.

Ranking rule: by the k-fold probe accuracy (`by="probe_accuracy"`, the default) — a direct,
cross-validated measurement of how well a linear head on these features does on this data.
LogME (`by="logme"`) needs no training at all and is what the literature found to predict
*fine-tuned* accuracy across backbones best; the recommendation says when the two disagree.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from graftkit.errors import ConfigError, UnknownModelError, WeightsNotAvailableError

SCORES = ("probe_accuracy", "logme", "h_score", "leep", "nce")
"""Scores computed per model; `rank(by=...)` takes any of them (higher is better for all)."""

_SHORT = {"probe_accuracy": "probe acc", "logme": "LogME", "h_score": "H-score", "leep": "LEEP", "nce": "NCE"}

RANKING_JSON = "ranking.json"
RANKING_PNG = "ranking.png"
REPORT_HTML = "report.html"


@dataclass
class ModelRank:
    """One candidate backbone: its scores, or why it was skipped."""

    model: str
    """The model id as given."""
    status: str = "ok"
    """`ok` or `skipped`."""
    reason: str = ""
    """Why it was skipped (with the `graft pull` command where weights are missing)."""
    arch: str | None = None
    params: int | None = None
    num_features: int | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    """`probe_accuracy`, `logme`, `h_score`, `leep`, `nce` (None where not computable)."""
    notes: list[str] = field(default_factory=list)
    """Why a score is missing (e.g. no source classifier for NCE/LEEP)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """`load`, `features`, `scores`, `total`."""
    features: dict[str, int] = field(default_factory=dict)
    """How many feature vectors were `computed` vs read from the cache (`cached`)."""


@dataclass
class Ranking:
    """The result of `rank`: candidates best first (skipped ones last) and the recommendation."""

    by: str
    models: list[ModelRank]
    recommendation: str
    data: dict[str, Any]
    out: Path | None = None

    @property
    def best(self) -> ModelRank | None:
        """The top-ranked model that was scored, or None when every candidate was skipped."""
        return next((m for m in self.models if m.status == "ok"), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "best": self.best.model if self.best else None,
            "recommendation": self.recommendation,
            "data": self.data,
            "models": [asdict(m) for m in self.models],
        }


def rank(
    data: str | Path,
    models: Sequence[str],
    *,
    out: str | Path | None = None,
    by: str = "probe_accuracy",
    folds: int = 5,
    max_per_class: int | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    offline: bool = False,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    channels_last: bool | None = None,
) -> Ranking:
    """Rank pretrained backbones by how well their frozen features suit the labelled data.

    Uses every labelled sample except a `test` split (train + val of a split folder, or all of a
    class folder), each backbone's features computed once through the feature cache.

    Args:
        data: Image folder or manifest (as for `graft train`).
        models: Model ids to compare, e.g. `["efficientnet_lite0", "scratch:efficientnet_lite0"]`.
        out: Folder for `ranking.json`, `ranking.png` and `report.html` (None: write nothing).
        by: The score that orders the table: one of `SCORES`.
        folds: Folds of the cross-validated linear probe.
        max_per_class: Use at most this many samples per class (seeded choice), for speed.
        image_size: Input size in pixels for every image model (None: each model's own).
        batch_size: Images per forward pass.
        num_workers: Loader worker processes (None: from the CPU count).
        offline: Never touch the network; models without local weights are skipped.
        seed: Seeds the subsample, the folds and random-init (`scratch:`) weights.
        device: Where features are computed: `auto`, `cpu` or `cuda[:N]`.
        precision: Precision of the features, as `graft train --precision` (`auto`: chosen per
            model and device, so the feature cache is shared with training).
        channels_last: Memory format for CNNs, as `graft train --channels-last` (None: per model).

    Returns:
        A `Ranking`: models best first, skipped ones last, and a one-line recommendation.

    Raises:
        UnknownModelError: An id is unknown (all unknown ids are listed, with close matches).
        ConfigError: `by` or `folds` is invalid, or no models were given.
        DataError: The data has problems (all listed).

    Example:
        >>> r = rank("data/", ["efficientnet_lite0", "efficientnet_lite2", "timm:resnet50"], out="runs/rank")
        >>> r.best.model, r.recommendation
    """
    from graftkit.sources.ids import resolve
    from graftkit.training.config import TrainConfig
    from graftkit.training.plan import read_data_for

    problems = []
    if by not in SCORES:
        problems.append(f"--by {by!r} is not one of {', '.join(SCORES)}")
    if folds < 2:
        problems.append(f"--folds must be at least 2, got {folds}")
    if not models:
        problems.append("no models given: pass --models ID,ID,...")
    if max_per_class is not None and max_per_class < 2:
        problems.append(f"--max-per-class must be at least 2, got {max_per_class}")
    unknown, modalities = [], {}
    for model_id in models:
        try:
            modalities[model_id] = resolve(model_id).modality
        except UnknownModelError as e:
            unknown.append(str(e))
    if len(set(modalities.values())) > 1:
        problems.append(
            "the models mix modalities (" + ", ".join(f"{m}: {k}" for m, k in modalities.items()) + "): rank image models on images, text models on text"
        )
    if problems:
        raise ConfigError("invalid ranking settings:\n" + "\n".join(f"  - {p}" for p in problems))
    if unknown:
        raise UnknownModelError("\n".join(unknown))

    modality = modalities[models[0]]
    base = TrainConfig.from_settings(model=models[0], seed=seed, offline=offline, image_size=image_size if modality == "image" else None,
                                     batch_size=batch_size, num_workers=num_workers, device=device, precision=precision,
                                     channels_last=channels_last)  # fmt: skip
    dataset = read_data_for(base, data, modality)
    if not dataset.classes:
        raise ConfigError(f"graft rank scores classification data; {data} has no class labels")
    pool = _subsample([*dataset.train, *dataset.val], max_per_class, seed)
    summary = {
        "root": dataset.to_dict()["root"],
        "modality": modality,
        "classes": list(dataset.classes),
        "samples": len(pool),
        "per_class": {c: sum(s.label == c for s in pool) for c in dataset.classes},
        "max_per_class": max_per_class,
    }
    rows = [_score_model(m, pool, dataset.classes, base, modality, folds=folds) for m in models]
    ok = sorted((r for r in rows if r.status == "ok"), key=lambda r: _sort_key(r, by))
    ranking = Ranking(by, ok + [r for r in rows if r.status != "ok"], "", summary)
    ranking.recommendation = _recommendation(ranking)
    if out is not None:
        ranking.out = write_ranking(ranking, out)
    return ranking


def _subsample(samples: list, max_per_class: int | None, seed: int) -> list:
    if max_per_class is None:
        return samples
    rng = np.random.default_rng(seed)
    by_class: dict[str, list] = {}
    for s in sorted(samples, key=lambda s: str(getattr(s, "path", None) or s.text)):
        by_class.setdefault(s.label, []).append(s)
    out = []
    for label in sorted(by_class):
        members = by_class[label]
        keep = rng.permutation(len(members))[:max_per_class]
        out.extend(members[i] for i in sorted(keep))
    return out


def _score_model(model_id: str, samples: list, classes: list[str], base: Any, modality: str, *, folds: int) -> ModelRank:
    import dataclasses

    import torch

    from graftkit.selection import transferability as T
    from graftkit.training.plan import load_backbone_for
    from graftkit.selection._source import source_classifier
    from graftkit.training.frozen import labelled_features
    from graftkit.engine.progress import info

    row = ModelRank(model_id)
    t0 = time.perf_counter()
    try:
        backbone = load_backbone_for(dataclasses.replace(base, model=model_id), modality)
    except WeightsNotAvailableError as e:
        row.status, row.reason = "skipped", f"weights not on this machine: run `graft pull {model_id}`"
        row.notes.append(str(e))
        info(f"{model_id}: skipped ({row.reason})")
        return row
    row.arch, row.num_features = backbone.weights.arch, backbone.num_features
    row.params = sum(p.numel() for p in backbone.parameters())
    t_load = time.perf_counter() - t0

    feats = labelled_features(backbone, samples, classes, batch_size=base.batch_size, num_workers=base.num_workers, device=base.device,
                              precision=base.precision, channels_last=base.channels_last)  # fmt: skip
    row.features = {"computed": feats.computed, "cached": feats.cached}
    t1 = time.perf_counter()
    f, y = feats.features, feats.labels
    row.scores["probe_accuracy"] = T.kfold_probe_accuracy(f, y, folds=folds, seed=base.seed)
    row.scores["logme"] = T.logme(f, y)
    row.scores["h_score"] = T.h_score(f, y)
    linear, why = source_classifier(backbone)
    if linear is None:
        row.scores["leep"] = row.scores["nce"] = None
        row.notes.append(f"NCE/LEEP skipped: {why}")
    else:
        with torch.no_grad():
            probs = torch.softmax(linear(torch.from_numpy(f)).double(), dim=1).numpy()  # (N, Z) source classes
        row.scores["leep"] = T.leep(probs, y)
        row.scores["nce"] = T.nce(probs, y)
    t_end = time.perf_counter()
    row.seconds = {
        "load": round(t_load, 2),
        "features": round(t1 - t0 - t_load, 2),
        "scores": round(t_end - t1, 2),
        "total": round(t_end - t0, 2),
    }
    info(
        f"{model_id}: probe {row.scores['probe_accuracy']:.3f}, LogME {row.scores['logme']:.3f} "
        f"({row.seconds['total']:.1f} s; {feats.computed} features computed, {feats.cached} cached)"
    )
    return row


def _sort_key(row: ModelRank, by: str) -> tuple:
    value = row.scores.get(by)
    # Models without the score (no source classifier) go after those with it; ties by LogME.
    return (value is None, -(value or 0.0), -(row.scores.get("logme") or 0.0))


def _recommendation(ranking: Ranking) -> str:
    ok = [m for m in ranking.models if m.status == "ok"]
    if not ok:
        return "no model could be scored: every candidate was skipped (see the reasons)"
    best, by = ok[0], ranking.by
    text = f"{best.model}: best {by} ({fmt_score(best.scores.get(by))})"
    if len(ok) > 1 and ok[1].scores.get(by) is not None and best.scores.get(by) is not None:
        gap = best.scores[by] - ok[1].scores[by]
        text += f", {gap:+.3f} over {ok[1].model}" if gap > 0 else f", tied with {ok[1].model} (LogME breaks the tie)"
    by_logme = max(ok, key=lambda m: m.scores.get("logme") or -np.inf)
    if by != "logme" and by_logme is not best:
        text += f"; LogME prefers {by_logme.model}, worth a fine-tuning comparison if you will fine-tune"
    return text


def fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def write_ranking(ranking: Ranking, out: str | Path) -> Path:
    """Write `ranking.json`, `ranking.png` and `report.html` into `out`; return the folder."""
    from html import escape

    from graftkit.selection._report import img, new_figure, save_figure, table_html, write_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RANKING_JSON).write_text(json.dumps(ranking.to_dict(), indent=2, default=str) + "\n")
    ok = [m for m in ranking.models if m.status == "ok"]
    sections = [f"<h2>Recommendation</h2><p><b>{escape(ranking.recommendation)}</b></p>"]
    header = ["rank", "model", *SCORES, "params", "seconds", "features computed / cached", "notes"]
    rows = [
        [i + 1, m.model, *[m.scores.get(s) for s in SCORES], m.params, m.seconds.get("total"),
         f"{m.features.get('computed', 0)} / {m.features.get('cached', 0)}", "; ".join(m.notes)]
        for i, m in enumerate(ok)
    ]  # fmt: skip
    sections += [f"<h2>Ranking (by {escape(ranking.by)})</h2>", table_html(header, rows)]
    if ok:
        fig, axes = new_figure(10.0, 0.5 + 0.45 * len(ok) + 1.0, ncols=2)
        names = [m.model for m in ok][::-1]
        for ax, score in zip(axes, ("probe_accuracy", "logme")):
            values = [m.scores.get(score) or 0.0 for m in ok][::-1]
            ax.barh(names, values, color="tab:blue")
            ax.set_title(score)
            ax.grid(axis="x", alpha=0.3)
        save_figure(fig, out / RANKING_PNG)
        sections.append(img(RANKING_PNG, "probe accuracy and LogME per model"))
    skipped = [m for m in ranking.models if m.status != "ok"]
    if skipped:
        sections += ["<h2>Skipped</h2>", table_html(["model", "reason"], [[m.model, m.reason] for m in skipped])]
    sections += [
        "<h2>Scores</h2>",
        "<p>probe_accuracy: mean held-out accuracy of a logistic-regression probe over stratified folds. "
        "LogME: log evidence of a Bayesian linear model (You et al. 2021). h_score: class separation in "
        "the shrunk feature covariance (Bao et al. 2019). LEEP, NCE: how well the original (ImageNet) "
        "classifier's predictions explain the labels (Nguyen et al. 2020; Tran et al. 2019). Higher is better for all.</p>",
        "<h2>Data</h2>",
        table_html(["key", "value"], [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in ranking.data.items()]),
    ]
    write_page(out / REPORT_HTML, f"graft rank · {Path(ranking.data['root']).name}", sections)
    return out


def format_ranking_table(ranking: Ranking):
    """A rich table of the scored models and the recommendation (skipped models: `Ranking.models`), for the CLI.

    Example:
        >>> rich.console.Console().print(format_ranking_table(rank(...)))  # doctest: +SKIP
    """
    from rich.markup import escape
    from rich.table import Table

    caption = f"recommendation: {escape(ranking.recommendation)}"
    table = Table(title=f"ranked by {ranking.by}", caption=caption, caption_justify="left")
    table.add_column("#", justify="right")
    table.add_column("model")
    for s in SCORES:
        table.add_column(_SHORT[s], justify="right")
    table.add_column("params", justify="right")
    table.add_column("time", justify="right")
    for i, m in enumerate(m for m in ranking.models if m.status == "ok"):
        params = f"{m.params / 1e6:.1f}M" if m.params else "?"
        table.add_row(str(i + 1), escape(m.model), *[fmt_score(m.scores.get(s)) for s in SCORES], params, f"{m.seconds['total']:.1f} s")
    return table
