"""The engine layer: device placement, precision, memory format, progress display.

The lowest layer that touches torch: training, selection and deploy all build on it, so the
decisions it makes (which device, which precision, channels_last or not) are made in one place.

Names are imported on first use (PEP 562), so that importing one submodule (e.g. for the
torch-free ONNX client) does not load the others and torch.
"""

from __future__ import annotations

from graftkit.lazy import lazy_exports

_EXPORTS = {
    "Engine": "graftkit.engine.device",
    "LocalEngine": "graftkit.engine.device",
    "AccelerateEngine": "graftkit.engine.distributed",
    "make_engine": "graftkit.engine.distributed",
    "is_main_process": "graftkit.engine.distributed",
    "eval_mode": "graftkit.engine.device",
    "resolve_device": "graftkit.engine.device",
    "tune_malloc": "graftkit.engine.memory",
    "enable_grad_checkpointing": "graftkit.engine.checkpointing",
    "EngineSettings": "graftkit.engine.precision",
    "choose_channels_last": "graftkit.engine.precision",
    "choose_precision": "graftkit.engine.precision",
    "cpu_has_native_bf16": "graftkit.engine.precision",
    "inference_settings": "graftkit.engine.precision",
    "run_inference_settings": "graftkit.engine.precision",
    "training_settings": "graftkit.engine.precision",
}
"""Public name -> the module that defines it; imported on first use."""

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
