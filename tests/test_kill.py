"""Runs survive being killed (issue 11, item 4): real `graft train` subprocesses, stopped by SIGTERM
and by `kill -9` mid-epoch and mid-checkpoint-write, then `--resume`d, end with the metrics of an
uninterrupted run and leave no damaged file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_MODEL, make_image_folder

GRAFT = str(Path(sys.executable).with_name("graft"))
SLOW_SAVE = Path(__file__).with_name("netguard_site").parent / "kill_site"
EPOCHS = 3


def _args(data: Path, out: Path) -> list[str]:
    return [GRAFT, "train", str(data), "--model", TINY_MODEL, "--out", str(out), "--strategy", "finetune", "--epochs", str(EPOCHS),
            "--batch-size", "4", "--num-workers", "0", "--lr", "0.01", "--image-size", "32", "--augment", "none", "--seed", "3"]  # fmt: skip


def _start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"graft train ended before the test could stop it: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.2)


def _epochs_done(run: Path) -> int:
    """Epochs in the saved checkpoint (replaced atomically, so it always reads whole)."""
    last = run / "checkpoints" / "last.pt"
    return torch.load(last, weights_only=True)["epoch"] if last.is_file() else 0


def _final(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    timing = ("seconds", "throughput")
    return {"val": metrics["val"], "best_epoch": metrics["best_epoch"], "history": [{k: v for k, v in r.items() if k not in timing} for r in history]}


def _assert_whole(run: Path) -> None:
    """Every file of the finished run reads back; no temporary file is left."""
    assert not list(run.rglob(".*.tmp")), list(run.rglob(".*.tmp"))
    for f in run.rglob("*.json"):
        json.loads(f.read_text())
    load_file(str(run / "model.safetensors"))
    torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    data = make_image_folder(root / "images", per_class=8)
    run = root / "reference"
    subprocess.run(_args(data, run), check=True, capture_output=True, timeout=600)
    return data, _final(run)


def test_sigterm_then_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    data, reference = uninterrupted
    run = tmp_path / "run"
    proc = _start(_args(data, run))
    _wait_for(lambda: _epochs_done(run) >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM)" in err and "--resume" in err and "Traceback" not in err

    proc = _start(_args(data, run) + ["--resume"])
    _wait_for(lambda: _epochs_done(run) >= 2, proc)
    time.sleep(0.3)  # into the next epoch
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait(timeout=60)

    done = subprocess.run(_args(data, run) + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _final(run) == reference
    _assert_whole(run)


def test_kill_9_mid_checkpoint_write_keeps_the_previous_checkpoint(uninterrupted, tmp_path):
    """The second checkpoint write stalls half-way (tests/kill_site) and the process is killed there."""
    data, reference = uninterrupted
    run = tmp_path / "run"
    marker = tmp_path / "stalled"
    path = os.pathsep.join(p for p in (str(SLOW_SAVE), os.environ.get("PYTHONPATH", "")) if p)
    proc = _start(_args(data, run), PYTHONPATH=path, GRAFTKIT_TEST_STALL_SAVE=str(marker))
    _wait_for(marker.exists, proc)
    assert (run / "checkpoints" / ".last.pt.tmp").is_file()  # the half-written checkpoint
    proc.kill()
    proc.wait(timeout=60)
    first = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert first["epoch"] == 1  # the previous checkpoint, whole

    done = subprocess.run(_args(data, run) + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _final(run) == reference
    _assert_whole(run)
