"""Tasks: what the head predicts, its loss, metrics and decoding.

Every task offers the same verbs to the loop: `loss(logits, targets)`, `batch_score(logits,
targets) -> (sum, count)` for the running training metric (`train_metric`), `collect(logits,
targets) -> (rows, targets)` kept for the epoch's metrics, `epoch_metrics`, `full_metrics`, and
`to_dict()` (its part of graft.json); classification-like tasks add `encode`, `build_head`,
`activate` and `decode`.
"""

from graftkit.tasks.classification import ClassificationTask, balanced_class_weights
from graftkit.tasks.generation import CausalLMTask, GenerativeModel, Seq2SeqTask
from graftkit.tasks.model import GraftModel
from graftkit.tasks.multilabel import MultiLabelTask
from graftkit.tasks.regression import RegressionTask

TASK_NAMES = ("classification", "multilabel", "regression", "seq2seq", "causal-lm")
GENERATIVE_TASKS = ("seq2seq", "causal-lm")


def task_from_dict(d: dict) -> object:
    """Rebuild a task from its graft.json entry (`task.to_dict()`)."""
    name = d["name"]
    if name == "classification":
        return ClassificationTask(d["classes"])
    if name == "multilabel":
        return MultiLabelTask(d["classes"], thresholds=d.get("thresholds"))
    if name == "regression":
        return RegressionTask(mean=d["mean"], std=d["std"])
    gen = d.get("generation", {})
    cls = Seq2SeqTask if name == "seq2seq" else CausalLMTask
    return cls(**gen)


__all__ = [
    "CausalLMTask",
    "ClassificationTask",
    "GENERATIVE_TASKS",
    "GenerativeModel",
    "GraftModel",
    "MultiLabelTask",
    "RegressionTask",
    "Seq2SeqTask",
    "TASK_NAMES",
    "balanced_class_weights",
    "task_from_dict",
]
