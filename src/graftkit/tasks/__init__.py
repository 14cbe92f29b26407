"""Tasks: what the head predicts, its loss, metrics and decoding (DESIGN.md §3).

`tasks/base.py` holds the `Task` protocol and the registry; each module here defines one task and
registers it. Everything outside this package asks `get_task(name)` for a task class and calls
its verbs; nothing outside it branches on a task's name.
"""

from graftkit.tasks.base import (
    Metric,
    Prediction,
    Task,
    TaskSettings,
    get_task,
    register_task,
    task_from_dict,
    task_names,
    unregister_task,
)

# Importing a task module registers its task; this order is the order `task_names()` lists.
from graftkit.tasks.classification import ClassificationTask, balanced_class_weights  # isort: skip
from graftkit.tasks.multilabel import MultiLabelTask  # isort: skip
from graftkit.tasks.regression import RegressionTask
from graftkit.tasks.ctc import CTCTask  # isort: skip
from graftkit.tasks.generation import CausalLMTask, GenerativeModel, Seq2SeqTask  # isort: skip
from graftkit.tasks.detection import DetectionTask  # isort: skip
from graftkit.tasks.asr import ASRTask  # isort: skip
from graftkit.tasks.multitask import MultiTask  # isort: skip
from graftkit.tasks.model import GraftModel  # isort: skip

__all__ = [
    "ASRTask",
    "CausalLMTask",
    "ClassificationTask",
    "DetectionTask",
    "GenerativeModel",
    "GraftModel",
    "Metric",
    "MultiLabelTask",
    "MultiTask",
    "Prediction",
    "RegressionTask",
    "Seq2SeqTask",
    "Task",
    "TaskSettings",
    "balanced_class_weights",
    "get_task",
    "register_task",
    "task_from_dict",
    "task_names",
    "unregister_task",
]
