"""One entry point to read a data set for any modality: training and the selection tools call
`read_dataset`, `graft evaluate` calls `read_labelled`. Each picks the modality's reader and passes
the task's `LabelKind`; neither knows task names.
"""

from __future__ import annotations

import os
from typing import Any

from graftkit.data.audio_readers import AudioData, read_audio_data, read_labelled_audio
from graftkit.data.labels import LabelKind
from graftkit.data.readers import ImageData, read_image_data, read_labelled_images
from graftkit.data.text import TextData, read_labelled_texts, read_text_data
from graftkit.errors import ConfigError

__all__ = ["MODALITIES", "read_dataset", "read_labelled"]

MODALITIES = ("image", "text", "audio")
"""The modalities `read_dataset` and `read_labelled` read."""


def read_dataset(
    path: str | os.PathLike[str],
    *,
    modality: str,
    label_kind: LabelKind,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str | None = None,
    max_seconds: float | None = None,
) -> ImageData | TextData | AudioData:
    """Read, validate and split a training data set of `modality`.

    Args:
        path: Images: a class folder, a split folder or a CSV/JSONL manifest. Texts: a
            CSV/TSV/JSONL/TXT file or a folder of `train.*`/`val.*`/`test.*` files.
        modality: `image` or `text` (the backbone's modality).
        label_kind: How labels are written: the task's `label_kind`.
        val: A separate validation set.
        val_fraction: Share moved to validation when no validation set is given.
        seed: Seed of that split.
        text_col: Texts only: the text column (`--text-col`).
        label_col: Texts only: the label column (`--label-col`).
        encoding: Texts only: the files' encoding (`--encoding`).
        max_seconds: Audio only: clips longer than this are reported (`--max-seconds`).

    Returns:
        An `ImageData`, a `TextData` or an `AudioData`.

    Raises:
        DataError: Every problem in the data, at once (see `read_image_data`, `read_text_data`).
        ConfigError: Unknown modality, text options given for images, bad `val_fraction`.

    Example:
        >>> data = read_dataset("flowers/", modality="image", label_kind=LabelKind.CLASS, seed=0)
        >>> data.classes
        ['daisy', 'rose']
    """
    _check_modality(modality)
    if modality == "text":
        return read_text_data(
            path, label_kind=label_kind, text_col=text_col, label_col=label_col, val=val,
            val_fraction=val_fraction, seed=seed, encoding=encoding,
        )  # fmt: skip
    _no_text_options(text_col, label_col, encoding)
    if label_kind is LabelKind.BOXES:  # detection: COCO JSON, YOLO data.yaml, Pascal VOC
        from graftkit.data.detection import read_detection_data

        return read_detection_data(path, val=val, val_fraction=val_fraction, seed=seed)
    if modality == "audio":
        return read_audio_data(path, val=val, val_fraction=val_fraction, seed=seed, label_kind=label_kind, max_seconds=max_seconds)
    from graftkit.data.webdataset import is_shard_source, read_webdataset

    if is_shard_source(path):  # WebDataset tar shards: a folder of .tar, a .tar, or data-{000..009}.tar
        return read_webdataset(path, val=val, val_fraction=val_fraction, seed=seed, label_kind=label_kind)
    return read_image_data(path, val=val, val_fraction=val_fraction, seed=seed, label_kind=label_kind)


def read_labelled(
    path: str | os.PathLike[str],
    *,
    modality: str,
    label_kind: LabelKind,
    classes: list[str],
    split: str | None = None,
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str | None = None,
) -> list[Any]:
    """Read one labelled set of `modality`, without splitting it (for `graft evaluate`).

    Args:
        path: Images: a class folder or a CSV/JSONL manifest. Texts: a CSV/TSV/JSONL/TXT file or a
            folder of `train.*`/`val.*`/`test.*` files.
        modality: `image` or `text`.
        label_kind: How labels are written: the run's task's `label_kind`.
        classes: The run's classes; labels outside them are errors ([] for tasks without classes).
        split: Which split of a split folder, a manifest's `split` column or a folder of files.
        text_col: Texts only: the text column the run was trained on.
        label_col: Texts only: the label column.
        encoding: Texts only: the file's encoding.

    Returns:
        `Sample`s (images, sorted by path) or `TextSample`s (file order).

    Raises:
        DataError: Every problem, including labels the run does not know, with their files or rows.
        ConfigError: Unknown modality or split name.

    Example:
        >>> samples = read_labelled("holdout/", modality="image", label_kind=task.label_kind, classes=task.classes)
    """
    _check_modality(modality)
    if modality == "text":
        return read_labelled_texts(
            path, label_kind=label_kind, classes=classes, text_col=text_col, label_col=label_col,
            encoding=encoding, split=split,
        )  # fmt: skip
    if label_kind is LabelKind.BOXES:
        return _read_labelled_boxes(path, classes, split)
    if modality == "audio":
        return read_labelled_audio(path, label_kind=label_kind, classes=classes, split=split)
    from graftkit.data.webdataset import is_shard_source, read_labelled_webdataset

    if is_shard_source(path):
        return read_labelled_webdataset(path, classes, split=split, label_kind=label_kind)
    samples, _ = read_labelled_images(path, classes, split=split, label_kind=label_kind)
    return samples


def _read_labelled_boxes(path: str | os.PathLike[str], classes: list[str], split: str | None) -> list[Any]:
    """Every image of a detection source (or of its `split`), checked against the run's classes."""
    from graftkit.data.detection import read_detection_source
    from graftkit.errors import DataError

    splits, source_classes, _ = read_detection_source(path)
    unknown = sorted(set(source_classes) - set(classes))
    if unknown:
        raise DataError([f"classes the run does not know: {', '.join(unknown)} (it knows {', '.join(classes)})"], str(path))
    if split is not None:
        if split not in splits:
            raise ConfigError(f"{path} has no {split!r} split; it has {', '.join(splits)}")
        return list(splits[split])
    return [s for part in splits.values() for s in part]


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} has no data reader; choose one of: {', '.join(MODALITIES)}")


def _no_text_options(text_col: str | None, label_col: str | None, encoding: str | None) -> None:
    given = [flag for flag, value in (("--text-col", text_col), ("--label-col", label_col), ("--encoding", encoding)) if value]
    if given:
        raise ConfigError(f"{', '.join(given)} apply to text data only; drop them for an image or audio model")

