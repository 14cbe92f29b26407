"""The one training loop: per-batch events, gradient accumulation, the metric's direction, and the
one inference-precision rule that every command goes through."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from graftkit.engine import LocalEngine, choose_channels_last, choose_precision, inference_settings, run_inference_settings, training_settings
from graftkit.tasks import ClassificationTask
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.config import TrainConfig
from graftkit.training.loop import Decision, LoopOptions, train_loop
from tests.conftest import TINY_MODEL

TASK = ClassificationTask(["a", "b", "c"])


def _features(n: int = 40, d: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, d, generator=g) + 2.0 * torch.nn.functional.one_hot(y, d).float()
    return TensorDataset(x, y)


def _head(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 3)


class Recorder:
    """A batch-only callback: keeps every state and may stop after `stop_after` batches."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.states, self.stop_after = [], stop_after

    def on_batch_end(self, state):
        self.states.append(state)
        if self.stop_after is not None and len(self.states) == self.stop_after:
            return Decision(stop=True, reason="enough batches")
        return None


def _train(batch_size: int, accumulate: int, epochs: int = 2, callbacks=()):
    data = _features()
    cfg = TrainConfig(batch_size=batch_size, accumulate=accumulate, epochs=epochs, lr=0.05, grad_clip=0.5, monitor="accuracy",
                      schedule="cosine", warmup_fraction=0.2)  # fmt: skip
    head = _head()
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    groups = [{"params": [head.weight], "weight_decay": cfg.weight_decay}, {"params": [head.bias], "weight_decay": 0.0}]
    optimizer, scheduler = build_optimizer(groups, cfg, cfg.epochs * len(loader), None)
    result = train_loop(head, loader, DataLoader(data, batch_size=64), task=TASK, optimizer=optimizer, scheduler=scheduler,
                        engine=LocalEngine(), options=loop_options(cfg, None, progress=False), callbacks=callbacks)  # fmt: skip
    return head, result, scheduler


def test_accumulating_two_batches_of_8_trains_like_one_batch_of_16():
    recorder = Recorder()
    big, big_result, big_sched = _train(16, 1)
    small, small_result, small_sched = _train(8, 2, callbacks=[recorder])
    # 40 examples: batches of 16 are 16, 16, 8; micro-batches of 8 step after 2, 4 and the 5th (the epoch's end).
    assert torch.allclose(big.weight, small.weight, atol=1e-5) and torch.allclose(big.bias, small.bias, atol=1e-5)
    assert big_sched.last_epoch == small_sched.last_epoch == 6  # scheduler steps = optimizer steps
    assert [s.stepped for s in recorder.states[:5]] == [False, True, False, True, True]
    assert [s.step for s in recorder.states[:5]] == [0, 1, 1, 2, 3] and recorder.states[-1].step == 6
    assert [h["train_loss"] for h in big_result.history] == pytest.approx([h["train_loss"] for h in small_result.history], abs=1e-5)


def test_accumulate_is_validated_and_a_flag():
    from graftkit.cli import build_parser
    from graftkit.errors import ConfigError

    with pytest.raises(ConfigError, match="--accumulate must be at least 1"):
        TrainConfig(accumulate=0)
    args = build_parser().parse_args(["train", "data", "--accumulate", "4"])
    assert args.accumulate == 4


def test_a_batch_callback_sees_each_batch_and_can_stop_at_once():
    recorder = Recorder(stop_after=4)
    head, result, _ = _train(8, 1, epochs=3, callbacks=[recorder])
    states = recorder.states
    assert len(states) == 4 and result.stopped_early == "enough batches"
    assert result.history == []  # stopped in the first epoch: no validation, no epoch row
    first = states[0]
    assert (first.epoch, first.epochs, first.batch, first.batches, first.step, first.batch_size) == (0, 3, 0, 5, 1, 8)
    assert first.stepped and first.loss > 0 and first.lr > 0 and first.seconds >= 0 and first.data_seconds >= 0
    with pytest.raises(Exception):
        first.loss = 0.0  # read-only


