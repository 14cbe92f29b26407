"""Text end to end: tiny random BERT / GPT-2 / T5 saved in the test, loaded through `hf:PATH`,
trained with every strategy and task, reloaded from the run directory alone."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

import graftkit
from graftkit.cli import main
from graftkit.errors import ConfigError, DataError

POSITIVE = "good great lovely wonderful fine liked loved".split()
NEGATIVE = "bad awful terrible boring dull hated".split()
NOUNS = "movie film book song story plot actor music ending".split()


def _sentence(rng: random.Random, words: list[str]) -> str:
    return f"the {rng.choice(NOUNS)} was {rng.choice(['very', 'so', 'too'])} {rng.choice(words)} {rng.choice(words)}"


def write_sentiment_csv(path: Path, n: int = 40, seed: int = 0) -> Path:
    """Learnable binary sentiment: the adjective decides the label."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "score"])
        for i in range(n):
            pos = i % 2 == 0
            w.writerow([_sentence(rng, POSITIVE if pos else NEGATIVE), "positive" if pos else "negative", 2.0 if pos else -2.0])
    return path


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    return write_sentiment_csv(tmp_path / "reviews.csv")


def _hf(path: Path) -> str:
    return f"hf:{path}"


FAST = {"epochs": 3, "batch_size": 8, "offline": True}


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune", "gradual", "lora"])
def test_text_classification_every_strategy_round_trips(tiny_bert_dir, sentiment_csv, tmp_path, strategy):
    val = write_sentiment_csv(tmp_path / "val.csv", n=24, seed=1)  # another draw of reviews
    settings = FAST if strategy == "linear-probe" else {**FAST, "epochs": 6, "lr": 0.03}  # enough to learn
    run = graftkit.fit(sentiment_csv, val=val, model=_hf(tiny_bert_dir), strategy=strategy, out=f"runs/{strategy}", **settings)
    if strategy != "linear-probe":  # the probe's floor: test_text_probe_learns_and_caches
        # >= 20 of 24 right; a coin flip gets there with probability 7.7e-4 (binomial, p = 1/2).
        assert run.metrics["val"]["accuracy"] >= 0.8
    for name in ("model.safetensors", "graft.json", "metrics.json", "history.jsonl", "report.html", "hf/config.json", "hf/tokenizer.json"):
        assert (run.dir / name).is_file(), name
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["modality"] == "text" and meta["status"] == "done" and meta["model"]["arch"] == "hf:bert"
    assert meta["task"]["classes"] == ["negative", "positive"]
    # Reloaded from the run directory alone, the model predicts exactly what training measured.
    result = graftkit.evaluate(run.dir, sentiment_csv, out="eval")
    assert result["test"]["n"] == 40
    preds = graftkit.load(run.dir).predict(["the movie was very good good", "the film was so awful awful"], top_k=2)
    assert all(p.label in ("positive", "negative") and len(p.top_k) == 2 for p in preds)
    if strategy == "lora":
        assert meta["lora"]["target_modules"] and (run.dir / "adapters.safetensors").is_file()
        from safetensors.torch import load_file

        small = load_file(str(run.dir / "adapters.safetensors"))
        assert any("lora_A" in k for k in small) and any(k.startswith("head.") for k in small)
        # The head alone reaches the floor too; PEFT starts every lora_B at 0, so trained adapters moved.
        lora_b = [v for k, v in small.items() if "lora_B" in k]
        assert lora_b and all(v.abs().sum() > 0 for v in lora_b)


def test_reloaded_run_predicts_what_training_measured(tiny_bert_dir, tmp_path):
    """Val metrics recomputed from the saved run equal the ones written at the end of training (LoRA too)."""
    data = write_sentiment_csv(tmp_path / "all.csv", n=40)
    val = write_sentiment_csv(tmp_path / "val.csv", n=16, seed=1)
    for strategy in ("finetune", "lora"):
        run = graftkit.fit(data, val=val, model=_hf(tiny_bert_dir), strategy=strategy, out=f"runs/{strategy}", **FAST)
        again = graftkit.evaluate(run.dir, val, out=f"eval-{strategy}")["test"]
        assert again["accuracy"] == run.metrics["val"]["accuracy"]
        assert again["loss"] == pytest.approx(run.metrics["val"]["loss"], abs=1e-5)


