"""Tiny trained runs shared by the deploy tests (export, serve, web page, model card).

Each is trained once per test session (the first test module that asks) and reused: the tests
copy a run before changing it. Training sets its own cache folder, since the suite's autouse
isolation fixture is function-scoped and runs after session-scoped ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.conftest import TINY_MODEL, make_image_folder

_RUNS: dict[str, Path] = {}


def _train(key: str, base: Path, **kwargs) -> Path:
    if key in _RUNS and (_RUNS[key] / "graft.json").is_file():
        return _RUNS[key]
    import graftkit

    old = os.environ.get("GRAFTKIT_CACHE")
    os.environ["GRAFTKIT_CACHE"] = str(base / "cache")
    try:
        run = graftkit.fit(out=base / key, **kwargs)
    finally:
        if old is None:
            os.environ.pop("GRAFTKIT_CACHE", None)
        else:
            os.environ["GRAFTKIT_CACHE"] = old
    _RUNS[key] = run.dir
    return run.dir


def image_run(tmp_path_factory) -> Path:
    """A fine-tuned tiny timm EfficientNet on 3 separable classes (distinct logits, not ties)."""
    base = tmp_path_factory.getbasetemp() / "deploy-runs"
    if "image" not in _RUNS:
        make_image_folder(base / "images", per_class=8)
    return _train("image", base, data=base / "images", model=TINY_MODEL, strategy="finetune", epochs=2, batch_size=8,
                  lr=3e-3, num_workers=0, augment="none")  # fmt: skip


def text_run(tmp_path_factory, bert_dir: Path) -> Path:
    """A fine-tuned tiny BERT on binary sentiment."""
    from tests.test_text_train import write_sentiment_csv

    base = tmp_path_factory.getbasetemp() / "deploy-runs"
    base.mkdir(parents=True, exist_ok=True)
    data = write_sentiment_csv(base / "reviews.csv", n=40)
    return _train("text", base, data=data, model=f"hf:{bert_dir}", strategy="finetune", epochs=3, batch_size=8, offline=True)


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a shared run, to change or export into."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest
