"""Precision and memory format: decided from the model and what the hardware reports, never assumed."""

from __future__ import annotations

from functools import lru_cache

import torch

# Families whose depthwise convolutions train slower in bf16 than fp32 on CPUs (measured in
# benchmarks/precision.py; PERFORMANCE.md: EfficientNet-Lite0 training 20 → 22 img/s, MobileNetV3 47 → 34).
_DEPTHWISE_FAMILIES = ("efficientnet", "mobilenet", "mnasnet", "ghostnet", "lcnet", "fbnet", "mixnet", "lite")
_NOT_CHANNELS_LAST = ("vit", "deit", "swin", "beit", "eva", "test_vit")


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