def test_text_probe_learns_and_caches(tiny_bert_dir, tmp_path):
    data = write_sentiment_csv(tmp_path / "r.csv", n=160)
    first = graftkit.fit(data, model=_hf(tiny_bert_dir), out="runs/a", epochs=30, lr=0.05, batch_size=16, offline=True)
    # The adjective is enough, even through a random BERT. 32 validation texts: a coin-flipper
    # reaches 0.8 (26 of 32) with probability 2.7e-4.
    assert first.metrics["val"]["n"] == 32 and first.metrics["val"]["accuracy"] >= 0.8
    second = graftkit.fit(data, model=_hf(tiny_bert_dir), out="runs/b", epochs=2, offline=True)
    assert second.metrics["features"]["computed"] == 0 and second.metrics["features"]["cached"] == 160


def test_multilabel_thresholds_and_prediction(tiny_bert_dir, tmp_path):
    rng = random.Random(0)
    path = tmp_path / "tags.jsonl"
    with open(path, "w") as f:
        for i in range(48):
            labels = [l for l, on in (("animal", i % 2 == 0), ("place", i % 3 == 0)) if on] or ["other"]
            words = ["cat" if "animal" in labels else "book", "sea" if "place" in labels else "song"]
            f.write(json.dumps({"text": f"the {words[0]} and the {words[1]} {rng.choice(POSITIVE)}", "labels": labels}) + "\n")
    run = graftkit.fit(path, model=_hf(tiny_bert_dir), task="multilabel", strategy="finetune", out="runs/tags", epochs=4, lr=3e-3, batch_size=8, offline=True)
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["task"]["name"] == "multilabel" and set(meta["task"]["classes"]) == {"animal", "other", "place"}
    assert len(meta["task"]["thresholds"]) == 3
    val = run.metrics["val"]
    assert {"macro_f1", "micro_f1", "subset_accuracy", "per_class", "thresholds"} <= set(val)
    preds = graftkit.load(run.dir).predict(["the cat and the sea good"])
    assert all(label in ("animal", "other", "place") for label in preds[0].label.split("|") if label)


def test_regression_reports_errors_in_target_units(tiny_bert_dir, tmp_path):
    scores = {}
    for name, n, seed in (("train", 40, 0), ("val", 24, 1)):
        path = write_sentiment_csv(tmp_path / f"{name}.csv", n=n, seed=seed)
        rows = [{**r, "score": float(r["score"]) + 3.0} for r in csv.DictReader(path.open())]  # 5 / 1, not ±2
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        scores[name] = np.array([r["score"] for r in rows])
    run = graftkit.fit(tmp_path / "train.csv", val=tmp_path / "val.csv", model=_hf(tiny_bert_dir), task="regression", label_col="score", out="runs/score", epochs=40, lr=0.1, batch_size=8, offline=True)
    val = run.metrics["val"]
    assert {"mae", "rmse", "r2"} <= set(val)
    # Trivial predictors on the same val set: always 0 (MAE 3) and always the training mean (MAE 2).
    zero_mae = np.abs(scores["val"]).mean()
    mean_mae = np.abs(scores["val"] - scores["train"].mean()).mean()
    assert val["mae"] < 0.5 * min(zero_mae, mean_mae)
    pred = graftkit.load(run.dir).predict(["the film was very good great"])[0]
    assert isinstance(pred.score, float) and pred.score > scores["train"].mean()  # positive: towards 5


def _pairs(path: Path, n: int = 24) -> Path:
    rng = random.Random(0)
    numbers = "one two three four five".split()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "target"])
        for _ in range(n):
            a = rng.choice(numbers)
            w.writerow([f"translate english french {a}", f"{a} {a}"])
    return path


def test_seq2seq_t5_translation_writes_bleu_and_generates(tiny_t5_dir, tmp_path):
    data = _pairs(tmp_path / "pairs.csv")
    run = graftkit.fit(data, model=_hf(tiny_t5_dir), task="seq2seq", out="runs/t5", epochs=2, batch_size=8, lr=3e-3, num_beams=2, max_new_tokens=6, offline=True)
    val = run.metrics["val"]
    assert {"bleu", "chrf", "perplexity", "token_accuracy", "examples"} <= set(val)
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["task"]["generation"] == {"num_beams": 2, "max_new_tokens": 6} and meta["head"] is None
    out = graftkit.load(run.dir).predict(["translate english french two"])
    assert isinstance(out[0].label, str)
    assert "Examples" in (run.dir / "report.html").read_text()


def test_causal_lm_gpt2_lora_on_plain_text(tiny_gpt2_dir, tmp_path):
    text = tmp_path / "corpus.txt"
    rng = random.Random(0)
    text.write_text("\n\n".join(_sentence(rng, POSITIVE) for _ in range(30)))
    run = graftkit.fit(text, model=_hf(tiny_gpt2_dir), task="causal-lm", strategy="lora", out="runs/lm", epochs=2, batch_size=8, max_new_tokens=4, num_beams=1, offline=True)
    val = run.metrics["val"]
    assert val["perplexity"] > 1 and "token_accuracy" in val
    first = graftkit.load(run.dir).predict(["the movie was"])[0].label
    assert first == graftkit.load(run.dir).predict(["the movie was"])[0].label  # greedy: deterministic


