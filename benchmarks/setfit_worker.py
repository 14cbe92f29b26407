"""One SetFit run, in its own virtual environment (`/work/venvs/setfit`): train on a CSV, score a CSV.

    /work/venvs/setfit/bin/python benchmarks/setfit_worker.py --train train.csv --test test.csv \
        --model-dir MINILM_FOLDER --seed 0 --iterations 20 --max-length 64 --threads 2 --out row.json

`benchmarks/text_fewshot.py` starts it once per seed (so SetFit's packages never meet graftkit's
environment). SetFit's default recipe: `SetFitModel.from_pretrained` on the same MiniLM folder
graftkit's `minilm` loads (sentence-transformers' mean pooling + normalisation), contrastive
fine-tuning of the body (CosineSimilarityLoss, batch 16, body lr 2e-5, 10 % warm-up, 1 epoch,
`num_iterations` pairs per text and kind) and a logistic-regression head (`end_to_end=False`).
Writes `{"accuracy", "train_s", "pairs", "predict_s"}`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def read_csv(path: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(row["text"], row["label"]) for row in csv.DictReader(f)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/setfit-work")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    train, test = read_csv(args.train), read_csv(args.test)
    labels = sorted({lab for _, lab in train})
    model = SetFitModel.from_pretrained(args.model_dir)
    targs = TrainingArguments(
        output_dir=args.work,
        num_iterations=args.iterations,
        max_length=args.max_length,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        show_progress_bar=False,
    )
    ds = Dataset.from_dict({"text": [t for t, _ in train], "label": [labels.index(l) for _, l in train]})
    trainer = Trainer(model=model, args=targs, train_dataset=ds)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    # Scored here rather than with trainer.evaluate(): its "accuracy" metric loads `evaluate` from the hub.
    t1 = time.perf_counter()
    pred = np.asarray(model.predict([t for t, _ in test], batch_size=64, as_numpy=True))
    predict_s = time.perf_counter() - t1
    acc = float((pred == np.array([labels.index(l) for _, l in test])).mean())
    row = {"accuracy": acc, "train_s": round(seconds, 1), "predict_s": round(predict_s, 1), "pairs": 2 * args.iterations * len(train),
           "threads": torch.get_num_threads(), "setfit": __import__("setfit").__version__}
    with open(args.out, "w") as f:
        json.dump(row, f)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
