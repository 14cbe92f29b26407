"""What a data set's pixels are like: grey or colour, and their intensity statistics.

`is_single_channel_image` reads headers only (PIL's mode, DICOM's `SamplesPerPixel` /
`PhotometricInterpretation`), so deciding `--in-chans` for a folder costs milliseconds.
`intensity_stats` decodes a seeded sample of training images exactly as training will (channels,
window) and returns the per-channel mean and standard deviation in [0, 1] units, for
`--intensity dataset`.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["GREY_MODES", "is_single_channel_image", "all_single_channel", "intensity_stats"]

GREY_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
"""PIL modes that hold one grey channel."""


def is_single_channel_image(path: str | os.PathLike[str]) -> bool:
    """Whether an image file holds one grey channel (header only; unreadable files count as colour)."""
    from PIL import Image

    from graftkit.data.dicom import DICOM_EXTENSIONS, is_single_channel_dicom
    from graftkit.data.images import PIL_FORMATS

    from graftkit.data.images import readable

    path = readable(path)
    try:
        if path.suffix.lower() in DICOM_EXTENSIONS:
            return is_single_channel_dicom(path)
        source = path if isinstance(path, Path) else io.BytesIO(path.read_bytes())  # an image in a tar shard
        with Image.open(source, formats=PIL_FORMATS) as im:
            return im.mode in GREY_MODES
    except Exception:  # noqa: BLE001 - validation reports unreadable files; here they are "not grey"
        return False


def all_single_channel(paths: Sequence[str | os.PathLike[str]], *, limit: int = 64, seed: int = 0) -> bool:
    """Whether every one of a seeded sample of `limit` files is grey (all of them when fewer)."""
    paths = list(paths)
    if not paths:
        return False
    sample = paths if len(paths) <= limit else random.Random(seed).sample(paths, limit)
    return all(is_single_channel_image(p) for p in sample)


def intensity_stats(
    paths: Sequence[str | os.PathLike[str]],
    *,
    channels: int,
    window: tuple[float, float] | None = None,
    limit: int = 256,
    seed: int = 0,
    size: int = 64,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of the decoded pixels, in [0, 1] units.

    Args:
        paths: Training images.
        channels: 1 or 3, as the run decodes them.
        window: The run's grey window.
        limit: Most images read (a seeded sample).
        seed: Seeds the sample.
        size: Images are resized to `size` × `size` first (the statistics barely move; it is fast).

    Returns:
        `(mean, std)`, one value per channel; std is at least 1e-3.

    Example:
        >>> intensity_stats(["a.dcm", "b.dcm"], channels=1)
        ((0.213,), (0.187,))
    """
    from torchvision.transforms.v2 import functional as F

    from graftkit.data.images import load_image

    paths = list(paths)
    sample = paths if len(paths) <= limit else random.Random(seed).sample(paths, limit)
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for p in sample:
        image = load_image(p, channels=channels, window=window)
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        image = F.resize(image, [size, size], antialias=True).clamp(0, 1).double()  # (C, size, size)
        total += image.sum(dim=(1, 2))
        squares += (image * image).sum(dim=(1, 2))
        count += size * size
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean * mean).clamp_min(1e-6).sqrt().clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)
