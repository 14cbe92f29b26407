"""What a label is, as the data readers see it: the one thing a task tells them.

Readers never learn task names. A task declares its `LabelKind`; the readers parse, validate,
split and summarise labels by that kind alone, for every modality.
"""

from __future__ import annotations

from enum import Enum


class LabelKind(str, Enum):
    """How a sample's label is written and parsed.

    `CLASS`: one class name (`rose`). `CLASSES`: any number of names (`a|b`, or a JSON list).
    `VALUE`: a finite number (`3.5`). `SEQUENCE`: a target text that must be there (seq2seq).
    `CONTINUATION`: a text's optional continuation (causal LM: plain text, or prompt + response).
    `BOXES`: the objects of an image, boxes and class names (`data/detection.py`).
    """

    CLASS = "class"
    CLASSES = "classes"
    VALUE = "value"
    SEQUENCE = "sequence"
    CONTINUATION = "continuation"
    BOXES = "boxes"
    """Object boxes with class names per image (detection: COCO JSON, YOLO, Pascal VOC)."""
    RECORD = "record"
    """Several label columns (multitask): a manifest row's other columns as a `{column: raw value}`
    dict (empty cells kept as they are); the task parses each column as its part's kind."""

    @property
    def has_classes(self) -> bool:
        """Labels are class names (a class list is read from the training split)."""
        return self in (LabelKind.CLASS, LabelKind.CLASSES)

    @property
    def stratified(self) -> bool:
        """A validation split is stratified by class (single-label classes only)."""
        return self is LabelKind.CLASS

    @property
    def noun(self) -> str:
        """What one label is called in messages: `label`, `value`, `target` or `response`."""
        return _NOUNS.get(self, "label")


_NOUNS = {LabelKind.VALUE: "value", LabelKind.SEQUENCE: "target", LabelKind.CONTINUATION: "response"}
