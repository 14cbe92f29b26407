"""Data: readers, validation and splits, image decoding, transforms and augmentation, text
readers and tokenized text loaders (DESIGN.md §6).

`read_dataset` / `read_labelled` read any modality; labels are read by the task's `LabelKind`
through the one reader core (`graftkit.data.core`), never by task name.

The feature cache lives in `graftkit.data.cache`.

Names are imported on first use (PEP 562), so that importing one submodule (e.g. for the
torch-free ONNX client) does not load the others and torch.
"""

from __future__ import annotations

from graftkit.lazy import lazy_exports

_EXPORTS = {
    "ImageFileDataset": "graftkit.data.datasets",
    "default_num_workers": "graftkit.data.datasets",
    "make_loader": "graftkit.data.datasets",
    "SUPPORTED_EXTENSIONS": "graftkit.data.images",
    "check_image": "graftkit.data.images",
    "decode_image_bytes": "graftkit.data.images",
    "load_image": "graftkit.data.images",
    "LabelKind": "graftkit.data.labels",
    "read_dataset": "graftkit.data.read",
    "read_labelled": "graftkit.data.read",
    "ImageData": "graftkit.data.readers",
    "Sample": "graftkit.data.readers",
    "list_image_files": "graftkit.data.readers",
    "read_image_data": "graftkit.data.readers",
    "read_labelled_images": "graftkit.data.readers",
    "TextData": "graftkit.data.text",
    "TextSample": "graftkit.data.text",
    "read_labelled_texts": "graftkit.data.text",
    "read_text_data": "graftkit.data.text",
    "read_texts": "graftkit.data.text",
    "TextLoader": "graftkit.data.text_loader",
    "make_causal_lm_loader": "graftkit.data.text_loader",
    "make_seq2seq_loader": "graftkit.data.text_loader",
    "make_text_loader": "graftkit.data.text_loader",
    "restore_order": "graftkit.data.text_loader",
    "build_batch_mix": "graftkit.data.transforms",
    "build_transform": "graftkit.data.transforms",
}
"""Public name -> the module that defines it; imported on first use."""

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
