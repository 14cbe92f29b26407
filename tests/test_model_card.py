"""MODEL_CARD.md from graft.json + metrics.json alone."""

from __future__ import annotations

import json
import shutil

from graftkit.rundir.model_card import write_model_card
from tests._deploy_runs import copy_run, image_run, text_run


def test_image_card_has_every_section(tmp_path_factory, tmp_path):
    run = copy_run(image_run(tmp_path_factory), tmp_path / "flowers")
    card = write_model_card(run).read_text()
    assert card.startswith("# Model card: flowers\n")
    for heading in ("## Intended use", "## How to load it", "## Data", "## Metrics", "## Training settings", "## Limitations", "## Provenance"):
        assert heading in card, heading
    assert "An image classification model over 3 classes" in card
    assert "| cat |" in card and "| class | precision | recall | F1 | support |" in card  # metrics per class
    assert f"graft predict {run}" in card and "graftkit.load(" in card
    assert "| strategy | finetune |" in card and "Images are resized" in card
    assert "## Export" not in card  # not exported yet


def test_card_is_built_from_the_run_files_alone(tmp_path_factory, tmp_path):
    run = copy_run(image_run(tmp_path_factory), tmp_path / "moved")
    for name in ("model.safetensors", "split.json", "report.html", "history.jsonl"):
        (run / name).unlink(missing_ok=True)
    meta = json.loads((run / "graft.json").read_text())
    meta["task"]["classes"] = ["a|b", "c"]  # user strings are escaped in tables
    (run / "graft.json").write_text(json.dumps(meta))
    card = write_model_card(run).read_text()
    assert "`a|b`" in card and "## Metrics" in card


def test_text_card(tmp_path_factory, tiny_bert_dir, tmp_path):
    run = copy_run(text_run(tmp_path_factory, tiny_bert_dir), tmp_path / "sent")
    shutil.rmtree(run / "hf")
    card = write_model_card(run).read_text()
    assert "A text classification model over 2 classes" in card and "tokens are cut" in card
    assert "graft predict" in card and "'a text to classify'" in card
