"""Build the Fashion-MNIST subset bundled with graftkit for `graft demo`.

    python scripts/make_demo_data.py   # needs `apt-get install -y dataset-fashion-mnist`

Writes `src/graftkit/data/demo/fashion-mnist-600.zip`: 60 seeded-random images per class from the
Fashion-MNIST training set, as 28x28 grayscale PNGs in `<class>/<index>.png` folders.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fashion_mnist import CLASSES, pick_per_class, png_bytes, read_split  # noqa: E402

PER_CLASS = 60
OUT = Path(__file__).resolve().parents[1] / "src/graftkit/data/demo/fashion-mnist-600.zip"


def main() -> None:
    images, labels = read_split("train")
    indices = sorted(pick_per_class(labels, PER_CLASS, seed=0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(OUT, "w", compression=zipfile.ZIP_STORED) as z:
        for i in indices:
            info = zipfile.ZipInfo(f"fashion-mnist/{CLASSES[labels[i]]}/{i:05d}.png", date_time=(2017, 8, 28, 0, 0, 0))
            z.writestr(info, png_bytes(images[i]))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(indices)} images)")


if __name__ == "__main__":
    main()
