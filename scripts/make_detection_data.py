"""Build a real-pixel object-detection set: Fashion-MNIST items pasted at random scales and tints
onto crops of real textures and photos (scikit-image's brick, grass, gravel, astronaut, coffee,
chelsea, rocket), with exact boxes, written as COCO JSON and as YOLO.

    python scripts/make_detection_data.py OUT [--train 800 --val 200 --test 0 --size 160 --seed 0]
    python scripts/make_detection_data.py --bundle      # the small subset `graft demo detection` uses

Layout of OUT: `images/{train,val}/*.jpg`, `train.json` + `val.json` (COCO), `labels/{train,val}/*.txt`
+ `data.yaml` (YOLO); with `--test N` also `images/test/`, `test.json` and `labels/test/` (new scenes
from the held-out items of the val pool). A box is the tight box of the pasted item's visible pixels (alpha > 0.1),
so it is exact. About one image in ten has no object (a negative).

Needs `apt-get install -y dataset-fashion-mnist` and scikit-image. Fashion-MNIST: MIT (Zalando
Research); scikit-image sample images: public domain / CC0 / BSD as listed in scikit-image.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import read_split  # noqa: E402

CLASSES = {1: "trouser", 5: "sandal", 7: "sneaker", 8: "bag"}
"""Fashion-MNIST label → class name: four items with distinct shapes."""
BACKGROUNDS = ("brick", "grass", "gravel", "astronaut", "coffee", "chelsea", "rocket")
BUNDLE = Path(__file__).resolve().parents[1] / "src" / "graftkit" / "data" / "demo" / "detection-scenes.zip"


def backgrounds() -> list[np.ndarray]:
    import skimage.data as sk

    out = []
    for name in BACKGROUNDS:
        img = getattr(sk, name)()
        out.append(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
    return out


def make_scene(rng: np.random.Generator, items: np.ndarray, labels: np.ndarray, bgs: list[np.ndarray], size: int):
    """One `size` x `size` RGB scene and its objects `[(x1, y1, x2, y2, class name)]`."""
    bg = bgs[int(rng.integers(len(bgs)))]
    side = int(rng.integers(size, min(bg.shape[:2]) + 1))
    y0, x0 = int(rng.integers(0, bg.shape[0] - side + 1)), int(rng.integers(0, bg.shape[1] - side + 1))
    canvas = np.asarray(Image.fromarray(bg[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.BILINEAR), dtype=np.float32)
    objects: list[tuple[int, int, int, int, str]] = []
    n = 0 if rng.random() < 0.1 else int(rng.integers(1, 4))
    for _ in range(n * 5):  # a few tries per object to keep overlaps small
        if len(objects) == n:
            break
        k = int(rng.integers(len(items)))
        scale = int(rng.integers(size // 5, size // 2))
        alpha = np.asarray(Image.fromarray(items[k]).resize((scale, scale), Image.BILINEAR), dtype=np.float32) / 255.0
        x, y = (int(v) for v in rng.integers(0, size - scale, 2))
        ys, xs = np.nonzero(alpha > 0.1)
        if len(xs) == 0:
            continue
        box = (x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)
        if any(_iou(box, o[:4]) > 0.2 for o in objects):
            continue
        tint = rng.uniform(60, 255, 3).astype(np.float32)
        a = np.clip(alpha * 1.4, 0, 1)[..., None]
        patch = canvas[y : y + scale, x : x + scale]
        canvas[y : y + scale, x : x + scale] = patch * (1 - a) + (tint * alpha[..., None] / max(alpha.max(), 1e-6)) * a
        objects.append((*box, CLASSES[int(labels[k])]))
    return canvas.clip(0, 255).astype(np.uint8), objects


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def build(counts: dict[str, int], size: int, seed: int, quality: int = 90) -> dict[str, list[tuple[str, bytes, list]]]:
    """Per split: (file name, JPEG bytes, objects). Train and val draw from different Fashion-MNIST
    items; test draws new scenes from the val items (never from train's)."""
    images, labels = read_split("train")
    keep = np.isin(labels, list(CLASSES))
    images, labels = images[keep], labels[keep]
    half = len(images) // 2
    pools = {"train": (images[:half], labels[:half]), "val": (images[half:], labels[half:]), "test": (images[half:], labels[half:])}
    bgs = backgrounds()
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for split, n in counts.items():
        rows = []
        for i in range(n):
            pixels, objects = make_scene(rng, *pools[split], bgs, size)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
            rows.append((f"{split}_{i:04d}.jpg", buf.getvalue(), objects))
        out[split] = rows
    return out


def write(scenes: dict[str, list], size: int, put) -> None:
    """Write COCO and YOLO files through `put(relative path, bytes)`."""
    names = list(CLASSES.values())
    for split, rows in scenes.items():
        images, anns = [], []
        for i, (file, data, objects) in enumerate(rows):
            put(f"images/{split}/{file}", data)
            images.append({"id": i + 1, "file_name": f"images/{split}/{file}", "width": size, "height": size})
            lines = []
            for x1, y1, x2, y2, name in objects:
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": names.index(name) + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})  # fmt: skip
                lines.append(f"{names.index(name)} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} {(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}")
            if lines:
                put(f"labels/{split}/{Path(file).stem}.txt", ("\n".join(lines) + "\n").encode())
        cats = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
        put(f"{split}.json", json.dumps({"images": images, "annotations": anns, "categories": cats}).encode())
    yaml = "path: .\ntrain: images/train\nval: images/val\n" + ("test: images/test\n" if "test" in scenes else "") + "names:\n" + "".join(f"  {k}: {n}\n" for k, n in enumerate(names))
    put("data.yaml", yaml.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--test", type=int, default=0, help="held-out test scenes (test.json), 0: none")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle", action="store_true", help=f"write the demo subset (240 train / 60 val, 128 px) to {BUNDLE}")
    args = ap.parse_args()
    if args.bundle:
        scenes = build({"train": 240, "val": 60}, 128, args.seed, quality=80)
        with zipfile.ZipFile(BUNDLE, "w", zipfile.ZIP_STORED) as z:  # JPEGs do not compress further
            write(scenes, 128, lambda rel, data: z.writestr(f"detection-scenes/{rel}", data))
        print(f"wrote {BUNDLE} ({BUNDLE.stat().st_size / 1e6:.2f} MB)")
        return
    if args.out is None:
        ap.error("give OUT or --bundle")
    counts = {"train": args.train, "val": args.val, **({"test": args.test} if args.test else {})}
    scenes = build(counts, args.size, args.seed)

    def put(rel: str, data: bytes) -> None:
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    write(scenes, args.size, put)
    print(f"wrote {args.out}: {args.train} train / {args.val} val / {args.test} test images, COCO ({args.out}/train.json) and YOLO ({args.out}/data.yaml)")


if __name__ == "__main__":
    main()
