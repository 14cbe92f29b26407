"""`--strategy contrastive`: SetFit-style pairs, the body trained on them through the loop, then the
probe; an ordinary run afterwards; `auto` picks it for few-label text; refused where pairs make no sense."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

import graftkit
from graftkit.errors import ConfigError
from graftkit.training.config import TrainConfig
from graftkit.training.contrastive import sample_pairs
from tests.conftest import TINY_MODEL
from tests.test_text_train import write_sentiment_csv

FAST = {"batch_size": 8, "offline": True, "contrastive_iterations": 2}


def test_pairs_are_setfit_style_and_seeded():
    labels = [0, 0, 0, 1, 1, 2]  # class 2 has a single example: its positive partner is itself
    pairs = sample_pairs(labels, iterations=3, seed=0)
    assert len(pairs) == 2 * 3 * len(labels)
    assert Counter(p.similarity for p in pairs) == {1.0: 18, 0.0: 18}
    for p in pairs:
        assert (labels[p.a] == labels[p.b]) == (p.similarity == 1.0)
        assert p.similarity == 0.0 or p.a != p.b or p.a == 5
    assert Counter(p.a for p in pairs) == {i: 6 for i in range(len(labels))}  # R positive + R negative per example
    assert pairs == sample_pairs(labels, iterations=3, seed=0) and pairs != sample_pairs(labels, iterations=3, seed=1)
    with pytest.raises(ConfigError, match="at least two classes"):
        sample_pairs([1, 1, 1], iterations=1, seed=0)


def _body(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("backbone.") and v.is_floating_point()}


def test_contrastive_trains_the_body_then_the_probe_and_the_run_reloads(tiny_bert_dir, tmp_path):
    data = write_sentiment_csv(tmp_path / "few.csv", n=16)
    val = write_sentiment_csv(tmp_path / "val.csv", n=16, seed=1)
    model = f"hf:{tiny_bert_dir}"
    probe = graftkit.fit(data, val=val, model=model, strategy="linear-probe", out="runs/probe", **FAST)
    run = graftkit.fit(data, val=val, model=model, strategy="contrastive", out="runs/pairs", contrastive_lr=1e-3, **FAST)
    from safetensors.torch import load_file

    moved, frozen = _body(load_file(str(run.dir / "model.safetensors"))), _body(load_file(str(probe.dir / "model.safetensors")))
    assert moved.keys() == frozen.keys() and moved
    changed = [k for k in moved if not torch.equal(moved[k], frozen[k])]
    assert len(changed) > 0.9 * len(moved)  # the whole body trained (the embeddings included), not just the head
    record = run.metrics["probe"]["contrastive"]
    assert record["pairs"] == 2 * 2 * 16 and record["positive_pairs"] == 32 and record["steps"] == 8
    assert record["history"][0]["train_loss"] > 0
    assert run.metrics["features"]["cached"] == 0  # the moved body's features are computed afresh, never the source's
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["strategy"] == "contrastive" and meta["status"] == "done"
    # An ordinary run: reloaded from its folder, it predicts with the trained body.
    loaded = graftkit.load(run.dir)
    preds = loaded.predict(["the movie was very good good", "the film was so awful awful"])
    assert all(p.label in ("positive", "negative") for p in preds)
    assert graftkit.evaluate(run.dir, val, out="eval")["test"]["n"] == 16


def test_auto_picks_contrastive_below_the_threshold_and_says_why(tiny_bert_dir, tmp_path):
    data = write_sentiment_csv(tmp_path / "few.csv", n=20)  # 8 per class after the validation split
    run = graftkit.fit(data, model=f"hf:{tiny_bert_dir}", strategy="auto", out="runs/auto", **FAST)
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["strategy"] == "contrastive" and meta["auto"]["strategy"] == "contrastive"
    assert "contrastive pair training" in meta["auto"]["reasons"][-1]
    assert "contrastive" in run.metrics["probe"]


def test_auto_keeps_the_probe_below_the_threshold_where_pairs_do_not_apply(tiny_bert_dir, tmp_path):
    data = write_sentiment_csv(tmp_path / "few.csv", n=20)
    run = graftkit.fit(data, model=f"hf:{tiny_bert_dir}", task="regression", label_col="score", strategy="auto", out="runs/reg", **FAST)
    assert json.loads((run.dir / "graft.json").read_text())["strategy"] == "linear-probe"


def test_refused_where_pairs_make_no_sense(tiny_bert_dir, tmp_path):
    data = write_sentiment_csv(tmp_path / "few.csv", n=16)
    with pytest.raises(ConfigError, match="contrastive pairs texts of the same class .* --task regression has value labels"):
        graftkit.fit(data, model=f"hf:{tiny_bert_dir}", task="regression", label_col="score", strategy="contrastive", out="runs/r", **FAST)
    assert not (tmp_path / "runs" / "r").exists()  # refused in the plan stage, before the run folder


def test_refused_for_image_models(tiny_images):
    with pytest.raises(ConfigError, match="trains text sentence encoders .* image model"):
        graftkit.fit(tiny_images, model=TINY_MODEL, strategy="contrastive", out="runs/img", offline=True)


def test_settings_are_checked_together():
    with pytest.raises(ConfigError) as e:
        TrainConfig(strategy="contrastive", contrastive_iterations=0, contrastive_lr=0.0, regularize="l2sp")
    msg = str(e.value)
    assert "--contrastive-iterations must be at least 1" in msg and "--contrastive-lr must be positive" in msg
    assert "--regularize does not apply to --strategy contrastive" in msg
    with pytest.raises(ConfigError, match="did you mean 'contrastive'"):
        TrainConfig(strategy="contrastiv")
