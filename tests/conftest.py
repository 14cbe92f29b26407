"""Shared fixtures: offline, seeded, tiny data sets and models built in the tests."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY_MODEL = "scratch:timm:test_efficientnet"  # 0.36M params, random init, no download


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch):
    """Seed every RNG; give each test its own cache and working folder, never the user's."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    monkeypatch.setenv("GRAFTKIT_CACHE", str(tmp_path / "graftkit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)


def _pattern(label: int, i: int, size: int = 40) -> np.ndarray:
    """A learnable image: the class sets the dominant colour and stripe direction; noise varies."""
    rng = np.random.default_rng(1000 * label + i)
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    img[..., label % 3] += 150
    if label % 2:
        img[::4, :, :] = 255
    else:
        img[:, ::4, :] = 255
    return img


def make_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 8, ext: str = "png") -> Path:
    for c, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_pattern(c, i)).save(d / f"{name}_{i}.{ext}")
    return root


@pytest.fixture
def tiny_images(tmp_path) -> Path:
    """3 classes x 8 PNGs, 40x40, easily separable."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def tiny_split_images(tmp_path) -> Path:
    """`ROOT/{train,val,test}/<class>/` with 3 classes."""
    root = tmp_path / "split"
    make_image_folder(root / "train", per_class=8)
    make_image_folder(root / "val", per_class=3)
    make_image_folder(root / "test", per_class=3)
    return root
