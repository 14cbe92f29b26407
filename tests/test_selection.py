"""Transferability scores, `graft rank` and `graft curve`: synthetic checks of the math, tiny end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graftkit.cli import main
from graftkit.errors import ConfigError, UnknownModelError
from graftkit.selection.transferability import h_score, kfold_probe_accuracy, leep, logme, nce
from tests.conftest import TINY_MODEL


def _informative_and_noise(n: int = 300, d: int = 32, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    informative = np.eye(k)[y] @ rng.normal(size=(k, d)) + 0.7 * rng.normal(size=(n, d))
    noise = rng.normal(size=(n, d))
    return informative, noise, y


def _logme_reference(f: np.ndarray, y: np.ndarray) -> float:
    """LogME written the slow, obvious way: explicit D×D posterior per class, same fixed point."""
    n, d = f.shape
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(100):
            a = alpha * np.eye(d) + beta * f.T @ f
            m = beta * np.linalg.solve(a, f.T @ t)
            gamma = d - alpha * np.trace(np.linalg.inv(a))
            new_alpha, new_beta = gamma / (m @ m + 1e-5), (n - gamma) / (np.sum((t - f @ m) ** 2) + 1e-5)
            done = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 1e-3
            alpha, beta = new_alpha, new_beta
            if done:
                break
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.solve(a, f.T @ t)
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.linalg.slogdet(a)[1]
              - beta / 2 * np.sum((t - f @ m) ** 2) - alpha / 2 * m @ m - n / 2 * np.log(2 * np.pi))  # fmt: skip
        out.append(ev / n)
    return float(np.mean(out))


@pytest.mark.parametrize("n,d", [(120, 16), (30, 60)])  # more samples than features, and fewer
def test_logme_vectorised_matches_the_direct_formula(n, d):
    informative, noise, y = _informative_and_noise(n, d)
    for f in (informative, noise):
        assert logme(f, y) == pytest.approx(_logme_reference(f, y), abs=2e-3)


def test_feature_scores_rank_informative_features_above_noise():
    informative, noise, y = _informative_and_noise()
    assert logme(informative, y) > logme(noise, y) + 0.5
    assert h_score(informative, y) > 10 * h_score(noise, y)
    assert h_score(informative, y) <= 3.0 + 1e-6  # at most K - 1 (shrunk covariance keeps the bound)
    assert kfold_probe_accuracy(informative, y) > 0.9 > 0.4 > kfold_probe_accuracy(noise, y)


def test_source_scores_reward_a_source_classifier_that_explains_the_labels():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 4
    sharp = np.full((200, 10), 0.01)
    sharp[np.arange(200), y * 2] = 0.91  # source class 2y predicts target y
    random_probs = rng.dirichlet(np.ones(10), size=200)
    assert leep(sharp, y) > leep(random_probs, y)
    assert nce(sharp, y) == pytest.approx(0.0) and nce(random_probs, y) < -0.5
    assert leep(np.full((4, 2), 0.5), np.array([0, 1, 0, 1])) == pytest.approx(np.log(0.5))
    with pytest.raises(ValueError, match="softmax"):
        leep(np.ones((4, 3)), np.array([0, 1, 0, 1]))


def test_source_classifier_of_builtin_and_scratch_models():
    from graftkit.selection._source import source_classifier
    from graftkit.sources import load_backbone

    linear, why = source_classifier(load_backbone("efficientnet_lite0"))
    assert why == "" and linear.weight.shape == (1000, 1280)
    linear, why = source_classifier(load_backbone(TINY_MODEL))
    assert linear is None and "random weights" in why


@pytest.fixture
def tiny_pretrained(tmp_path) -> str:
    """A `file:` model: the tiny architecture with (random) weights saved like a user's checkpoint."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1)
    path = tmp_path / "tiny.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), str(path))
    return f"file:{path}"