def test_causal_lm_prompt_response_jsonl(tiny_gpt2_dir, tmp_path):
    path = tmp_path / "chat.jsonl"
    with open(path, "w") as f:
        for i in range(20):
            f.write(json.dumps({"prompt": f"the {NOUNS[i % len(NOUNS)]} was", "response": "very good"}) + "\n")
    run = graftkit.fit(path, model=_hf(tiny_gpt2_dir), task="causal-lm", out="runs/chat", epochs=1, batch_size=4, num_beams=1, max_new_tokens=3, offline=True)
    assert run.metrics["val"]["perplexity"] > 1


def test_cli_text_train_predict_evaluate(tiny_bert_dir, sentiment_csv, capsys):
    assert main(["train", str(sentiment_csv), "--model", _hf(tiny_bert_dir), "--out", "runs/cli", "--epochs", "2", "--offline", "--max-length", "16"]) == 0
    meta = json.loads(Path("runs/cli/graft.json").read_text())
    assert meta["preprocess"]["max_length"] == 16 and meta["data"]["tokens"]["max_length"] == 16
    capsys.readouterr()
    assert main(["predict", "runs/cli", "the film was good", "the film was awful", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["the film was good", "the film was awful"]
    assert main(["evaluate", "runs/cli", str(sentiment_csv)]) == 0


def test_truncation_is_counted(tiny_bert_dir, tmp_path):
    path = tmp_path / "long.csv"
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(20):
            words = POSITIVE if i % 2 else NEGATIVE
            n = 30 if i < 10 else 3
            w.writerow([" ".join(rng.choice(words) for _ in range(n)), "pos" if i % 2 else "neg"])
    run = graftkit.fit(path, model=_hf(tiny_bert_dir), out="runs/long", epochs=1, max_length=12, offline=True)
    tokens = json.loads((run.dir / "graft.json").read_text())["data"]["tokens"]
    assert tokens["max_length"] == 12 and sum(tokens["truncated"].values()) == 10
    assert "truncated" in (run.dir / "report.html").read_text()


def test_text_errors_are_clear(tiny_bert_dir, tiny_t5_dir, tmp_path, sentiment_csv):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        graftkit.fit(empty, model=_hf(tiny_bert_dir), offline=True)
    no_col = tmp_path / "cols.csv"
    no_col.write_text("body,label\nthe film was good,pos\nthe film was bad,neg\n")
    with pytest.raises(DataError, match="--text-col"):
        graftkit.fit(no_col, model=_hf(tiny_bert_dir), offline=True)
    with pytest.raises(ConfigError, match="linear-probe"):
        graftkit.fit(_pairs(tmp_path / "p.csv"), model=_hf(tiny_t5_dir), task="seq2seq", strategy="linear-probe", offline=True)
    with pytest.raises(ConfigError, match="--task seq2seq needs a text model"):
        graftkit.fit(tmp_path, model="scratch:timm:test_efficientnet", task="seq2seq")
    with pytest.raises(ConfigError, match="not a regression metric"):
        graftkit.fit(sentiment_csv, model=_hf(tiny_bert_dir), task="regression", label_col="score", monitor="accuracy", offline=True)
    # Unknown label at evaluation: named with its rows, and nothing is written over the run.
    run = graftkit.fit(sentiment_csv, model=_hf(tiny_bert_dir), out="runs/ok", epochs=1, offline=True)
    other = tmp_path / "other.csv"
    other.write_text("text,label\nthe film was good,positive\nthe film was so so,neutral\n")
    with pytest.raises(DataError, match="'neutral' is not one of the run's classes"):
        graftkit.evaluate(run.dir, other)
    assert json.loads((run.dir / "graft.json").read_text())["status"] == "done"


def test_non_utf8_file_is_read_as_latin1_with_a_warning(tiny_bert_dir, tmp_path):
    path = tmp_path / "latin.csv"
    rows = ["text,label"] + [f"film {i} was tr\xe8s {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(12)]
    path.write_bytes("\n".join(rows).encode("latin-1"))
    with pytest.warns(UserWarning, match="latin-1"):
        run = graftkit.fit(path, model=_hf(tiny_bert_dir), out="runs/latin", epochs=1, offline=True)
    assert json.loads((run.dir / "graft.json").read_text())["data"]["encoding"] == "latin-1"
