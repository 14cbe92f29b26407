"""The engine layer: device placement, precision, memory format, progress display.

The lowest layer that touches torch: training, selection and deploy all build on it, so the
decisions it makes (which device, which precision, channels_last or not) are made in one place.
"""

from graftkit.engine.device import Engine, LocalEngine, eval_mode, resolve_device
from graftkit.engine.memory import tune_malloc
from graftkit.engine.precision import (
    EngineSettings,
    choose_channels_last,
    choose_precision,
    cpu_has_native_bf16,
    inference_settings,
    run_inference_settings,
    training_settings,
)

__all__ = [
    "Engine",
    "EngineSettings",
    "LocalEngine",
    "choose_channels_last",
    "choose_precision",
    "cpu_has_native_bf16",
    "eval_mode",
    "inference_settings",
    "resolve_device",
    "run_inference_settings",
    "training_settings",
    "tune_malloc",
]
