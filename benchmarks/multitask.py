"""One shared multitask model against separate single-task models, and the four loss weightings.

    .venv/bin/python benchmarks/multitask.py                       # 150 rows per source, 3 rounds
    .venv/bin/python benchmarks/multitask.py --per-source 300 --rounds 1

Data (real, from ASSETS.md): the four human-rated sources of the VADER ground truth (Hutto &
Gilbert 2014, inside the `vadersentiment==3.3.2` sdist): movie-review snippets, Amazon product
review snippets, tweets and New York Times editorial snippets, each row a text and its mean human
rating (-4 .. +4). Three tasks from it, nothing invented:
- `topic` (classification, 4 classes): which of the four sources a text comes from;
- `sentiment` (classification, pos / neg): the sign of the mean rating; a rating of exactly 0 has
  no sentiment label (that cell is empty: masked for this task in the shared model, and the row is
  left out of the separate sentiment model's data);
- `score` (regression): the mean rating itself.
Per source, `--per-source` rows for training (graftkit's seeded split holds 20 % out for
validation, which picks the best epoch) and `--test-per-source` other rows for the test figures;
all drawn with seed 0.

Model `minilm` (all-MiniLM-L6-v2), `--strategy finetune` (text defaults: LP-FT head warm-up, then
the backbone at 0.05x the head's lr 1e-3), max 48 tokens, `--epochs` epochs, batch 32, training
seed = the round's number (graftkit's split, initialisation and data order change from round to
round; the rows drawn stay those of seed 0), no feature cache (every run extracts its own features,
so the times compare whole runs). Sides per round, after one untimed warm-up run that pays the
one-off imports: the three separate models (`--task classification|regression --label-col ...`)
and the shared model with `equal`, `uncertainty`, `pcgrad` and `pcgrad-rep` weighting; the order reverses every
round.
Criterion (issue 14): shared (equal) within 1 point of separate on every task (accuracy points;
R² points for the score) at <= 0.6x the separate models' total training time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import statistics
import tarfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import WORK, machine, report

SOURCES = {
    "movie": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "tweet": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "nyt": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}
TASKS = {"topic": "classification", "sentiment": "classification", "score": "regression"}
SPEC = ",".join(f"{k}:{v}" for k, v in TASKS.items())
PRIMARY = {"topic": "accuracy", "sentiment": "accuracy", "score": "r2"}


def read_sources() -> dict[str, list[tuple[float, str]]]:
    """Every source's rows as (mean rating, text)."""
    from vader import INNER, _decode, download_sdist

    with tarfile.open(download_sdist(WORK / "vader")) as outer:
        inner_bytes = outer.extractfile(INNER).read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for name, member in SOURCES.items():
            rows = []
            for line in inner.extractfile(member).read().splitlines():
                parts = _decode(line).rstrip("\r\n").split("\t")
                if len(parts) >= 3 and parts[2].strip():
                    rows.append((float(parts[1]), " ".join(parts[2].split())))
            out[name] = rows
    return out


def _row(source: str, score: float, text: str) -> dict:
    return {"text": text, "topic": source, "sentiment": "" if score == 0 else ("pos" if score > 0 else "neg"), "score": f"{score:.4f}"}


