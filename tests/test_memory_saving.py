"""GPU memory features, tested on the CPU: gradient checkpointing, the out-of-memory back-off, fp16.

What only a real GPU can show (the memory actually saved, a real CUDA OOM, fp16's loss scaler)
is not claimed here: these tests pin the code paths and the numbers they must not change.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import graftkit
from graftkit.engine import LocalEngine, choose_precision, enable_grad_checkpointing, run_inference_settings
from graftkit.engine import distributed
from graftkit.engine.oom import OomBackoff, split_batch
from graftkit.errors import ConfigError
from graftkit.sources import load_backbone
from graftkit.tasks import ClassificationTask
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.config import TrainConfig
from graftkit.training.loop import train_loop
from tests.conftest import TINY_MODEL


def _loss_and_grads(backbone: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    backbone.train()
    backbone.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = backbone.forward_features(batch).pow(2).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}


def _saved_for_backward(backbone: nn.Module, batch) -> int:
    """Elements of the tensors autograd keeps from the forward pass for the backward (activations)."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel()
        return t

    backbone.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        backbone.forward_features(batch)
    return saved[0]


def test_timm_grad_checkpointing_gives_the_same_loss_and_gradients_and_recomputes(tmp_path):
    backbone = load_backbone(TINY_MODEL)
    x = torch.randn(4, 3, 32, 32)
    kept = _saved_for_backward(backbone, x)
    loss, grads = _loss_and_grads(backbone, x)
    assert enable_grad_checkpointing(backbone) == "timm set_grad_checkpointing()"
    assert _saved_for_backward(backbone, x) < 0.5 * kept  # activations recomputed in the backward pass, not kept
    loss_ckpt, grads_ckpt = _loss_and_grads(backbone, x)
    assert torch.allclose(loss, loss_ckpt, atol=1e-6) and grads.keys() == grads_ckpt.keys()
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], rtol=1e-4, atol=1e-6), name


def test_transformers_grad_checkpointing_gives_the_same_loss_and_gradients(tiny_bert_dir):
    backbone = load_backbone(f"hf:{tiny_bert_dir}")
    batch = {"input_ids": torch.randint(5, 20, (3, 7)), "attention_mask": torch.ones(3, 7, dtype=torch.long)}
    kept = _saved_for_backward(backbone, batch)
    loss, grads = _loss_and_grads(backbone, batch)
    assert enable_grad_checkpointing(backbone).startswith("transformers ")
    assert _saved_for_backward(backbone, batch) < 0.7 * kept
    loss_ckpt, grads_ckpt = _loss_and_grads(backbone, batch)
    assert torch.allclose(loss, loss_ckpt, atol=1e-6)
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], rtol=1e-4, atol=1e-6), name


def test_a_backbone_without_checkpointing_is_refused_by_name(tiny_images, tmp_path):
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Linear(4, 4)

    with pytest.raises(ConfigError, match=r"--grad-checkpointing: Plain supports neither .*drop --grad-checkpointing"):
        enable_grad_checkpointing(Plain())
    with pytest.raises(ConfigError, match=r"--grad-checkpointing saves memory in fine-tuning.*--strategy finetune"):
        graftkit.fit(tiny_images, model=TINY_MODEL, out=tmp_path / "run", epochs=1, batch_size=8, num_workers=0, grad_checkpointing=True)


def test_graft_train_with_grad_checkpointing_fine_tunes(tiny_images, tmp_path):
    run = graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", out=tmp_path / "run", epochs=1, batch_size=8,
                       num_workers=0, grad_checkpointing=True)  # fmt: skip
    assert run.metrics["batch_size_used"] == 8 and run.config.grad_checkpointing


# ----------------------------------------------------------------------------------------------
# Out-of-memory back-off