def test_the_best_epoch_follows_the_tasks_metric_direction():
    data = _features()
    head = _head()
    loader = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    result = train_loop(head, loader, DataLoader(data, batch_size=64), task=TASK, optimizer=optimizer, scheduler=scheduler,
                        engine=LocalEngine(), options=LoopOptions(epochs=4, monitor="loss", progress=False))  # fmt: skip
    losses = [h["val_loss"] for h in result.history]
    assert TASK.metrics["loss"].higher_is_better is False
    assert result.best_score == min(losses) and result.best_epoch == losses.index(min(losses))


def test_no_validation_loader_trains_without_best_tracking():
    data = _features()
    head = _head()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    result = train_loop(head, DataLoader(data, batch_size=8), None, task=TASK, optimizer=optimizer, scheduler=scheduler,
                        engine=LocalEngine(), options=LoopOptions(epochs=2, progress=False))  # fmt: skip
    assert len(result.history) == 2 and result.best_epoch is None and "val_loss" not in result.history[0]


# --- one place decides precision -----------------------------------------------------------------


def _run(arch: str = "timm:resnet18", modality: str = "image", **config) -> SimpleNamespace:
    return SimpleNamespace(model=SimpleNamespace(arch=arch), modality=modality, config=config)


def test_inference_settings_apply_the_rule_for_the_device_and_honour_requests():
    s = inference_settings("timm:resnet18", device="cpu")
    assert (s.device, s.precision, s.reason) == ("cpu", *choose_precision("timm:resnet18", training=False, device="cpu"))
    assert s.channels_last is choose_channels_last("timm:resnet18")
    assert inference_settings("timm:resnet18", device="cpu", precision="bf16").precision == "bf16"
    assert inference_settings("timm:resnet18", device="cpu", channels_last=False).channels_last is False
    assert inference_settings("hf:bert", device="cpu", modality="text").channels_last is False  # only image batches
    t = training_settings("timm:efficientnet_lite0", device="cpu")
    assert t.precision == choose_precision("timm:efficientnet_lite0", training=True, device="cpu")[0]
    assert isinstance(s.engine(), LocalEngine) and s.engine().precision == s.precision
    from graftkit.errors import ConfigError

    with pytest.raises(ConfigError, match="--precision 'fp8' is not one of auto, fp32, bf16, fp16"):
        inference_settings("timm:resnet18", device="cpu", precision="fp8")
    with pytest.raises(ConfigError, match=r"--precision fp16 needs a CUDA GPU \(device here: cpu\)"):
        inference_settings("timm:resnet18", device="cpu", precision="fp16")


def test_a_run_is_re_decided_for_the_device_unless_someone_asked():
    rule = inference_settings("timm:resnet18", device="cpu")
    assert run_inference_settings(_run(precision="auto")) == rule  # what it trained in elsewhere is not reused
    asked = run_inference_settings(_run(precision="bf16", channels_last=False))
    assert (asked.precision, asked.channels_last) == ("bf16", False) and "requested by the run" in asked.reason
    override = run_inference_settings(_run(precision="bf16"), precision="fp32", channels_last=True)
    assert (override.precision, override.channels_last, override.reason) == ("fp32", True, "requested (--precision fp32)")


@pytest.fixture
def probe_run(tiny_images, tmp_path):
    import graftkit

    return graftkit.fit(tiny_images, model=TINY_MODEL, out=tmp_path / "run", epochs=2, batch_size=8, num_workers=0, image_size=32).dir


def _engines_used(monkeypatch) -> list:
    """Record the engine `predict_probs` is called with (evaluate's forward passes)."""
    import graftkit.training.loop as loop

    seen, real = [], loop.predict_probs

    def spy(model, loader, engine, task):
        seen.append(engine)
        return real(model, loader, engine, task)

    monkeypatch.setattr(loop, "predict_probs", spy)
    return seen


