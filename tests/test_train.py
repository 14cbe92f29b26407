"""Training end to end on tiny data through the public API: run directory, strategies, cache, resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import graftkit
from graftkit.rundir import sha256_file
from graftkit.training.loop import Decision
from tests.conftest import TINY_MODEL, make_image_folder


def _fit(data, out, **kw):
    kw.setdefault("model", TINY_MODEL)
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 8)
    kw.setdefault("num_workers", 0)
    return graftkit.fit(data, out=out, **kw)


def test_probe_writes_complete_run_directory(tiny_images, tmp_path):
    run = _fit(tiny_images, tmp_path / "run", strategy="linear-probe", epochs=3, probe_solver="sgd")  # the SGD head: epochs, curves, checkpoints
    d = run.dir
    for name in ("model.safetensors", "graft.json", "metrics.json", "history.jsonl", "report.html",
                 "learning_curves.png", "confusion_matrix.png", "checkpoints/last.pt"):
        assert (d / name).is_file(), name
    meta = json.loads((d / "graft.json").read_text())
    assert meta["schema_version"] == 3 and meta["status"] == "done"
    assert meta["files"]["model.safetensors"] == sha256_file(d / "model.safetensors")
    assert meta["task"]["classes"] == ["cat", "dog", "fox"]
    assert meta["model"]["arch"] == "timm:test_efficientnet"
    assert meta["precision"]["inference"] in ("fp32", "bf16") and meta["precision"]["inference_reason"]
    assert {"torch", "timm", "graftkit"} <= set(meta["versions"])
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["epochs"] == 3
    assert {"accuracy", "balanced_accuracy", "macro_f1", "loss", "per_class", "confusion_matrix"} <= set(metrics["val"])
    assert len((d / "history.jsonl").read_text().splitlines()) == 3
    keys = load_file(str(d / "model.safetensors")).keys()
    assert any(k.startswith("backbone.") for k in keys) and any(k.startswith("head.") for k in keys)


def test_feature_cache_is_reused_when_head_settings_change(tiny_images, tmp_path):
    first = _fit(tiny_images, tmp_path / "a", epochs=2)
    assert first.metrics["features"]["computed"] == 24 and first.metrics["features"]["cached"] == 0
    second = _fit(tiny_images, tmp_path / "b", epochs=4, lr=0.01, label_smoothing=0.1)
    assert second.metrics["features"] == {**second.metrics["features"], "computed": 0, "cached": 24}


def test_feature_cache_misses_edited_file(tiny_images, tmp_path):
    _fit(tiny_images, tmp_path / "a")
    victim = next((tiny_images / "cat").glob("*.png"))
    from PIL import Image

    Image.new("RGB", (40, 40), (1, 2, 3)).save(victim)
    run = _fit(tiny_images, tmp_path / "b")
    assert run.metrics["features"]["computed"] == 1


def test_same_seed_same_metrics(tiny_images, tmp_path):
    a = _fit(tiny_images, tmp_path / "a", strategy="finetune", epochs=2, feature_cache=False)
    b = _fit(tiny_images, tmp_path / "b", strategy="finetune", epochs=2, feature_cache=False)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert a.metrics["val"] == b.metrics["val"]


@pytest.mark.parametrize("strategy", ["finetune", "partial:1", "gradual"])
def test_finetune_strategies_train_and_predict(tmp_path, strategy):
    data = make_image_folder(tmp_path / "images", per_class=12)  # 18 train / 18 val images
    # Native 40-px images and no augmentation: crops of 40-px stripes slow this random backbone down.
    run = _fit(data, tmp_path / "run", strategy=strategy, epochs=8, lr=0.01, lr_decay=0.8, batch_size=6,
               image_size=40, augment="none", val_fraction=0.5)
    if strategy != "partial:1":  # partial:1 trains one group over 5 frozen random ones: no reliable floor
        # >= 15 of 18 right; a uniform random guesser gets there with probability 1.9e-5 (binomial, p = 1/3).
        assert run.metrics["val"]["accuracy"] >= 0.8
    preds = graftkit.load(run.dir).predict(sorted(data.glob("*/*.png"))[:4], top_k=2)
    assert len(preds) == 4 and all(len(p.top_k) == 2 for p in preds)
    assert preds[0].label in ("cat", "dog", "fox")


def test_partial_keeps_frozen_groups_and_their_batchnorm_statistics(tiny_images, tmp_path):
    from graftkit.sources import load_backbone

    run = _fit(tiny_images, tmp_path / "run", strategy="partial:1", epochs=2)
    before = load_backbone(TINY_MODEL, seed=0).state_dict()
    after = {k.removeprefix("backbone."): v for k, v in load_file(str(run.dir / "model.safetensors")).items() if k.startswith("backbone.")}
    stem_keys = [k for k in before if k.startswith("model.conv_stem") or k.startswith("model.bn1.")]
    assert any("running_mean" in k for k in stem_keys)
    for k in stem_keys:  # first group frozen: weights and BN running statistics untouched
        assert torch.equal(before[k], after[k]), k
    head_conv = [k for k in before if k.startswith("model.conv_head.")]
    assert any(not torch.equal(before[k], after[k]) for k in head_conv)  # last group trained


def test_gradual_unfreezes_one_group_per_epoch(tiny_images, tmp_path, capsys):
    from torch.nn.modules.batchnorm import _BatchNorm

    seen = []  # per epoch: (trainable per group, BatchNorm training modes per group, head trainable)

    class RecordFreezing:
        def on_epoch_end(self, state):
            groups = state.model.backbone.layer_groups()  # input -> output
            params = [[p.requires_grad for m in g for p in m.parameters()] for g in groups]
            assert all(all(g) or not any(g) for g in params), "a layer group is half frozen"
            norms = [[n.training for m in g for n in m.modules() if isinstance(n, _BatchNorm)] for g in groups]
            seen.append(([all(g) for g in params], norms, all(p.requires_grad for p in state.model.head.parameters())))

    _fit(tiny_images, tmp_path / "run", strategy="gradual", epochs=3, image_size=40, callbacks=[RecordFreezing()])
    assert len(seen) == 3
    for epoch, (trainable, norms, head) in enumerate(seen):
        n = len(trainable)
        assert trainable == [i >= n - epoch for i in range(n)], epoch  # the head alone, then +1 group from the output side
        assert all(norms) and all(modes == [t] * len(modes) for modes, t in zip(norms, trainable)), epoch  # frozen BN: eval
        assert head, epoch
    assert "(0/" in capsys.readouterr().err  # the frozen/trainable counts are reported


def test_early_stopping_stops(tiny_images, tmp_path):
    run = _fit(tiny_images, tmp_path / "run", epochs=30, patience=2, lr=0.05, probe_solver="sgd")
    assert run.metrics["epochs"] < 30 and "early stopping" in run.metrics["stopped_early"]


def test_label_smoothing_mixup_and_onecycle_each_change_training(tmp_path):
    data = make_image_folder(tmp_path / "images", per_class=12)  # 18 train / 18 val images
    images = sorted(data.glob("*/*.png"))
    kw = dict(strategy="finetune", epochs=4, lr=0.01, batch_size=6, image_size=40, augment="none",
              val_fraction=0.5, monitor="loss")  # best epoch = lowest val loss: the most confident one
    plain = _fit(data, tmp_path / "plain", **kw)
    smoothed = _fit(data, tmp_path / "smoothed", label_smoothing=0.3, schedule="onecycle", **kw)
    mixed = _fit(data, tmp_path / "mixed", mix="mixup-cutmix", **kw)
    for run in (plain, smoothed, mixed):
        # >= 15 of 18 right; a uniform random guesser gets there with probability 1.9e-5 (binomial, p = 1/3).
        assert run.metrics["val"]["accuracy"] >= 0.8

    def confidence(run) -> float:
        return sum(p.score for p in graftkit.load(run.dir, calibrated=False).predict(images)) / len(images)  # the model, not its calibration

    # Smoothing 0.3 over 3 classes makes 0.8 / 0.1 / 0.1 the loss-minimising answer: the model stays that unsure,
    # while the same training without it becomes (nearly) certain.
    assert confidence(plain) > 0.9 and confidence(smoothed) < 0.85

    # Mixup/cutmix trains on blended images against soft targets, whose loss cannot fall to 0.
    def mean_train_loss(run) -> float:
        return sum(row["train_loss"] for row in run.history) / len(run.history)

    assert mean_train_loss(mixed) > mean_train_loss(plain) + 0.1
    # lr after each epoch (3 steps): onecycle warms up from 4 % over 30 % of the steps, then anneals to 0;
    # cosine's 10 % warm-up is over within the first epoch.
    one_cycle, cosine = [r["lr"] for r in smoothed.history], [r["lr"] for r in plain.history]
    assert one_cycle[0] < one_cycle[1] > one_cycle[2] > one_cycle[3] == 0.0
    assert cosine[0] > cosine[1] > cosine[2] > cosine[3] == 0.0


def test_balanced_class_weights_undo_the_majority_prior(tmp_path):
    data = make_image_folder(tmp_path / "imbalanced", per_class=16)
    for name in ("dog", "fox"):  # 16 cats, 4 dogs, 4 foxes
        for i in range(4, 16):
            (data / name / f"{name}_{i}.png").unlink()
    balanced = sorted(make_image_folder(tmp_path / "balanced", per_class=8).glob("*/*.png"))

    def mean_p_cat(run) -> float:
        preds = graftkit.load(run.dir, calibrated=False).predict(balanced, top_k=3)  # the trained prior, not its calibration
        return sum(dict(p.top_k)["cat"] for p in preds) / len(preds)

    kw = dict(epochs=40, lr=0.05, image_size=40, patience=40, probe_solver="sgd")  # all 40 epochs: the prior needs them to settle; the solved probe is pinned in test_solver.py
    plain = _fit(data, tmp_path / "plain", **kw)
    weighted = _fit(data, tmp_path / "weighted", class_weights="balanced", **kw)
    # A probe on a random backbone's weak features leaves the class prior in charge: trained on 2/3
    # cats, it gives "cat" about 0.5-0.6 on a balanced set; inverse-frequency weights bring that to ~1/3.
    assert mean_p_cat(weighted) < 0.42 and mean_p_cat(plain) > mean_p_cat(weighted) + 0.1


def test_probe_learns_separable_data(tmp_path):
    data = make_image_folder(tmp_path / "images", per_class=12)
    run = _fit(data, tmp_path / "run", epochs=30, lr=0.01, val_fraction=0.5)
    assert run.metrics["val"]["n"] == 18
    # >= 15 of 18 right; a uniform random guesser gets there with probability 1.9e-5 (binomial, p = 1/3).
    assert run.metrics["val"]["accuracy"] >= 0.8


class _Interrupt:
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.at_epoch:
            raise KeyboardInterrupt
        return None


@pytest.mark.parametrize("strategy", ["finetune", "linear-probe"])
def test_resume_after_interruption_matches_uninterrupted(tiny_images, tmp_path, strategy):
    kw = dict(strategy=strategy, epochs=3, augment="light", probe_solver="sgd")  # the loop's resume (a solved probe has no epochs)
    full = _fit(tiny_images, tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        _fit(tiny_images, tmp_path / "cut", callbacks=[_Interrupt(2)], **kw)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = graftkit.fit(tiny_images, out=tmp_path / "cut", resume=True)
    assert resumed.metrics["val"] == full.metrics["val"]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 3


def test_split_folder_reports_test_metrics(tiny_split_images, tmp_path):
    run = _fit(tiny_split_images, tmp_path / "run")
    assert "test" in run.metrics and run.metrics["test"]["n"] == 9


def test_callbacks_decide_to_stop(tiny_images, tmp_path):
    class StopNow:
        def on_epoch_end(self, state):
            return Decision(stop=True, reason="enough")

    run = _fit(tiny_images, tmp_path / "run", epochs=5, callbacks=[StopNow()], probe_solver="sgd")
    assert run.metrics["epochs"] == 1 and run.metrics["stopped_early"] == "enough"


def test_epoch_metrics_match_the_report_definitions():
    import numpy as np

    from graftkit.evaluation import classification_metrics
    from graftkit.tasks import ClassificationTask

    rng = np.random.default_rng(0)
    task = ClassificationTask(["a", "b", "c", "d"])
    y = rng.integers(0, 3, 50)  # class d absent from targets
    probs = rng.random((50, 4))
    quick, full = task.epoch_metrics(probs, y), classification_metrics(y, probs, task.classes)
    for k in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert abs(quick[k] - full[k]) < 1e-5, k


def test_builtin_model_trains_and_predicts_with_sockets_disabled(tiny_images, tmp_path, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse)
    run = _fit(tiny_images, tmp_path / "run", model="efficientnet_lite0", epochs=1, image_size=64)
    assert json.loads((run.dir / "graft.json").read_text())["model"]["sha256"].startswith("5793442")
    assert graftkit.load(run.dir).predict([next(tiny_images.glob("cat/*.png"))])[0].label in ("cat", "dog", "fox")


def test_finetune_can_warm_up_the_head_as_a_probe(tiny_images, tmp_path, capsys):
    run = _fit(tiny_images, tmp_path / "a", strategy="finetune", epochs=1, head_init="probe")
    assert "head warm-up" in capsys.readouterr().err
    assert run.metrics["features"]["computed"] == 24  # train + val features for the warm-up
    _fit(tiny_images, tmp_path / "b", strategy="finetune", epochs=1)
    assert "head warm-up" not in capsys.readouterr().err


def test_tune_malloc_is_idempotent_and_can_be_switched_off(monkeypatch):
    import graftkit.engine.memory as engine

    monkeypatch.setattr(engine, "_MALLOC_TUNED", False)
    monkeypatch.setenv("GRAFTKIT_TUNE_MALLOC", "0")
    assert engine.tune_malloc() is False
    monkeypatch.delenv("GRAFTKIT_TUNE_MALLOC")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    first = engine.tune_malloc()
    assert engine.tune_malloc() is first  # glibc Linux: True; elsewhere: False, and nothing breaks
