"""A map-style dataset over image files, and reproducible data loaders.

Worker count rule (`default_num_workers`): `min(4, max(0, os.cpu_count() - 1))` - one core stays
with the main process, which runs the model. On 2 cores that is 1 worker at most
(PERFORMANCE.md); on 1 core, 0 (decode in the main process, which is often fine for probes).

Reproducibility: the loader's shuffling comes from its own seeded `torch.Generator`. With workers,
each worker's torch seed is derived from that generator (per epoch) and `worker_init_fn` seeds
`random` and numpy from it, so augmentations repeat for a given seed and worker count. Without
workers (`num_workers=0`), augmentations draw from torch's global generator in the main process:
seed it (`torch.manual_seed`) for identical runs, as the training loop does.
"""

from __future__ import annotations

import os
import random
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from graftkit.data.images import load_image
from graftkit.data.readers import Sample

__all__ = ["ImageFileDataset", "make_loader", "default_num_workers"]


class ImageFileDataset(Dataset):
    """Decodes `samples` with `load_image` and applies `transform`; yields `(image, target)`.

    The dataset does not know what a label is: the caller encodes the labels (`task.encode`)
    into one target row per sample, so the same dataset serves class ids, multi-hot rows and
    numbers.

    Args:
        samples: The image files.
        targets: One row per sample, in order (`[N]` class ids, `[N, C]` multi-hot, `[N]`
            values); None for unlabelled use (every target is -1).
        transform: Applied to the decoded `[C, H, W]` image; None returns the image as decoded.
        channels: 3 or 1: the decoded channels (`load_image`).
        window: Grey window for 16-bit and DICOM images (`load_image`).

    Example:
        >>> ds = ImageFileDataset(data.train, task.encode([s.label for s in data.train]), build_transform(pre, "light", True))
        >>> image, target = ds[0]  # float32 [3, 224, 224], its row of targets
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        targets: torch.Tensor | None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        channels: int = 3,
        window: tuple[float, float] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.channels, self.window = channels, window
        """How `load_image` decodes (`ImagePreprocess.in_chans` / `.window`)."""
        self.targets = targets
        """The targets given, one row per sample (None: unlabelled)."""
        self.transform = transform
        if targets is not None and len(targets) != len(self.samples):  # callers encode every sample
            raise ValueError(f"{len(targets)} target rows for {len(self.samples)} samples")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        image = load_image(self.samples[index].path, channels=self.channels, window=self.window)  # (C, H, W)
        if self.transform is not None:
            image = self.transform(image)
        return image, (self.targets[index] if self.targets is not None else -1)


def default_num_workers() -> int:
    """Data-loader workers to use by default: `min(4, max(0, os.cpu_count() - 1))`.

    Example:
        >>> default_num_workers()  # on a 2-core machine
        1
    """
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    drop_last: bool = False,
) -> DataLoader:
    """A `DataLoader` whose order and augmentations are reproducible for a seed.

    Args:
        dataset: Any map-style dataset, usually an `ImageFileDataset`.
        batch_size: Samples per batch.
        shuffle: Reshuffle every epoch (from the loader's own seeded generator).
        num_workers: Worker processes; 0 decodes in the main process. See `default_num_workers`.
        seed: Seeds the loader's generator (shuffling, and the workers' seeds).
        drop_last: Drop a last, smaller batch (useful for BatchNorm with tiny final batches).

    Returns:
        A `DataLoader` (non-persistent workers, no pinned memory).

    Example:
        >>> loader = make_loader(ds, batch_size=32, shuffle=True, num_workers=default_num_workers(), seed=0)
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=False,
    )


def _seed_worker(worker_id: int) -> None:
    # torch already seeded this worker from the loader's generator (base_seed + worker_id);
    # give `random` and numpy the same seed so any transform using them repeats too.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
