"""Deploy: load a run directory and predict (export and serving come later)."""

from graftkit.deploy.predictor import Prediction, Predictor, load

__all__ = ["Prediction", "Predictor", "load"]
