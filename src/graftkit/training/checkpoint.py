"""Checkpoint every epoch and resume after an interruption.

`checkpoints/last.pt` holds tensors and plain values only and is read with `weights_only=True`;
`checkpoints/best.safetensors` holds the best epoch's weights. Both are replaced atomically, so a
crash mid-write never corrupts what was saved before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from graftkit.errors import RunDirError
from graftkit.rundir import atomic_write, remove_stale_temporaries
from graftkit.training.loop import Decision, LoopState


def save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (contiguous CPU copies; shared storage is cloned)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


class Checkpointer:
    """Callback: after every epoch write what `--resume` needs; append the epoch to history.jsonl."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.history_path = Path(run_dir) / "history.jsonl"
        self.dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, state: LoopState) -> Decision | None:
        with open(self.history_path, "a") as f:
            f.write(json.dumps(state.history[-1]) + "\n")
        if state.improved and state.best_state is not None:
            save_safetensors(state.best_state, self.dir / "best.safetensors")
        payload = {
            "epoch": state.epoch + 1,  # epochs completed
            "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "best_epoch": state.best_epoch,
            "best_score": state.best_score,
            "history": json.dumps(state.history),
        }
        atomic_write(self.dir / "last.pt", lambda tmp: torch.save(payload, tmp))
        return None


@dataclass
class ResumePoint:
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_epoch: int | None
    best_score: float | None
    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]


def load_resume_point(run_dir: Path, *, rewrite_history: bool = True) -> ResumePoint:
    """Read `checkpoints/last.pt` (+ best weights) without unpickling arbitrary objects.

    Args:
        rewrite_history: Rewrite history.jsonl from the checkpoint (False: a process other than
            rank 0 of a multi-process run, which only reads).

    Raises:
        RunDirError: no checkpoint to resume from.
    """
    path = Path(run_dir) / "checkpoints" / "last.pt"
    for folder in (path.parent, Path(run_dir)) if rewrite_history else ():
        remove_stale_temporaries(folder)  # a process killed mid-write left them; the files they replace are whole
    if not path.is_file():
        raise RunDirError(f"cannot resume: {path} does not exist. Start the run without --resume.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        best_path = path.with_name("best.safetensors")
        best_state = load_file(str(best_path)) if best_path.is_file() else None
    except Exception as e:  # truncated or foreign files: torch / safetensors name no file
        raise RunDirError(f"cannot resume: {path.parent} holds a damaged checkpoint ({str(e).splitlines()[0][:120]}). "
                          "Start the run again with --overwrite.") from None
    history = json.loads(ckpt["history"])
    # history.jsonl may hold an epoch written after the checkpoint: rewrite it from the checkpoint.
    if rewrite_history:
        (Path(run_dir) / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    return ResumePoint(
        ckpt["epoch"], ckpt["model"], ckpt["optimizer"], ckpt["scheduler"], ckpt["best_epoch"], ckpt["best_score"], best_state, history
    )
