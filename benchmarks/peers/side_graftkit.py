"""graftkit's sides of the peers benchmark, through its public Python API (`graftkit.fit`, `graftkit.evaluate`).

    python side_graftkit.py {graftkit-finetune|graftkit-probe|graftkit-text} CONFIG.json RESULT.json

- `graftkit-finetune`: `fit(train, strategy="finetune", val=test)` for frozen + unfrozen epochs in
  all (graftkit has no frozen phase unless asked; the epochs are the same passes over the data),
  graftkit's image defaults otherwise; accuracy = the last epoch's validation accuracy on the test
  images (not the best epoch: the peers report their last one).
- `graftkit-probe`: `fit(train, strategy="linear-probe")` with no `val` — the L-BFGS solver picks
  its L2 strength on 20 % of *train* and refits on all of it — then `evaluate(run, test)`. Giving
  it the test folder as `val` would choose the strength on the test set, so it does not.
- `graftkit-text`: `fit(train.csv, model="minilm", strategy="finetune", val=test.csv)` with the
  Trainer's recipe (one lr on every parameter, random head; see benchmarks/text_trainer.py).
A fresh GRAFTKIT_CACHE per run (the driver sets it), so no side reuses cached features.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    side, config_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    cfg = json.loads(config_path.read_text())
    import torch

    torch.set_num_threads(cfg["threads"])
    import graftkit

    out = Path(cfg["work"]) / "runs" / side
    result: dict = {}
    if side == "graftkit-finetune":
        im = cfg["images"]
        run = graftkit.fit(
            im["train"], strategy="finetune", val=im["test"], out=out, overwrite=True, offline=True,
            epochs=im["frozen_epochs"] + im["unfrozen_epochs"], batch_size=im["batch_size"],
            image_size=im["image_size"], seed=cfg["seed"],
        )
        result["accuracy"] = run.history[-1]["val_accuracy"]
        result["accuracy_per_epoch"] = [h["val_accuracy"] for h in run.history]
        result["train_s"] = run.metrics["train_seconds"]
        result["settings"] = {k: run.metrics.get(k) for k in ("precision", "channels_last") if k in run.metrics}
    elif side == "graftkit-probe":
        im = cfg["images"]
        run = graftkit.fit(
            im["train"], strategy="linear-probe", out=out, overwrite=True, offline=True,
            batch_size=im["batch_size"], image_size=im["image_size"], seed=cfg["seed"],
        )
        t0 = time.perf_counter()
        ev = graftkit.evaluate(out, im["test"], batch_size=im["batch_size"])
        result["evaluate_s"] = time.perf_counter() - t0
        result["accuracy"] = ev["test"]["accuracy"]
        result["train_s"] = run.metrics["train_seconds"]
    elif side == "graftkit-text":
        tx = cfg["text"]
        run = graftkit.fit(
            tx["train"], model="minilm", strategy="finetune", val=tx["test"], out=out, overwrite=True, offline=True,
            epochs=tx["epochs"], batch_size=tx["batch_size"], lr=tx["lr"], max_length=tx["max_length"],
            warmup_fraction=tx["warmup_fraction"], seed=cfg["seed"],
            backbone_lr_scale=1.0, lr_decay=1.0, head_init="random",
        )
        result["accuracy"] = run.history[-1]["val_accuracy"]
        result["accuracy_per_epoch"] = [h["val_accuracy"] for h in run.history]
        result["train_s"] = run.metrics["train_seconds"]
    else:
        raise SystemExit(f"unknown graftkit side {side!r}")
    result["threads"] = torch.get_num_threads()
    result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