class RunsOutOfMemory(nn.Module):
    """A linear head that raises the CUDA out-of-memory error for training batches larger than `limit`
    (validation runs without gradients, in far less memory: it is not simulated)."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(8, 3)
        self.limit, self.failures = limit, 0

    def forward(self, x):
        if self.training and self.limit is not None and len(x) > self.limit:
            self.failures += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.linear(x)


def _train(model: nn.Module, batch_size: int = 8, accumulate: int = 1):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 3
    data = TensorDataset(torch.randn(40, 8, generator=g) + nn.functional.one_hot(y, 8).float(), y)
    cfg = TrainConfig(batch_size=batch_size, accumulate=accumulate, epochs=2, lr=0.05, monitor="accuracy")
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer, scheduler = build_optimizer([{"params": list(model.parameters())}], cfg, cfg.epochs * len(loader), None)
    return train_loop(model, loader, DataLoader(data, batch_size=64), task=ClassificationTask(["a", "b", "c"]), optimizer=optimizer,
                      scheduler=scheduler, engine=LocalEngine(), options=loop_options(cfg, None, progress=False))  # fmt: skip


def test_out_of_memory_halves_the_batch_and_keeps_the_global_batch():
    plain, limited = RunsOutOfMemory(None), RunsOutOfMemory(limit=3)
    expected, result = _train(plain), _train(limited)
    assert limited.failures == 2  # 8 fails, 4 fails, then chunks of 2 for the rest of the run
    assert expected.batch_size_used == 8 and result.batch_size_used == 2
    for a, b in zip(plain.parameters(), limited.parameters()):  # chunks of 2 add up to batches of 8
        assert torch.allclose(a, b, atol=1e-5)
    assert [round(r["train_loss"], 4) for r in expected.history] == [round(r["train_loss"], 4) for r in result.history]


def test_out_of_memory_in_the_backward_pass_is_undone_before_the_retry():
    class FailsInBackward(nn.Module):
        """Runs out of memory halfway through the backward of batches > 4: the second layer's
        gradients are already accumulated when the first layer's fail."""

        def __init__(self, limit: int | None) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.first, self.second, self.limit = nn.Linear(8, 8), nn.Linear(8, 3), limit

        def forward(self, x):
            h = self.first(x)
            if self.training and self.limit is not None and len(x) > self.limit:
                def fail(grad):
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated, in backward)")

                h.register_hook(fail)
            return self.second(torch.relu(h))

    plain, limited = FailsInBackward(None), FailsInBackward(4)
    _train(plain), _train(limited)
    for a, b in zip(plain.parameters(), limited.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_out_of_memory_inside_an_accumulated_step_says_which_flags_to_change():
    class FailsOnSecond(RunsOutOfMemory):
        def forward(self, x):
            self.failures += self.training
            if self.training and self.failures == 2:  # the second micro-batch of the first step: gradients already hold the first
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return self.linear(x)

    with pytest.raises(ConfigError, match=r"out of device memory at 8 samples per forward pass inside an accumulated step .*"
                                          r"--batch-size 4 --accumulate 2"):  # fmt: skip
        _train(FailsOnSecond(None), accumulate=2)
    with pytest.raises(ConfigError, match=r"1 sample per forward pass.*--grad-checkpointing"):
        _train(RunsOutOfMemory(limit=0))


def test_other_errors_are_not_retried_and_batches_split_by_structure():
    backoff = OomBackoff()
    with pytest.raises(RuntimeError, match="not memory"):
        backoff.run(torch.zeros(4, 2), torch.zeros(4), lambda x, y, w: (_ for _ in ()).throw(RuntimeError("not memory")),
                    reset=lambda: None)  # fmt: skip
    parts = split_batch({"input_ids": torch.arange(10).view(5, 2), "attention_mask": torch.ones(5, 2)}, 2)
    assert [len(p["input_ids"]) for p in parts] == [3, 2] and torch.equal(parts[1]["input_ids"], torch.arange(6, 10).view(2, 2))


# ----------------------------------------------------------------------------------------------
# fp16


def test_fp16_is_chosen_for_cuda_without_bf16_and_refused_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("timm:resnet18", training=True, device="cuda")[0] == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("timm:resnet18", training=True, device="cuda")[0] == "bf16"
    with pytest.raises(ConfigError, match=r"--precision fp16 needs a CUDA GPU .*bf16 or fp32"):
        choose_precision("timm:resnet18", training=True, requested="fp16", device="cpu")


def test_fp16_training_goes_through_accelerate_and_an_fp16_run_predicts_on_cpu(monkeypatch):
    made = []
    monkeypatch.setattr(distributed, "AccelerateEngine", lambda *a, **k: made.append((a, k)) or "accelerate")
    assert distributed.make_engine("cuda", "fp16") == "accelerate"  # its loss scaler: fp16 gradients underflow without one
    assert isinstance(distributed.make_engine("cuda", "fp16", training=False), LocalEngine)
    with LocalEngine("cpu", precision="fp16").autocast() as ctx:
        assert ctx.fast_dtype == torch.float16
    run = type("Run", (), {"modality": "image", "config": {"precision": "fp16"}, "model": type("M", (), {"arch": "timm:resnet18"})()})()
    assert run_inference_settings(run, device="cpu").precision in ("fp32", "bf16")  # fp16 is CUDA-only: the CPU rule decides