def write_data(per_source: int, test_per_source: int) -> dict[str, Path]:
    """The shared data folder (train.csv + test.csv) and one folder per separate task."""
    rng = random.Random(0)
    train, test = [], []
    for source, rows in read_sources().items():
        picked = rng.sample(rows, per_source + test_per_source)
        train += [_row(source, s, t) for s, t in picked[:per_source]]
        test += [_row(source, s, t) for s, t in picked[per_source:]]
    rng.shuffle(train)
    folders = {}
    for name, columns in (("shared", list(TASKS)), *((task, [task]) for task in TASKS)):
        d = WORK / f"multitask-{per_source}" / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for split, rows in (("train", train), ("test", test)):
            kept = [r for r in rows if all(r[c] != "" for c in columns)] if name != "shared" else rows
            with open(d / f"{split}.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["text", *columns], extrasaction="ignore")
                w.writeheader()
                w.writerows(kept)
        folders[name] = d
    return folders


def run_side(side: str, folders: dict[str, Path], epochs: int, round_: int) -> dict:
    import graftkit

    out = WORK / "runs" / f"mt-{side}-r{round_}"
    shutil.rmtree(out, ignore_errors=True)
    common = dict(model="minilm", strategy="finetune", epochs=epochs, batch_size=32, max_length=48, seed=round_, offline=True, feature_cache=False)
    t0 = time.perf_counter()
    if side in TASKS:
        run = graftkit.fit(folders[side], task=TASKS[side], label_col=side, out=out, **common)
        test = {side: run.metrics["test"]}
    else:
        run = graftkit.fit(folders["shared"], task=SPEC, task_weighting=side.removeprefix("shared-"), out=out, **common)
        test = run.metrics["test"]["tasks"]
    wall = time.perf_counter() - t0
    row = {"side": side, "round": round_, "wall_s": round(wall, 1),
           "test": {t: {k: m.get(k) for k in ("accuracy", "macro_f1", "mae", "r2", "n")} for t, m in test.items()}}  # fmt: skip
    print(f"round {round_} {side}: {wall:.0f} s, " + ", ".join(f"{t} {PRIMARY[t]} {m[PRIMARY[t]]:.3f}" for t, m in row["test"].items()), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return row


def step_costs(per_source: int, repeats: int, batch_size: int = 32) -> None:
    """Seconds per fine-tuning step (forward, objective, backward, AdamW) of the shared model under each
    weighting, the weightings interleaved step by step (ABC CBA ...), so a change of load hits all alike."""
    import torch

    import graftkit  # noqa: F401  (the allocator and thread settings graftkit uses)
    from graftkit.sources import resolve
    from graftkit.tasks import TaskSettings
    from graftkit.tasks.model import GraftModel
    from graftkit.tasks.multitask import MultiTask
    from graftkit.training.config import TrainConfig
    from graftkit.training.multitask import weighting_terms
    from graftkit.training.objective import Objective
    from graftkit.training.plan import load_backbone_for

    rows = list(csv.DictReader(open(write_data(per_source, 1)["shared"] / "train.csv")))[:batch_size]
    cfg = TrainConfig(model="minilm", offline=True)
    backbone = load_backbone_for(cfg, resolve("minilm").modality)
    task = MultiTask.from_data([], rows, TaskSettings(task=SPEC))
    model = GraftModel(backbone, task.build_head(backbone.num_features)).train()
    inputs = dict(backbone.tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=48, return_tensors="pt"))
    targets = task.encode(rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sides = {}
    for name in ("equal", "pcgrad", "pcgrad-rep"):
        terms = weighting_terms(TrainConfig(model="minilm", task=SPEC, strategy="finetune", task_weighting=name), model, None, task, None)
        sides[name] = Objective(task, terms)
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for r in range(repeats + 1):
        for name in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            loss, _ = sides[name](model, inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if r > 0:  # the first pass warms up
                times[name].append(time.perf_counter() - t0)
    equal = times["equal"]
    rows_out = []
    for name, values in times.items():
        ratios = [v / e for v, e in zip(values, equal)]
        rows_out.append((name, f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]",
                         f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"))  # fmt: skip
    report(f"Seconds per shared fine-tuning step, minilm, batch {batch_size}, {repeats} interleaved repeats ({machine()})",
           rows_out, ("weighting", "s / step, median [min, max]", "/ equal's step, paired"))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--step-costs", type=int, default=0, metavar="N", help="only time N interleaved steps per weighting")
    p.add_argument("--per-source", type=int, default=150)
    p.add_argument("--test-per-source", type=int, default=100)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sides", default="topic,sentiment,score,shared-equal,shared-uncertainty,shared-pcgrad,shared-pcgrad-rep")
    args = p.parse_args()
    if args.step_costs:
        return step_costs(args.per_source, args.step_costs)
    folders = write_data(args.per_source, args.test_per_source)
    sides = args.sides.split(",")
    run_side(sides[0], folders, 1, -1)  # untimed warm-up: the first run in the process pays ~10 s of imports
    runs = []
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:  # alternate the order of the sides
            runs.append(run_side(side, folders, args.epochs, r))
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    (WORK / "results" / "multitask.json").write_text(json.dumps({"machine": machine(), "args": vars(args), "runs": runs}, indent=1))

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"

    separate_time = [sum(x["wall_s"] for x in runs if x["side"] in TASKS and x["round"] == r) for r in range(args.rounds)]
    rows = []
    for side in sides:
        mine = [x for x in runs if x["side"] == side]
        cells = []
        for task in TASKS:
            values = [x["test"][task][PRIMARY[task]] for x in mine if task in x["test"]]
            cells.append(med(values) if values else "–")
        walls = [x["wall_s"] for x in mine]
        ratio = "" if side in TASKS else med([w / s for w, s in zip(walls, separate_time)])
        rows.append((side, *cells, med(walls), ratio))
    rows.append(("separate, total", "", "", "", med(separate_time), "1"))
    report(
        f"Multitask vs separate models, minilm finetune, VADER (4 sources), {args.per_source}/source train, "
        f"{args.test_per_source}/source test, {args.rounds} rounds ({machine()})",
        rows,
        ("side", "topic acc", "sentiment acc", "score R²", "wall s", "time / separate total"),
    )


if __name__ == "__main__":
    main()