def test_rank_end_to_end_with_a_skipped_model_and_the_feature_cache(tiny_images, tmp_path, capsys):
    out = tmp_path / "rank"
    args = ["rank", str(tiny_images), "--models", f"{TINY_MODEL},timm:resnet50,efficientnet_lite0", "--out", str(out),
            "--image-size", "32", "--batch-size", "8", "--num-workers", "0", "--offline", "--folds", "3"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "graft pull timm:resnet50" in printed and "recommendation" in printed
    ranking = json.loads((out / "ranking.json").read_text())
    rows = {m["model"]: m for m in ranking["models"]}
    assert rows["timm:resnet50"]["status"] == "skipped" and "graft pull timm:resnet50" in rows["timm:resnet50"]["reason"]
    lite = rows["efficientnet_lite0"]
    assert lite["status"] == "ok" and lite["scores"]["leep"] is not None and lite["features"]["computed"] == 24
    tiny = rows[TINY_MODEL]
    assert tiny["scores"]["leep"] is None and any("NCE/LEEP skipped" in n for n in tiny["notes"])
    assert {"probe_accuracy", "logme", "h_score"} <= {k for k, v in tiny["scores"].items() if v is not None}
    assert ranking["models"][-1]["model"] == "timm:resnet50"  # skipped models last
    assert ranking["best"] in (TINY_MODEL, "efficientnet_lite0") and ranking["recommendation"].startswith(ranking["best"])
    assert (out / "report.html").is_file() and (out / "ranking.png").is_file()
    assert "timm:resnet50" in (out / "report.html").read_text()

    from graftkit import rank

    again = rank(tiny_images, ["efficientnet_lite0"], image_size=32, batch_size=8, num_workers=0, folds=3)
    assert again.models[0].features == {"computed": 0, "cached": 24}  # the same cache `graft train` uses


def test_rank_reports_every_unknown_model_and_bad_settings(tiny_images):
    from graftkit import rank

    with pytest.raises(UnknownModelError) as e:
        rank(tiny_images, ["efficientnet_lite9", "timm:resnet5O"])
    assert "efficientnet_lite9" in str(e.value) and "resnet5O" in str(e.value)
    with pytest.raises(ConfigError, match="(?s)--by 'accuracy'.*--folds"):
        rank(tiny_images, [TINY_MODEL], by="accuracy", folds=1)
    with pytest.raises(ConfigError, match="mix modalities"):
        rank(tiny_images, [TINY_MODEL, "minilm"])


def test_curve_trains_transfer_and_scratch_on_nested_subsets(tiny_images, tmp_path, tiny_pretrained):
    from graftkit.selection.curve import curve, nested_subsets

    from graftkit.data import read_image_data

    train = read_image_data(tiny_images).train
    small, full = nested_subsets(train, [0.25, 1.0], seed=0)
    assert set(map(str, small)) <= set(map(str, full)) and len(full) == len(train)
    assert min(sum(s.label == c for s in small) for c in ("cat", "dog", "fox")) >= 2

    r = curve(tiny_images, model=tiny_pretrained, fractions=[1.0], out=tmp_path / "curve", epochs=1,
              settings={"arch": "timm:test_efficientnet", "batch_size": 8, "num_workers": 0, "image_size": 16})  # fmt: skip
    assert [(p["kind"], p["labels"]) for p in r.points] == [("transfer", len(full)), ("scratch", len(full))]
    for name in ("curve.json", "curve.png", "report.html"):
        assert (r.out / name).is_file()
    assert len(r.summary) == 3 and "Less time" in r.summary[-1]
    scratch_meta = json.loads((Path(r.points[1]["run_dir"]) / "graft.json").read_text())
    assert scratch_meta["model"]["model_id"] == "scratch:timm:test_efficientnet" and scratch_meta["strategy"] == "finetune"
    assert json.loads((Path(r.points[0]["run_dir"]) / "metrics.json").read_text())["features"]["cached"] == 0  # cold: honest times
    with pytest.raises(ConfigError, match="already exists"):
        curve(tiny_images, model=tiny_pretrained, fractions=[1.0], out=tmp_path / "curve")


@pytest.mark.slow
def test_pretrained_outranks_scratch_on_fashion_mnist(tmp_path):
    """Real data: ImageNet EfficientNet-Lite0 vs the same architecture with random weights."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from fashion_mnist import pick_per_class, read_split, write_folder

    images, labels = read_split("train")
    data = write_folder(tmp_path / "fmnist", images, labels, pick_per_class(labels, 40, seed=3), fmt="png")
    from graftkit import rank

    r = rank(data, ["efficientnet_lite0", "scratch:timm:tf_efficientnet_lite0"], image_size=128, folds=5)
    pre, scratch = (next(m for m in r.models if m.model == name) for name in ("efficientnet_lite0", "scratch:timm:tf_efficientnet_lite0"))
    assert r.best.model == "efficientnet_lite0"
    for score in ("probe_accuracy", "logme", "h_score"):
        assert pre.scores[score] > scratch.scores[score], score


def test_text_models_rank_sweep_and_choose_a_strategy(tiny_bert_dir, tmp_path):
    """The same tools on text: features from the text backbone through the shared cache."""
    import graftkit
    from tests.test_text_train import write_sentiment_csv

    data = write_sentiment_csv(tmp_path / "reviews.csv", n=60)
    model = f"hf:{tiny_bert_dir}"
    r = graftkit.rank(data, [model, f"scratch:{model}"], out=tmp_path / "rank", folds=3)
    assert {m.status for m in r.models} == {"ok"} and r.data["modality"] == "text"
    text_row = next(m for m in r.models if m.model == model)
    assert text_row.scores["leep"] is None and "text encoder" in text_row.notes[0]
    assert text_row.features["computed"] == 60
    sweep = graftkit.lr_find(data, model=model, strategy="finetune", steps=10, batch_size=8, out=tmp_path / "lr")
    assert len(sweep.lrs) >= 5 and sweep.settings["max_length"] > 0 and (tmp_path / "lr" / "lr_find.png").is_file()
    run = graftkit.fit(data, model=model, strategy="auto", epochs=1, batch_size=8, out=tmp_path / "auto", offline=True)
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["auto"]["reasons"][0].startswith("48 labelled text examples")
    assert run.metrics["features"]["cached"] == 60  # ranking computed them; auto's probe and the run reuse them


@pytest.mark.slow
def test_minilm_outranks_scratch_on_movie_reviews():
    """Real text: the bundled VADER movie-review snippets, MiniLM vs the same architecture untrained."""
    from graftkit import rank
    from graftkit.demo import text_demo_data

    r = rank(text_demo_data(), ["minilm", "scratch:minilm"], offline=True)
    pre, scratch = (next(m for m in r.models if m.model == name) for name in ("minilm", "scratch:minilm"))
    assert r.best.model == "minilm"
    for score in ("probe_accuracy", "logme"):
        assert pre.scores[score] > scratch.scores[score], score
