"""Data: readers, validation and splits, image decoding, transforms and augmentation, text
readers and tokenized text loaders (DESIGN.md §6).

`read_dataset` / `read_labelled` read any modality; labels are read by the task's `LabelKind`
through the one reader core (`graftkit.data.core`), never by task name.

Importing this package loads torch, numpy and PIL but not torchvision (transforms import it when
built). The feature cache lives in `graftkit.data.cache`.
"""

from __future__ import annotations

from graftkit.data.datasets import ImageFileDataset, default_num_workers, make_loader
from graftkit.data.images import SUPPORTED_EXTENSIONS, check_image, decode_image_bytes, load_image
from graftkit.data.labels import LabelKind
from graftkit.data.read import read_dataset, read_labelled
from graftkit.data.readers import (
    ImageData,
    Sample,
    list_image_files,
    read_image_data,
    read_labelled_images,
)
from graftkit.data.text import TextData, TextSample, read_labelled_texts, read_text_data, read_texts
from graftkit.data.text_loader import (
    TextLoader,
    make_causal_lm_loader,
    make_seq2seq_loader,
    make_text_loader,
    restore_order,
)
from graftkit.data.transforms import build_batch_mix, build_transform

__all__ = [
    "LabelKind",
    "read_dataset",
    "read_labelled",
    "read_image_data",
    "read_labelled_images",
    "list_image_files",
    "load_image",
    "decode_image_bytes",
    "check_image",
    "build_transform",
    "build_batch_mix",
    "ImageData",
    "Sample",
    "ImageFileDataset",
    "make_loader",
    "default_num_workers",
    "SUPPORTED_EXTENSIONS",
    "read_text_data",
    "read_texts",
    "read_labelled_texts",
    "TextData",
    "TextSample",
    "TextLoader",
    "make_text_loader",
    "make_seq2seq_loader",
    "make_causal_lm_loader",
    "restore_order",
]
