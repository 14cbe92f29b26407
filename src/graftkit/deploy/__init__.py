"""Deploy: predict from a run directory (`load`), export it (`deploy.export`), serve it (`deploy.serve`).

Only the predictor is imported here; export (onnx), serving (fastapi) and the ONNX Runtime backend
import their libraries when used.
"""

from graftkit.deploy.predictor import Prediction, Predictor, load

__all__ = ["Prediction", "Predictor", "load"]