def test_evaluate_and_predict_honour_an_explicit_precision(probe_run, tiny_images, monkeypatch):
    import graftkit

    seen = _engines_used(monkeypatch)
    result = graftkit.evaluate(probe_run, tiny_images, precision="fp32", channels_last=False, num_workers=0)
    assert 0 <= result["test"]["accuracy"] <= 1
    assert (seen[-1].precision, seen[-1].channels_last) == ("fp32", False)
    graftkit.evaluate(probe_run, tiny_images, precision="bf16", num_workers=0)
    assert seen[-1].precision == "bf16"
    predictor = graftkit.load(probe_run, precision="fp32", channels_last=False)
    assert (predictor.engine.precision, predictor.engine.channels_last) == ("fp32", False)
    assert graftkit.load(probe_run, precision="bf16").engine.precision == "bf16"


def test_a_run_trained_in_bf16_on_cuda_evaluates_in_the_precision_of_this_cpu(probe_run, tiny_images, monkeypatch):
    import graftkit

    meta = json.loads((probe_run / "graft.json").read_text())
    meta["precision"] = {"train": "bf16", "train_reason": "CUDA device with bf16", "inference": "bf16",
                         "inference_reason": "CUDA device with bf16", "channels_last": False, "device": "cuda"}  # fmt: skip
    (probe_run / "graft.json").write_text(json.dumps(meta))
    arch = meta["model"]["arch"]
    expected = choose_precision(arch, training=False, device="cpu")[0]
    seen = _engines_used(monkeypatch)
    graftkit.evaluate(probe_run, tiny_images, num_workers=0)
    assert (seen[-1].device.type, seen[-1].precision, seen[-1].channels_last) == ("cpu", expected, choose_channels_last(arch))
    predictor = graftkit.load(probe_run)
    assert predictor.engine.precision == expected


def test_the_commands_take_precision_and_channels_last():
    from graftkit.cli import build_parser

    parser = build_parser()
    for argv in (["evaluate", "RUN", "DATA"], ["predict", "RUN", "x.png"], ["export", "RUN"], ["serve", "RUN"],
                 ["rank", "DATA", "--models", "a"], ["lr-find", "DATA"]):  # fmt: skip
        args = parser.parse_args([*argv, "--precision", "fp32", "--channels-last", "off"])
        assert (args.precision, args.channels_last) == ("fp32", "off"), argv
    assert parser.parse_args(["export", "RUN"]).precision == "fp32"  # the exported graph's own precision
    assert parser.parse_args(["predict", "RUN", "x.png"]).precision == "auto"


def test_an_exploding_training_loss_stops_the_loop_mid_epoch_naming_lr():
    """The training-loss check alone (no validation to catch it): the loss jumps 10^5x at batch 3."""
    from graftkit.errors import TrainingDivergedError
    from graftkit.training.loop import divergence

    assert divergence(1.0, None, 0.1) is None and divergence(2.0, 1.0, 0.1) is None
    assert "became nan" in divergence(float("nan"), 1.0, 0.1) and "exploded from 1 to 1e+05" in divergence(1e5, 1.0, 0.1)

    class Exploding(ClassificationTask):
        calls = 0

        def loss(self, logits, targets):
            Exploding.calls += 1
            return super().loss(logits, targets) * (1e5 if Exploding.calls >= 3 else 1.0)

    head = _head()
    loader = DataLoader(_features(), batch_size=8)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 1, batch 3 before any epoch gave usable weights: .*exploded.*lower --lr"):
        train_loop(head, loader, None, task=Exploding(["a", "b", "c"]), optimizer=optimizer, scheduler=scheduler,
                   engine=LocalEngine(), options=LoopOptions(epochs=2, progress=False))  # fmt: skip


def test_an_objective_replaces_the_task_loss_in_training_but_not_in_validation():
    """`LoopOptions.objective` is the seam for extra loss terms: what it returns is what trains."""
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    task = ClassificationTask(["neg", "pos"])
    calls = []

    def objective(model, inputs, targets):
        logits = model(inputs)
        calls.append(len(inputs))
        return task.loss(logits, targets) + 100.0, logits  # a constant: same gradients, a visible loss

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    result = train_loop(model, loader, loader, task=task, optimizer=opt, scheduler=sched, engine=LocalEngine(),
                        options=LoopOptions(epochs=1, objective=objective, progress=False))  # fmt: skip
    assert calls == [8, 8, 8, 8]
    assert result.history[0]["train_loss"] > 100
    assert result.history[0]["val_loss"] < 2
