"""The seam between the training loop and the hardware.

Device placement, mixed precision, backward, gradient clipping and metric reduction go through an
`Engine`, so that multi-GPU training can hand them to Lightning Fabric or Accelerate (whose objects
have the same verbs) without touching the loop. `LocalEngine` is the single-process default.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any, Iterator, Protocol

import torch
from torch import nn

# Families whose depthwise convolutions train slower in bf16 than fp32 on CPUs (measured in
# benchmarks/precision.py; PERFORMANCE.md: EfficientNet-Lite0 training 20 → 22 img/s, MobileNetV3 47 → 34).
_DEPTHWISE_FAMILIES = ("efficientnet", "mobilenet", "mnasnet", "ghostnet", "lcnet", "fbnet", "mixnet", "lite")
_NOT_CHANNELS_LAST = ("vit", "deit", "swin", "beit", "eva", "test_vit")


class Engine(Protocol):
    """What the loop needs from the hardware layer."""

    device: torch.device
    precision: str
    is_main: bool

    def setup(self, model: nn.Module) -> nn.Module: ...
    def to_device(self, batch: Any) -> Any: ...
    def autocast(self) -> contextlib.AbstractContextManager: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor: ...
    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor: ...


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
        if isinstance(batch, torch.Tensor):
            if self.channels_last and batch.ndim == 4:
                return batch.to(self.device, memory_format=torch.channels_last, non_blocking=True)
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):  # tokenized text: input_ids, attention_mask, labels
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()  # bf16 autocast needs no loss scaling

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor:
        params = [p for p in model.parameters() if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        return value  # single process: nothing to reduce


def resolve_device(requested: str = "auto") -> str:
    """`auto` → `cuda` when a CUDA GPU is usable, else `cpu`; an unusable `cuda` is a ConfigError."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        from graftkit.errors import ConfigError

        raise ConfigError(f"--device {requested}: no CUDA GPU is usable here (torch.cuda.is_available() is False); use --device cpu")
    return requested


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def choose_precision(arch: str, *, training: bool, requested: str = "auto", device: str = "cpu") -> tuple[str, str]:
    """Pick `fp32` or `bf16` for a model, and say why.

    Rule (measured, benchmarks/RESULTS.md): bf16 only where the hardware has native bf16; on CPU,
    not for training depthwise-convolution nets, which train slower in bf16.

    Returns:
        (precision, reason)
    """
    if requested != "auto":
        return requested, "requested"
    if device.startswith("cuda"):
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ("bf16", "CUDA device with bf16") if ok else ("fp32", "CUDA device without bf16")
    if not cpu_has_native_bf16():
        return "fp32", "this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 would be emulated and slower"
    name = arch.lower()
    if training and any(f in name for f in _DEPTHWISE_FAMILIES):
        return "fp32", "depthwise-convolution net: trains slower in bf16 than fp32 on CPU"
    return "bf16", "CPU with native bf16: about 2x faster than fp32 for this model"


def choose_channels_last(arch: str, requested: bool | None = None) -> bool:
    """channels_last for CNNs (1.2-1.7x on CPU), not for transformers."""
    if requested is not None:
        return requested
    return not any(f in arch.lower() for f in _NOT_CHANNELS_LAST)


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


_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Keep freed memory in the process instead of returning it to the OS after every tensor.

    With glibc's defaults every large activation tensor is a fresh `mmap` that is unmapped when
    freed, so each forward pass page-faults its activations in again. Serving large blocks from
    the heap and not trimming it measured 2.2x faster EfficientNet-Lite0 inference on a 2-core
    Xeon (25.7 -> 56-58 img/s; tcmalloc: 64), with no new dependency (benchmarks/RESULTS.md).
    The cost: the process keeps its peak memory until it exits, as tcmalloc/jemalloc do.

    Called by `graft` commands, `fit` and `load`; set `GRAFTKIT_TUNE_MALLOC=0` to opt out.
    Does nothing outside glibc (macOS, Windows, musl) or when another allocator is preloaded.

    Returns:
        Whether the settings were applied (now or earlier).
    """
    global _MALLOC_TUNED
    import os
    import sys

    if _MALLOC_TUNED:
        return True
    if os.environ.get("GRAFTKIT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(lib in os.environ.get("LD_PRELOAD", "") for lib in ("tcmalloc", "jemalloc", "mimalloc")):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # glibc's mallopt parameter numbers
        _MALLOC_TUNED = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
    return _MALLOC_TUNED
