"""Deploy: predict from a run directory (`load`), export it (`deploy.export`), serve it (`deploy.serve`).

Only the predictor is imported here; export (onnx), serving (fastapi) and the ONNX Runtime backend
import their libraries when used.

Names are imported on first use (PEP 562), so that importing one submodule (e.g. for the
torch-free ONNX client) does not load the others and torch.
"""

from __future__ import annotations

from graftkit.lazy import lazy_exports

_EXPORTS = {
    "Prediction": "graftkit.deploy.predictor",
    "Predictor": "graftkit.deploy.predictor",
    "load": "graftkit.deploy.predictor",
}
"""Public name -> the module that defines it; imported on first use."""

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
