"""Several processes through Accelerate (`--devices N`): 2 CPU processes on gloo over loopback.

Tolerance: the model (a tiny ViT: LayerNorm, no BatchNorm, no dropout) computes every sample alone,
so 2 processes with half of each global batch differ from 1 process only by the order of float
sums in DDP's all-reduce: losses agree to 1e-4 relative (measured: the same to 6 digits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import graftkit
from tests.conftest import make_image_folder

VIT = "scratch:timm:test_vit"  # LayerNorm only: a sample's output does not depend on its batch
ROOT = Path(__file__).resolve().parents[1]
REL = 1e-4


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}


def _graft(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "graftkit.cli", *args], env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def split_data(tmp_path) -> Path:
    """24 train images (3 global batches of 8: no padding), 9 val images (uneven over 2 processes)."""
    make_image_folder(tmp_path / "data" / "train", per_class=8)
    make_image_folder(tmp_path / "data" / "val", per_class=3)
    return tmp_path / "data"


def test_ranks_see_disjoint_equal_shards_and_evaluation_counts_each_sample_once(tmp_path):
    out = tmp_path / "ranks"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(ROOT / "tests" / "distributed_worker.py"), str(out)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["batches"] == ranks[1]["batches"] == 3  # --batch-size is the global batch: 24 / 8
    for epoch in range(2):
        seen = [[i for batch in rank["train"][epoch] for i in batch] for rank in ranks]
        assert len(seen[0]) == len(seen[1]) == 12 and not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == list(range(24))
        # Together, the ranks' halves of each batch are one process's batch, in its order.
        one = DataLoader(TensorDataset(torch.arange(24)), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(epoch))
        assert [a + b for a, b in zip(ranks[0]["train"][epoch], ranks[1]["train"][epoch])] == [x.tolist() for (x,) in one]
    # 21 samples over 2 x 4 per batch: Accelerate repeats 3 to even out the last batch; gather_for_metrics drops them.
    assert ranks[0]["eval"] == ranks[1]["eval"] == list(range(21))
    assert ranks[0]["refused"] == "--batch-size 7 is the global batch and must divide evenly over 2 processes (--devices 2): use a multiple of 2"


def _history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def _assert_same_training(two: Path, one: Path) -> None:
    h2, h1 = _history(two), _history(one)
    assert len(h2) == len(h1)
    for a, b in zip(h2, h1):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=REL), (key, a, b)
    m2, m1 = (json.loads((d / "metrics.json").read_text())["val"] for d in (two, one))
    assert m2["n"] == m1["n"] == 9  # every validation image once, none repeated
    assert m2["accuracy"] == m1["accuracy"] and m2["loss"] == pytest.approx(m1["loss"], rel=REL)
    assert m2["confusion_matrix"] == m1["confusion_matrix"]


FLAGS = dict(model=VIT, strategy="finetune", head_init="probe", epochs=2, batch_size=8, augment="none", device="cpu", num_workers=0,
             lr=3e-3, image_size=32, feature_cache=False, precision="fp32")
"""LP-FT: the head warm-up runs the probe's feature pass (sharded, gathered once), then fine-tuning in DDP."""


def _cli_flags(**kw) -> list[str]:
    flags = []
    for key, value in {**FLAGS, **kw}.items():
        flags += ["--no-feature-cache"] if key == "feature_cache" else [f"--{key.replace('_', '-')}", str(value)]
    return flags


class _Interrupt:
    def on_epoch_end(self, state):
        if state.epoch == 0:
            raise KeyboardInterrupt
        return None


def test_two_processes_train_and_resume_as_one_process_with_the_same_global_batch(split_data, tmp_path):
    graftkit.fit(split_data, out=tmp_path / "one", **FLAGS)
    result = _graft("train", str(split_data), "--devices", "2", "--out", str(tmp_path / "two"), *_cli_flags())
    assert "features: 33 computed" in result.stderr  # 24 train + 9 val, each once over the 2 processes
    _assert_same_training(tmp_path / "two", tmp_path / "one")
    assert result.stderr.count("val accuracy") == 1  # rank 0 alone reports (and writes the run)
    assert graftkit.load(tmp_path / "two").predict([next((split_data / "val" / "cat").iterdir())])[0].label == "cat"

    # A run that one process started and that was interrupted after epoch 1 continues in 2 processes.
    with pytest.raises(KeyboardInterrupt):
        graftkit.fit(split_data, out=tmp_path / "cut", callbacks=[_Interrupt()], **FLAGS)
    _graft("train", str(split_data), "--devices", "2", "--out", str(tmp_path / "cut"), "--resume")
    _assert_same_training(tmp_path / "cut", tmp_path / "one")
