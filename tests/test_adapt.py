"""Domain adaptation (training/adapt.py, strategies/domain.py, evaluation/adaptation.py): the
pieces numerically, every method end to end through `fit()` on tiny random models, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import graftkit
from graftkit.errors import ConfigError, DataError
from graftkit.evaluation.adaptation import information_maximisation, mean_entropy, mean_rank, proxy_a_distance, dev_risk
from graftkit.strategies.domain import (
    MultilinearMap,
    coral_loss,
    dann_coefficient,
    entropy_weights,
    recompute_batchnorm,
    reverse_gradient,
)
from tests.conftest import TINY_MODEL, make_image_folder

FAST = dict(model=TINY_MODEL, strategy="finetune", epochs=2, batch_size=8, image_size=32, num_workers=0)


# --- the pieces --------------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_negated_scaled_gradient_backward():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(3)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.3 * w.expand(4, 3))


def test_dann_coefficient_follows_ganin_schedule():
    assert dann_coefficient(0.0) == 0.0
    assert dann_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_coefficient(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    values = [dann_coefficient(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] > 0.99


def test_coral_is_zero_for_identical_distributions_and_positive_for_different_ones():
    x = torch.randn(64, 8)
    assert float(coral_loss(x, x.clone())) == pytest.approx(0.0, abs=1e-9)
    assert float(coral_loss(x, x + 3.0)) == pytest.approx(0.0, abs=1e-6)  # a shift keeps the covariance
    assert float(coral_loss(x, 3.0 * x)) > 0.1


def test_multilinear_map_is_the_outer_product_and_randomised_when_large():
    f, g = torch.randn(5, 4), torch.softmax(torch.randn(5, 3), 1)
    small = MultilinearMap(4, 3)
    assert not small.randomized and torch.allclose(small(f, g)[0].view(3, 4), torch.outer(g[0], f[0]))
    big = MultilinearMap(1280, 10, dim=64)
    assert big.randomized and big(torch.randn(5, 1280), torch.softmax(torch.randn(5, 10), 1)).shape == (5, 64)


def test_entropy_weights_favour_confident_predictions():
    w = entropy_weights(torch.tensor([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3]]))
    assert w[0] > w[1] and float(w.mean()) == pytest.approx(1.0)


def test_adabn_replaces_batchnorm_statistics_by_the_targets():
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    nn.init.eye_(net[0].weight), nn.init.zeros_(net[0].bias)
    net.eval()
    weights = net[0].weight.detach().clone()
    target = [torch.randn(32, 3) * 2.0 + 5.0 for _ in range(8)]
    n = recompute_batchnorm(net, target, net)
    all_target = torch.cat(target)
    assert n == 1
    assert torch.allclose(net[1].running_mean, all_target.mean(0), atol=1e-4)
    assert torch.allclose(net[1].running_var, all_target.var(0), rtol=0.02)
    assert torch.equal(net[0].weight, weights) and not net.training and net[1].momentum == 0.1
    assert recompute_batchnorm(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)), target, lambda x: x) == 0


def test_information_maximisation_rewards_confident_diverse_predictions_and_zero_for_collapse():
    collapsed = np.tile([0.97, 0.01, 0.01, 0.01], (40, 1))
    eye = np.stack([np.roll(row, i % 4) for i, row in enumerate(collapsed)])  # as confident, every class used
    assert information_maximisation(eye) > 1.0 > information_maximisation(collapsed)
    assert information_maximisation(collapsed) == pytest.approx(0.0, abs=1e-9)
    assert mean_entropy(eye) == pytest.approx(mean_entropy(collapsed))  # entropy alone cannot tell them apart


def test_proxy_a_distance_is_near_zero_for_one_domain_and_near_two_for_separable_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    assert proxy_a_distance(a, b) < 0.5
    assert proxy_a_distance(a, b + 6.0) > 1.8


def test_dev_risk_weights_source_losses_towards_the_target():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(200, 2))
    losses = np.where(source[:, 0] > 0, 2.0, 0.1)  # the model fails on the right half
    right, left = source[source[:, 0] > 0] + [1.0, 0.0], source[source[:, 0] <= 0] - [1.0, 0.0]
    assert dev_risk(source, losses, right) > losses.mean() > dev_risk(source, losses, left)


def test_mean_rank_combines_higher_and_lower_is_better_scores():
    rows = [{"source_val_accuracy": 0.9, "target_im": 1.0, "target_dev": 0.5},
            {"source_val_accuracy": 0.8, "target_im": 0.5, "target_dev": 0.9}]
    assert mean_rank(rows) == [0.0, 1.0]


def _candidate(method: str, src: float, pad: float, im: float = 0.5, dev: float = 0.5, seed: int = 0):
    from graftkit.training.adapt import Candidate

    return Candidate(method, seed, None, {"source_val_accuracy": src, "target_im": im, "target_dev": dev}, 1, [], extras={"pad_after": pad})


def test_auto_picks_an_adapted_model_that_aligned_the_domains_by_the_target_risk_bound():
    from graftkit.training.adapt import choose_method, target_risk_bound

    # as on VADER: source-only ranks best on every label-free score, the adversarial models aligned
    none = _candidate("none", 0.80, 1.75, im=0.37, dev=0.21)
    dann = _candidate("dann", 0.77, 1.14, im=0.32, dev=0.47)
    cdan = _candidate("cdan", 0.76, 1.20, im=0.33, dev=0.37)
    coral = _candidate("coral", 0.78, 1.70, im=0.36, dev=0.20)
    kept = choose_method([none, coral, dann, cdan])
    assert kept is dann and kept.extras["picked_by"] == "target_bound"
    assert dann.extras["target_bound"] == pytest.approx(target_risk_bound(0.77, 1.14)) == pytest.approx(0.23 + 0.57)
    assert dann.extras["aligned"] and cdan.extras["aligned"] and not coral.extras["aligned"]  # 0.05 lower PAD is no alignment
    assert none.extras["mean_rank"] < dann.extras["mean_rank"]  # the rank alone would have kept source-only


def test_auto_falls_back_to_the_mean_rank_when_nothing_aligned_or_the_source_task_was_lost():
    from graftkit.training.adapt import choose_method

    none = _candidate("none", 0.85, 1.59, im=0.87, dev=0.51)
    selftrain = _candidate("selftrain", 0.88, 1.63, im=1.06, dev=0.30)  # better scores, no alignment (as on digits)
    collapsed = _candidate("dann", 0.50, 0.10, im=0.01, dev=0.90)  # aligned by collapsing: source accuracy lost
    kept = choose_method([none, collapsed, selftrain])
    assert kept is selftrain and kept.extras["picked_by"] == "mean_rank"
    assert not collapsed.extras["aligned"]


def test_the_choice_among_seeds_keeps_each_seeds_own_rank(shift, tmp_path):
    src, tgt, _ = shift
    run = graftkit.fit(src, out=tmp_path / "auto2", target_unlabeled=str(tgt), adapt="auto", seeds=2, **{**FAST, "epochs": 1})
    record = _adaptation(run.dir)
    for pick in record["picks"]:  # each seed's pick is its own best by the rule that picked it
        rows = [c for c in record["candidates"] if c["seed"] == pick["seed"]]
        kept = next(c for c in rows if c["method"] == pick["method"])
        if pick["picked_by"] == "mean_rank":
            assert kept["mean_rank"] == min(mean_rank(rows)) == pytest.approx(min(c["mean_rank"] for c in rows))
        else:
            assert kept["target_bound"] == min(c["target_bound"] for c in rows if c["aligned"])
    assert record["chosen"]["seed"] in {p["seed"] for p in record["picks"]}


# --- end to end ------------------------------------------------------------------------------


def _target_images(src: Path, dest: Path, flat: bool = True) -> Path:
    """The source images colour-inverted (a domain shift), in one folder without class subfolders."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.rglob("*.png")):
        out = dest / (p.name if flat else f"{p.parent.name}/{p.name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - np.asarray(Image.open(p))).save(out)
    return dest


@pytest.fixture
def shift(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=6)
    return src, _target_images(src, tmp_path / "tgt"), _target_images(src, tmp_path / "tgt_labelled", flat=False)


def _adaptation(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["adaptation"]


def test_auto_trains_every_method_scores_each_epoch_and_records_its_choice(shift, tmp_path):
    src, tgt, labelled = shift
    run = graftkit.fit(src, out=tmp_path / "auto", target_unlabeled=str(tgt), adapt="auto", target_labelled=str(labelled), **{**FAST, "epochs": 1})
    record = _adaptation(run.dir)
    methods = [c["method"] for c in record["candidates"]]
    assert methods == ["none", "adabn", "coral", "dann", "cdan", "selftrain"]
    histories = {h["method"]: h["rows"] for h in record["histories"]}
    for method, rows in histories.items():  # the label-free scores (and the check) in every epoch
        assert len(rows) == 1 and all({"source_val_accuracy", "target_entropy", "target_im", "target_dev", "target_accuracy"} <= set(r) for r in rows), method
    assert all(r["train_coral"] > 0 for r in histories["coral"])
    assert all(r["train_dann"] > 0 for r in histories["dann"])
    assert 0 < histories["dann"][0]["train_dann_coefficient"] < 1  # the epoch's mean of the rising schedule
    assert all(r["train_cdan"] > 0 for r in histories["cdan"])
    assert all(0 <= r["train_pseudo_fraction"] <= 1 for r in histories["selftrain"])
    assert "AdaBN re-estimated" in next(c for c in record["candidates"] if c["method"] == "adabn")["note"]
    chosen = record["chosen"]
    assert chosen["method"] in methods and chosen["epoch"] == 1
    assert record["why"].startswith(f"--adapt auto chose {chosen['method']} (epoch {chosen['epoch']}")
    assert set(record["agreement"]) >= {"source_val_accuracy", "target_im", "target_dev"}
    assert 0 <= record["pad_before"] <= 2 and record["pad_after"] <= 2
    report = (run.dir / "report.html").read_text()
    assert "Domain adaptation" in report and "Proxy A-distance" in report and "Agreement of the label-free scores" in report
    assert (run.dir / "domain_embedding_before.png").stat().st_size > 1000 and (run.dir / "domain_embedding_after.png").is_file()
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    assert "target_im" in history[0]  # the kept training's history has the scores too
    evaluated = graftkit.evaluate(run.dir, labelled, num_workers=0)  # `graft evaluate RUN target_labelled/`
    assert evaluated["test"]["accuracy"] == pytest.approx(record["scores"]["target_accuracy"])


def test_adabn_moves_batchnorm_statistics_towards_the_target(shift, tmp_path):
    src, tgt, _ = shift
    plain = graftkit.fit(src, out=tmp_path / "none", target_unlabeled=str(tgt), adapt="none", **{**FAST, "epochs": 1})
    adabn = graftkit.fit(src, out=tmp_path / "adabn", target_unlabeled=str(tgt), adapt="adabn", **{**FAST, "epochs": 1})
    from safetensors.torch import load_file

    a, b = load_file(plain.dir / "model.safetensors"), load_file(adabn.dir / "model.safetensors")
    stats = [k for k in a if k.endswith("running_mean")]
    weights = [k for k in a if k.endswith("weight")]
    assert stats and any(not torch.allclose(a[k], b[k]) for k in stats)
    assert all(torch.equal(a[k], b[k]) for k in weights)  # AdaBN only touches the statistics


def test_seeds_give_mean_and_std_and_keep_one_run(shift, tmp_path):
    src, tgt, _ = shift
    run = graftkit.fit(src, out=tmp_path / "seeds", target_unlabeled=str(tgt), adapt="coral", seeds=2, **{**FAST, "epochs": 1})
    seeds = _adaptation(run.dir)["seeds"]
    assert seeds["n"] == 2 and seeds["seeds"] == [0, 1]
    stats = seeds["mean_std"]["source_val_accuracy"]
    assert stats["n"] == 2 and stats["std"] >= 0 and 0 <= stats["mean"] <= 1
    assert "target_im" in seeds["mean_std"] and "mean ± std over 2 seeds" in (run.dir / "report.html").read_text()


def test_text_self_training_with_token_noise_and_adabn_without_batchnorm(tmp_path, tiny_bert_dir):
    words = {"pos": "good great fine lovely", "neg": "bad awful terrible dull"}
    rows = [f"{w} {noun},{label}" for label, ws in words.items() for w in ws.split() for noun in ("film", "movie", "plot")]
    (tmp_path / "src.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "tgt.txt").write_text("\n".join(f"a {w} song" for ws in words.values() for w in ws.split()) + "\n")
    text = dict(model=f"hf:{tiny_bert_dir}", strategy="finetune", epochs=1, batch_size=8, num_workers=0, head_init="random")
    run = graftkit.fit(tmp_path / "src.csv", out=tmp_path / "st", target_unlabeled=str(tmp_path / "tgt.txt"), adapt="selftrain", pseudo_threshold=0.3, **text)
    rows = _adaptation(run.dir)["histories"][0]["rows"]
    assert rows[0]["train_pseudo_fraction"] > 0 and "target_im" in rows[0]
    ada = graftkit.fit(tmp_path / "src.csv", out=tmp_path / "ada", target_unlabeled=str(tmp_path / "tgt.txt"), adapt="adabn", **text)
    assert "has no BatchNorm layers" in _adaptation(ada.dir)["candidates"][0]["note"]


def test_cli_train_with_a_target(shift, tmp_path, capsys):
    from graftkit.cli import main

    src, tgt, _ = shift
    code = main(["train", str(src), "--target-unlabeled", str(tgt), "--adapt", "dann", "--model", TINY_MODEL, "--strategy", "finetune",
                 "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--num-workers", "0", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert code == 0 and _adaptation(tmp_path / "cli")["method"] == "dann"


# --- bad input ---------------------------------------------------------------------------------


def test_adapt_without_a_target_is_refused():
    with pytest.raises(ConfigError, match=r"--adapt dann needs the unlabelled target data: add --target-unlabeled"):
        graftkit.fit("anything", adapt="dann", **FAST)


def test_unknown_method_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"--adapt 'coarl' is not one of none, adabn, coral, dann, cdan, selftrain, auto \(did you mean 'coral'\?\)"):
        graftkit.fit("anything", adapt="coarl", target_unlabeled=str(tmp_path), **FAST)


def test_empty_target_folder_is_refused_by_name(shift, tmp_path):
    src, _, _ = shift
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"(?s)--target-unlabeled .*empty.*folder contains no images"):
        graftkit.fit(src, out=tmp_path / "r", target_unlabeled=str(tmp_path / "empty"), adapt="coral", **FAST)
    with pytest.raises(DataError, match=r"no such file or folder"):
        graftkit.fit(src, out=tmp_path / "r", target_unlabeled=str(tmp_path / "missing"), adapt="coral", **FAST)
    assert not (tmp_path / "r").exists()


def test_target_labelled_without_labels_is_refused(shift, tmp_path):
    src, tgt, _ = shift  # tgt: a flat folder, no class subfolders
    with pytest.raises(DataError, match=r"--target-labelled needs labels"):
        graftkit.fit(src, out=tmp_path / "r", target_unlabeled=str(tgt), target_labelled=str(tgt), adapt="coral", **FAST)


def test_linear_probe_is_refused_with_a_strategy_that_works(shift, tmp_path):
    src, tgt, _ = shift
    with pytest.raises(ConfigError, match=r"--strategy linear-probe keeps it frozen .* Use --strategy finetune"):
        graftkit.fit(src, out=tmp_path / "r", target_unlabeled=str(tgt), adapt="coral", **{**FAST, "strategy": "linear-probe"})


def test_text_target_must_be_a_file(tmp_path, tiny_bert_dir):
    (tmp_path / "src.csv").write_text("text,label\n" + "\n".join(f"t{i} x,{'ab'[i % 2]}" for i in range(12)) + "\n")
    with pytest.raises(DataError, match=r"is a folder: give one TXT file"):
        graftkit.fit(tmp_path / "src.csv", model=f"hf:{tiny_bert_dir}", strategy="finetune", out=tmp_path / "r", target_unlabeled=str(tmp_path), adapt="coral")
