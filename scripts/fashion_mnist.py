"""Read Fashion-MNIST from Debian's `dataset-fashion-mnist` package and write it as image folders.

Used by `make_demo_data.py` (the subset bundled in the package) and by the benchmarks.
Fashion-MNIST is MIT-licensed (Zalando Research).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def read_split(split: str = "train", root: Path = DEBIAN_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images `[N, 28, 28]` uint8 and labels `[N]` of `train` or `t10k`."""
    if not (root / f"{split}-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"{root} has no Fashion-MNIST: run `apt-get install -y dataset-fashion-mnist`")
    with gzip.open(root / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(root / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def pick_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of `per_class` random items of each class, seeded."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(len(CLASSES))])


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_folder(out: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, fmt: str = "png", size: int | None = None) -> Path:
    """Write `out/<class>/<index>.<fmt>`; `size` upsamples (e.g. to JPEG photos of realistic size)."""
    from PIL import Image

    for i in indices:
        d = out / CLASSES[labels[i]]
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(images[i], mode="L")
        if size:
            img = img.resize((size, size), Image.BICUBIC).convert("RGB")
        img.save(d / f"{i:05d}.{fmt}", quality=90) if fmt == "jpg" else img.save(d / f"{i:05d}.{fmt}")
    return out
