"""Precision and memory format: decided from the model and what the hardware reports, never assumed.

`choose_precision` / `choose_channels_last` are the rules; `training_settings` and
`inference_settings` apply them for a device (and `run_inference_settings` for a trained run), so
every command that trains or runs a model — fit, lr-find, auto, evaluate, predict, serve, export,
feature extraction — gets the same answer for the same model, device and flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, Mapping, Protocol

import torch

from graftkit.engine.device import LocalEngine, resolve_device

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


def choose_precision(arch: str, *, training: bool, requested: str = "auto", device: str = "cpu", detector: bool = False) -> tuple[str, str]:
    """Pick `fp32`, `bf16` or `fp16` for a model, and say why.

    Rule (measured, benchmarks/RESULTS.md): bf16 only where the hardware has native bf16; on CPU,
    not for training depthwise-convolution nets, which train slower in bf16. CUDA GPUs without bf16
    (before Ampere: T4, V100) get fp16, trained with loss scaling (Accelerate's); fp16 is for
    CUDA only. Detectors train in fp32 on CPU: bf16 autocast gave NaN gradients in torchvision's
    FCOS head on an AVX512-BF16 CPU at any learning rate (4-7 of 8 split seeds; fp32 none;
    benchmarks/detection_bf16_nan.py).

    Returns:
        (precision, reason)

    Raises:
        ConfigError: `fp16` requested for a device that is not a CUDA GPU.
    """
    if requested == "fp16" and not device.startswith("cuda"):
        from graftkit.errors import ConfigError

        raise ConfigError(f"--precision fp16 needs a CUDA GPU (device here: {device}); on a CPU use bf16 or fp32 (or auto)")
    if requested != "auto":
        return requested, "requested"
    if device.startswith("cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device with bf16"
        return "fp16", "CUDA device without bf16: fp16 autocast (training with loss scaling)"
    if not cpu_has_native_bf16():
        return "fp32", "this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 would be emulated and slower"
    name = arch.lower()
    if training and detector:
        return "fp32", "detector training on CPU: bf16 backward gave NaN gradients in the detection head"
    if training and any(f in name for f in _DEPTHWISE_FAMILIES):
        return "fp32", "depthwise-convolution net: trains slower in bf16 than fp32 on CPU"
    return "bf16", "CPU with native bf16: about 2x faster than fp32 for this model"


def choose_channels_last(arch: str, requested: bool | None = None) -> bool:
    """channels_last for CNNs (1.2-1.7x on CPU), not for transformers."""
    if requested is not None:
        return requested
    return not any(f in arch.lower() for f in _NOT_CHANNELS_LAST)


@dataclass(frozen=True)
class EngineSettings:
    """Where a model runs and in which numeric format, with the reason for the precision."""

    device: str
    precision: str
    """`fp32`, `bf16` or `fp16` (autocast; fp16 on CUDA only)."""
    channels_last: bool
    reason: str

    def engine(self) -> LocalEngine:
        """A single-process engine with these settings."""
        return LocalEngine(self.device, precision=self.precision, channels_last=self.channels_last)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_settings(
    arch: str, *, device: str = "auto", precision: str = "auto", channels_last: bool | None = None, modality: str = "image",
    detector: bool = False,
) -> EngineSettings:
    """How a model that trains end to end (fine-tuning, lr-find's sweep, auto's timing) runs.

    Args:
        arch: Architecture id (`timm:NAME`, `tv:NAME`, `hf:...`); the precision rule reads it.
        device: `auto`, `cpu` or `cuda[:N]` (`resolve_device`).
        precision: `auto` (`choose_precision`'s rule for training), `fp32` or `bf16`.
        channels_last: None decides per model (`choose_channels_last`); only image models use it.
        modality: `image` or `text`.
        detector: The model is a detector (its head and neck train even over a frozen backbone).

    Example:
        >>> training_settings("timm:resnet18", device="cpu").engine()
    """
    return _settings(arch, training=True, device=device, precision=precision, channels_last=channels_last, modality=modality, detector=detector)


def inference_settings(
    arch: str, *, device: str = "auto", precision: str = "auto", channels_last: bool | None = None, modality: str = "image"
) -> EngineSettings:
    """How a model runs forward passes only: frozen features, validation, evaluate, predict, export.

    The one place inference precision is decided: always for the device that runs the model now
    (a run trained in bf16 on a GPU predicts in fp32 on a CPU without native bf16), unless
    `precision` asks for one. Arguments as in `training_settings`.

    Raises:
        ConfigError: `precision` is not `auto`, `fp32` or `bf16`.

    Example:
        >>> s = inference_settings("timm:resnet18", device="cpu")  # on a CPU without native bf16
        >>> s.precision, s.reason
        ('fp32', 'this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 would be emulated and slower')
    """
    return _settings(arch, training=False, device=device, precision=precision, channels_last=channels_last, modality=modality)


class TrainedRun(Protocol):
    """What `run_inference_settings` reads of a run's graft.json (`graftkit.rundir.RunSpec`)."""

    modality: str
    config: Mapping[str, Any]
    """`TrainConfig.to_dict()`: `precision` and `channels_last` are read."""
    model: Any
    """`.arch`: the architecture id."""


def run_inference_settings(run: TrainedRun, *, device: str = "cpu", precision: str = "auto", channels_last: bool | None = None) -> EngineSettings:
    """`inference_settings` for a trained run: an explicit `precision` / `channels_last` wins, else
    what the run itself asked for (`graft train --precision` / `--channels-last`), else the rule
    for `device`. What the run *trained* in on another machine (graft.json's `precision` block)
    is never reused.

    Args:
        run: The run's graft.json (`RunSpec`).
        device: Where the model runs now.
        precision: `auto` (the run's request, else the rule), `fp32` or `bf16`.
        channels_last: None: the run's request, else per model.

    Example:
        >>> run_inference_settings(RunSpec.read("runs/flowers"), precision="fp32").engine()
    """
    asked = run.config.get("precision", "auto")
    if asked == "fp16" and not str(device).startswith("cuda"):
        asked = "auto"  # trained in fp16 on a GPU: fp16 is CUDA-only, so elsewhere the rule decides
    requested = asked if precision == "auto" else precision
    layout = run.config.get("channels_last") if channels_last is None else channels_last
    s = inference_settings(run.model.arch, device=device, precision=requested, channels_last=layout, modality=run.modality)
    if precision != "auto":
        return replace(s, reason=f"requested (--precision {precision})")
    if asked != "auto":
        return replace(s, reason=f"requested by the run (trained with --precision {asked})")
    return s


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _settings(
    arch: str, *, training: bool, device: str, precision: str, channels_last: bool | None, modality: str, detector: bool = False
) -> EngineSettings:
    if precision not in PRECISIONS:
        from graftkit.errors import ConfigError

        raise ConfigError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = resolve_device(device)
    chosen, reason = choose_precision(arch, training=training, requested=precision, device=device, detector=detector)
    return EngineSettings(device, chosen, modality == "image" and choose_channels_last(arch, channels_last), reason)
