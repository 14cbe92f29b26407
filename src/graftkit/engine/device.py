"""The seam between the training loop and the hardware.

Device placement, mixed precision, backward, gradient accumulation, gradient clipping and metric
reduction go through an `Engine`, so that multi-GPU training can hand them to Lightning Fabric or
Accelerate (whose objects have the same verbs) without touching the loop. `LocalEngine` is the
single-process default, `AccelerateEngine` (`engine/distributed.py`) one of several processes; `engine/precision.py` decides its precision and memory format.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Protocol

import torch
from torch import nn


class Engine(Protocol):
    """What the loop needs from the hardware layer."""

    device: torch.device
    precision: str
    channels_last: bool
    is_main: bool

    def setup(self, model: nn.Module) -> nn.Module: ...
    def to_device(self, batch: Any) -> Any: ...
    def autocast(self) -> contextlib.AbstractContextManager: ...
    def accumulate(self, model: nn.Module, *, step: bool) -> contextlib.AbstractContextManager:
        """Wraps one micro-batch's forward and backward; `step` says an optimizer step follows it.

        Multi-process engines all-reduce gradients only before a step (DDP's `no_sync`, Fabric's
        `no_backward_sync(model, enabled=not step)`, Accelerate's `no_sync`); the loop itself
        decides when to step and scales the loss (see `train_loop`).
        """
        ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor: ...
    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor: ...
    def shard(self, loader: Any) -> Any:
        """This process's share of a loader (several processes: a disjoint 1/N of every batch)."""
        ...
    def gather(self, value: torch.Tensor) -> torch.Tensor:
        """A batch's per-sample rows from every process, each sample once (`gather_for_metrics`)."""
        ...
    def wait(self) -> None:
        """Wait until every process gets here (one process: returns at once)."""
        ...


class LocalEngine:
    """One process, one device (CPU by default)."""

    def __init__(self, device: str | torch.device = "cpu", precision: str = "fp32", channels_last: bool = False) -> None:
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = channels_last
        self.is_main = True

    def setup(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.device, channels_last=self.channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.precision == "fp16":  # inference only: fp16 training needs loss scaling (make_engine gives it Accelerate's)
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def accumulate(self, model: nn.Module, *, step: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # one process: no gradients to synchronise between micro-batches

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()  # bf16 autocast needs no loss scaling

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor:
        params = [p for p in model.parameters() if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        return value  # single process: nothing to reduce

    def shard(self, loader: Any) -> Any:
        return loader  # one process sees every batch

    def gather(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def wait(self) -> None:
        return None


def move_to_device(batch: Any, device: torch.device, *, channels_last: bool = False) -> Any:
    """`batch` on `device`: tensors, and lists, tuples and dicts of them (tokenized text:
    input_ids, attention_mask, labels); 4-D image batches in channels_last when asked."""
    if isinstance(batch, torch.Tensor):
        if channels_last and batch.ndim == 4:
            return batch.to(device, memory_format=torch.channels_last, non_blocking=True)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(b, device, channels_last=channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device, channels_last=channels_last) for k, v in batch.items()}
    return batch


def resolve_device(requested: str = "auto") -> str:
    """`auto` → `cuda` when a CUDA GPU is usable, else `cpu`; an unusable `cuda` is a ConfigError."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        from graftkit.errors import ConfigError

        raise ConfigError(f"--device {requested}: no CUDA GPU is usable here (torch.cuda.is_available() is False); use --device cpu")
    return requested


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily switch to eval mode, restoring each module's own mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.train(mode)
