"""Tasks: what the head predicts, its loss, metrics and decoding."""

from graftkit.tasks.classification import ClassificationTask, balanced_class_weights
from graftkit.tasks.model import GraftModel

__all__ = ["ClassificationTask", "GraftModel", "balanced_class_weights"]
