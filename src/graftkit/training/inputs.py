"""Inputs per modality: what the probe and fine-tuning paths need from the data, as loaders.

The strategies are written once against this small surface (`items`, `digests`,
`unlabelled_loader`, `targets`, `labelled_loader`, `batch_transform`); `ImageInputs` decodes and
augments files, `TextInputs` tokenizes once and batches with dynamic padding.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch
from torch import nn

from graftkit.training.config import TrainConfig


class _FileInputs:
    """Samples that are files (`.path`), cached by their content hash; what the preprocessing does
    to them (image size, sample rate, clip length) is in the cache key."""

    def __init__(self, data: Any, backbone: nn.Module, cfg: TrainConfig) -> None:
        self.data, self.backbone, self.cfg = data, backbone, cfg

    def samples(self, split: str) -> list:
        return list(getattr(self.data, split))

    def items(self, split: str) -> list:
        return [s.path for s in self.samples(split)]

    def digests(self, items: list) -> list[str]:
        from graftkit.data.cache import file_digests

        return file_digests(items)


class ImageInputs(_FileInputs):
    """Image files from an `ImageData` (class folders, split folders, manifests)."""

    modality = "image"
    unit = "img"
    noun = "images"

    def unlabelled_loader(self, items: list):
        from graftkit.training._build import eval_loader_factory

        return eval_loader_factory(self.backbone, self.cfg)(items)

    def targets(self, split: str, task: Any) -> torch.Tensor:
        return task.encode([s.label for s in self.samples(split)])

    def labelled_loader(self, split: str, task: Any, *, train: bool):
        from graftkit.data import ImageFileDataset, build_transform, make_loader
        from graftkit.training._build import num_workers

        cfg = self.cfg
        samples = self.samples(split)
        transform = build_transform(self.backbone.preprocess, cfg.augment if train else "none", train=train)
        pre = self.backbone.preprocess
        dataset = ImageFileDataset(samples, task.encode([s.label for s in samples]), transform, channels=pre.in_chans, window=pre.window)
        drop_last = train and len(samples) % cfg.batch_size == 1  # a batch of 1 breaks BatchNorm in train mode
        return make_loader(dataset, batch_size=cfg.batch_size, shuffle=train, num_workers=num_workers(cfg), seed=cfg.seed, drop_last=drop_last)

    def batch_transform(self, task: Any) -> Callable | None:
        from graftkit.data import build_batch_mix

        return build_batch_mix(self.cfg.mix, task.num_classes)

    def summary(self) -> dict[str, Any]:
        return {}


class TextInputs:
    """Texts from a `TextData`, tokenized once by the backbone's tokenizer."""

    modality = "text"
    unit = "seq"
    noun = "texts"

    def __init__(self, data: Any, backbone: nn.Module, cfg: TrainConfig) -> None:
        self.data, self.backbone, self.cfg = data, backbone, cfg
        self.max_length = backbone.preprocess.max_length

    def samples(self, split: str) -> list:
        return list(getattr(self.data, split))

    def items(self, split: str) -> list[str]:
        return [s.text for s in self.samples(split)]

    def digests(self, items: list[str]) -> list[str]:
        # The text itself is the content; max length and pooling are in the cache key.
        return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in items]

    def unlabelled_loader(self, items: list[str]):
        from graftkit.data.text_loader import make_text_loader

        return make_text_loader(
            items, None, self.backbone.tokenizer, max_length=self.max_length, batch_size=max(self.cfg.batch_size, 64), shuffle=False, seed=self.cfg.seed
        )

    def targets(self, split: str, task: Any) -> torch.Tensor:
        return task.encode([s.label for s in self.samples(split)])

    def labelled_loader(self, split: str, task: Any, *, train: bool):
        cfg = self.cfg
        return task.text_loader(
            self.samples(split), self.backbone.tokenizer, max_length=self.max_length, batch_size=cfg.batch_size, shuffle=train, seed=cfg.seed
        )

    def batch_transform(self, task: Any) -> Callable | None:
        return None  # mixup/cutmix are image-only

    def summary(self) -> dict[str, Any]:
        """How many texts per split are longer than `max_length` tokens and get cut (shown in the
        report, so a user sees when `--max-length` is too small)."""
        from graftkit.data.text_loader import untruncated_ids

        tok = self.backbone.tokenizer
        truncated = {}
        for split in ("train", "val", "test"):
            texts = self.items(split)
            if texts:
                lengths = [len(ids) for ids in untruncated_ids(tok, texts, add_special_tokens=True)]
                truncated[split] = sum(n > self.max_length for n in lengths)
        return {"max_length": self.max_length, "truncated": truncated}


