"""GPU paths (`-m gpu`, skipped without CUDA): training on the device with bf16 autocast, and a
GPU-trained run predicting on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

import graftkit

from .conftest import TINY_MODEL

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("strategy", ["linear-probe", "finetune"])
def test_image_run_on_gpu_uses_bf16_and_predicts_on_cpu(tiny_images, strategy):
    run = graftkit.fit(tiny_images, model=TINY_MODEL, strategy=strategy, out=f"runs/{strategy}", epochs=2, batch_size=8)
    precision = json.loads((run.dir / "graft.json").read_text())["precision"]
    assert precision["device"] == "cuda"
    assert precision["inference"] == "bf16" and "CUDA" in precision["inference_reason"]
    cpu = graftkit.load(run.dir)  # default device: cpu, precision re-decided for it
    assert cpu.engine.device.type == "cpu"
    files = sorted(tiny_images.glob("*/*.png"))[:4]
    gpu_probs = graftkit.load(run.dir, device="cuda").predict_proba(files)
    assert torch.allclose(cpu.predict_proba(files), gpu_probs, atol=0.05)  # bf16 on the GPU vs fp32 on the CPU


def test_text_finetune_and_lora_on_gpu(tiny_bert_dir, tmp_path):
    from .test_text_train import write_sentiment_csv

    data = write_sentiment_csv(tmp_path / "r.csv", n=40)
    for strategy in ("finetune", "lora"):
        run = graftkit.fit(data, model=f"hf:{tiny_bert_dir}", strategy=strategy, out=f"runs/t-{strategy}", epochs=2, batch_size=8, offline=True)
        assert json.loads((run.dir / "graft.json").read_text())["precision"]["train"] == "bf16"
        assert graftkit.load(run.dir).predict(["the film was good"])[0].label in ("positive", "negative")
