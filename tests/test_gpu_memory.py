"""GPU memory features on a real CUDA device (`-m gpu`, skipped without CUDA): an actual
out-of-memory error backed off, the activation memory gradient checkpointing saves, fp16 training
through Accelerate's loss scaler. The CPU tests (`test_memory_saving.py`) pin the same code paths
with a simulated error; these check what only a GPU can."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import graftkit
from graftkit.engine import LocalEngine, enable_grad_checkpointing
from graftkit.sources import load_backbone
from graftkit.tasks import ClassificationTask
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.config import TrainConfig
from graftkit.training.loop import train_loop

from .conftest import TINY_MODEL

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


class Hungry(nn.Module):
    """Allocates `per_sample` bytes of activations per sample: a batch of 8 cannot fit, 2 can."""

    def __init__(self, per_sample: int) -> None:
        super().__init__()
        self.linear, self.per_sample = nn.Linear(8, 3), per_sample

    def forward(self, x):
        if self.training:
            scratch = torch.empty(len(x) * self.per_sample, dtype=torch.uint8, device=x.device)
            x = x + scratch[:1].float() * 0  # keep it alive through the forward
        return self.linear(x)


def test_a_real_cuda_out_of_memory_backs_off_to_a_batch_that_fits():
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    model = Hungry(per_sample=int(free / 3)).cuda()  # 8 and 4 samples exceed the free memory, 2 fit
    y = torch.arange(32) % 3
    data = TensorDataset(torch.randn(32, 8), y)
    cfg = TrainConfig(batch_size=8, epochs=1, lr=0.01, monitor="accuracy")
    loader = DataLoader(data, batch_size=8)
    optimizer, scheduler = build_optimizer([{"params": list(model.parameters())}], cfg, len(loader), None)
    result = train_loop(model, loader, None, task=ClassificationTask(["a", "b", "c"]), optimizer=optimizer, scheduler=scheduler,
                        engine=LocalEngine("cuda"), options=loop_options(cfg, None, progress=False))  # fmt: skip
    assert result.batch_size_used == 2 and len(result.history) == 1


def test_grad_checkpointing_lowers_peak_memory_on_the_gpu():
    def peak(checkpointing: bool) -> int:
        backbone = load_backbone("scratch:timm:test_vit").cuda().train()
        if checkpointing:
            enable_grad_checkpointing(backbone)
        x = torch.randn(64, 3, 160, 160, device="cuda")
        torch.cuda.reset_peak_memory_stats()
        backbone.forward_features(x).float().pow(2).mean().backward()
        return torch.cuda.max_memory_allocated()

    assert peak(True) < 0.8 * peak(False)


def test_fp16_fine_tuning_trains_with_the_loss_scaler(tiny_images):
    run = graftkit.fit(tiny_images, model=TINY_MODEL, strategy="finetune", out="runs/fp16", epochs=2, batch_size=8,
                       device="cuda", precision="fp16")  # fmt: skip
    precision = json.loads((run.dir / "graft.json").read_text())["precision"]
    assert precision["train"] == "fp16"
    assert all(row["train_loss"] == row["train_loss"] for row in run.history)  # finite (the scaler skipped any overflow)
    assert graftkit.load(run.dir).predict([next(tiny_images.glob("cat/*.png"))])[0].label in ("cat", "dog", "fox")