class AudioInputs(_FileInputs):
    """Audio files from an `AudioData`, decoded to fixed-length mono waveforms `[B, S]` at the
    backbone's sample rate (`data/audio.py`)."""

    modality = "audio"
    unit = "clip"
    noun = "clips"

    def _loader(self, paths: list, targets: Any, *, train: bool, teacher_forced: bool = False):
        from graftkit.data import make_loader
        from graftkit.data.audio import AudioFileDataset
        from graftkit.training._build import num_workers

        pre = self.backbone.preprocess
        augment = self._augment() if train else None
        dataset = AudioFileDataset(paths, targets, sample_rate=pre.sample_rate, num_samples=pre.num_samples, augment=augment)
        if teacher_forced:
            dataset = _WithLabels(dataset)
        drop_last = train and len(paths) % self.cfg.batch_size == 1  # a batch of 1 breaks BatchNorm in train mode
        return make_loader(dataset, batch_size=self.cfg.batch_size, shuffle=train, num_workers=num_workers(self.cfg), seed=self.cfg.seed, drop_last=drop_last)

    def _augment(self):
        """The `--augment` preset for training (`data/audio_augment.py`): the dataset's waveform
        transform; the spectrogram masks go onto the backbone as a training-mode hook."""
        from graftkit.data.audio_augment import audio_augment_policy, build_waveform_augment, install_spectrogram_masking

        policy = audio_augment_policy(self.cfg.augment)
        site = install_spectrogram_masking(self.backbone, policy)
        return build_waveform_augment(policy, self.backbone.preprocess.sample_rate, spectrogram=site is not None)

    def unlabelled_loader(self, items: list):
        return self._loader(list(items), None, train=False)

    def targets(self, split: str, task: Any) -> torch.Tensor:
        return task.encode([s.label for s in self.samples(split)])

    def labelled_loader(self, split: str, task: Any, *, train: bool):
        from graftkit.tasks.base import task_member

        samples = self.samples(split)
        labels = [s.label for s in samples]
        audio_targets = task_member(task, "audio_targets")  # asr: tokenized transcripts, which the decoder also reads
        if audio_targets is not None:
            return self._loader([s.path for s in samples], audio_targets(labels, self.backbone), train=train, teacher_forced=True)
        return self._loader([s.path for s in samples], task.encode(labels), train=train)

    def batch_transform(self, task: Any) -> Callable | None:
        return None  # mixup/cutmix are image-only

    def summary(self) -> dict[str, Any]:
        """Sample rate and the clip length every clip is cut or padded to (shown in the report)."""
        from graftkit.data.audio_augment import audio_augment_policy, spectrogram_site

        pre = self.backbone.preprocess
        out = {"sample_rate": pre.sample_rate, "max_seconds": pre.max_seconds, "longest_seconds": round(getattr(self.data, "longest_seconds", 0.0), 3),
               "padding": "zeros at the end", "cut": "at the end"}  # fmt: skip
        if self.cfg.parsed_strategy.kind != "linear-probe":  # the probe trains on cached, unaugmented features
            site = spectrogram_site(self.backbone)
            out["augment"] = {"preset": self.cfg.augment, "steps": audio_augment_policy(self.cfg.augment).describe(),
                              "masks_on": site.name if site is not None else "the waveform (time masks only)"}  # fmt: skip
        return out



class _WithLabels(torch.utils.data.Dataset):
    """`({"waveform": w, "labels": y}, y)` from a dataset of `(w, y)`: for models that read their
    targets (a decoder trained with teacher forcing)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        wave, target = self.dataset[i]
        return {"waveform": wave, "labels": target}, target


class DetectionInputs(ImageInputs):
    """Images with boxes (`data/detection.py`): batches of `((images, targets), targets)`, resized
    to the backbone's input size with box-aware augmentation."""

    def labelled_loader(self, split: str, task: Any, *, train: bool):
        from graftkit.data.detection import make_detection_loader
        from graftkit.training._build import num_workers

        cfg = self.cfg
        return make_detection_loader(
            self.samples(split), task.classes, size=self.backbone.preprocess.input_size, batch_size=cfg.batch_size, train=train,
            augment=cfg.augment if train else "none", num_workers=num_workers(cfg), seed=cfg.seed,
        )  # fmt: skip

    def batch_transform(self, task: Any) -> Callable | None:
        return None  # mixup/cutmix mix class labels, not boxes


INPUTS = {"image": ImageInputs, "text": TextInputs, "audio": AudioInputs}
"""The input adapter per backbone modality; a new modality adds its adapter here."""


def make_inputs(data: Any, backbone: nn.Module, cfg: TrainConfig) -> ImageInputs | TextInputs | AudioInputs:
    """The input adapter for the backbone's modality.

    Raises:
        ConfigError: No adapter for the backbone's modality.
    """
    from graftkit.errors import ConfigError

    from graftkit.data.detection import BoxSample, DetectionData

    first = next((s for split in ("train", "val", "test") for s in getattr(data, split, [])[:1]), None)
    if isinstance(data, DetectionData) or isinstance(first, BoxSample):  # boxes: also `graft evaluate`'s test-only sets
        return DetectionInputs(data, backbone, cfg)
    modality = getattr(backbone, "modality", "image")
    if modality not in INPUTS:
        raise ConfigError(f"no training inputs for {modality} models yet; supported: {', '.join(INPUTS)}")
    return INPUTS[modality](data, backbone, cfg)
