"""Object-detection data: COCO JSON, YOLO (`data.yaml` + txt label folders) and Pascal VOC XML,
read into one form (`DetectionData` of `BoxSample`s), validated before training, and loaded with
box-aware augmentation (`torchvision.transforms.v2` on `tv_tensors`).

Boxes are kept as `xyxy` pixel coordinates of the original image whatever the source format
(COCO `xywh`, YOLO normalised `cx cy w h`, VOC `xmin ymin xmax ymax`). Images without objects stay
in the data as negatives. Every problem (a box outside its image or with zero area, an unknown
category id, a missing image file, a duplicate id) is collected and raised in one `DataError`.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from graftkit.data._problems import Problems
from graftkit.data.core import split_key, val_count
from graftkit.errors import ConfigError, DataError

FORMATS = ("coco", "yolo", "voc")
MAX_OBJECTS = 300
"""Most objects one image may hold (torchvision's detectors keep at most 100-300 per image)."""
_EDGE_TOLERANCE = 1.0
"""Pixels a box may poke out of its image (rounding in annotation tools) before it is a problem."""
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class BoxLabel:
    """The objects of one image: `xyxy` pixel boxes and their class names (empty: a negative)."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)

    def to_dict(self) -> dict[str, Any]:
        return {"boxes": [list(b) for b in self.boxes], "classes": list(self.classes)}


@dataclass(frozen=True)
class BoxSample:
    """One annotated image."""

    path: Path
    label: BoxLabel
    width: int
    height: int
    image_id: str = ""


@dataclass
class DetectionData:
    """A validated, split detection data set (the same surface as `ImageData` where it can be)."""

    train: list[BoxSample]
    val: list[BoxSample]
    test: list[BoxSample]
    classes: list[str]
    """Class names; a name's index is its label id (the detectors add a background class 0)."""
    root: Path
    split: str
    layout: str
    """`coco`, `yolo` or `voc`."""
    val_root: Path | None = None
    label_kind: Any = None

    def splits(self) -> list[tuple[str, list[BoxSample]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Objects per class for each split."""
        out: dict[str, dict[str, int]] = {}
        for split, samples in self.splits():
            counts = dict.fromkeys(self.classes, 0)
            for s in samples:
                for c in s.label.classes:
                    counts[c] = counts.get(c, 0) + 1
            out[split] = counts
        return out

    def to_dict(self, include_files: bool = False) -> dict[str, Any]:
        """A JSON-ready description for graft.json, split.json and the report."""
        d: dict[str, Any] = {
            "root": str(self.root),
            "layout": self.layout,
            "split": self.split,
            "classes": list(self.classes),
            "sizes": {split: len(samples) for split, samples in self.splits()},
            "negatives": {split: sum(1 for s in samples if not len(s.label)) for split, samples in self.splits()},
            "objects": self.counts(),
        }
        if include_files:
            d["files"] = {split: [[_relative(s.path, self.root), s.label.to_dict()] for s in samples] for split, samples in self.splits()}
        return d


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path.resolve())


# ---------------------------------------------------------------------------------------- reading


def detect_format(path: str | os.PathLike[str]) -> str | None:
    """`coco` for a `.json`, `yolo` for a `.yaml`/`.yml`, `voc` for a folder of XML annotations."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return "coco"
    if p.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if p.is_dir() and ((p / "Annotations").is_dir() or any(p.glob("*.xml"))):
        return "voc"
    return None


def read_detection_data(
    path: str | os.PathLike[str],
    *,
    val: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> DetectionData:
    """Read, validate and split a detection data set.

    Args:
        path: A COCO `annotations.json`, a YOLO `data.yaml`, or a Pascal VOC folder (with
            `Annotations/` and `JPEGImages/`, or XML files next to their images).
        val: A separate validation set in any of these formats (else a seeded split of `path`,
            unless the source names its own val split: YOLO's `val:`, VOC's `ImageSets/Main/val.txt`).
        val_fraction: Share of images moved to validation when no split is given.
        seed: Seed of that split.

    Returns:
        The data set; classes come from the source's category list.

    Raises:
        DataError: Every problem at once (see the module docstring).
        ConfigError: The path is not one of the three formats.
    """
    splits, classes, layout = read_detection_source(path)
    split_note = "given"
    if val is not None:
        val_splits, val_classes, _ = read_detection_source(val)
        extra = sorted(set(val_classes) - set(classes))
        if extra:
            raise DataError([f"{val} has classes the training set lacks: {', '.join(extra)}"], str(val))
        splits["val"] = [s for part in val_splits.values() for s in part]
    elif not splits.get("val"):
        if not 0 < val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
        train = splits.get("train", [])
        if len(train) < 2:
            raise DataError([f"{path} holds {len(train)} image(s); a detector needs at least 2 (one to train on, one to validate)"], str(path))
        root = Path(path).parent if Path(path).is_file() else Path(path)
        splits["train"], splits["val"] = seeded_image_split(train, val_fraction, seed, root=root)
        split_note = f"seeded {round(val_fraction * 100)}% of images (seed {seed})"
    return DetectionData(
        train=splits.get("train", []), val=splits.get("val", []), test=splits.get("test", []), classes=classes,
        root=Path(path).parent if Path(path).is_file() else Path(path), split=split_note, layout=layout,
        val_root=Path(val) if val is not None else None,
    )  # fmt: skip


def read_detection_source(path: str | os.PathLike[str]) -> tuple[dict[str, list[BoxSample]], list[str], str]:
    """One detection source as `({split: samples}, classes, format)`; every problem raised at once."""
    p = Path(path)
    if not p.exists():
        raise DataError([f"{p} does not exist"], str(p))
    fmt = detect_format(p)
    if fmt is None:
        raise ConfigError(
            f"{p} is not a detection data set: give a COCO annotations .json, a YOLO data.yaml, "
            "or a Pascal VOC folder with Annotations/*.xml"
        )
    problems = Problems()
    reader = {"coco": _read_coco, "yolo": _read_yolo, "voc": _read_voc}[fmt]
    splits, classes = reader(p, problems)
    for samples in splits.values():
        _check_samples(samples, classes, problems)
    problems.raise_if_any(p)
    return splits, classes, fmt


def seeded_image_split(
    samples: Sequence[BoxSample], fraction: float, seed: int, *, root: Path
) -> tuple[list[BoxSample], list[BoxSample]]:
    """(train, val): images ordered by `split_key(seed, path relative to root)`, the first
    `val_count` held out; so the split does not change when the data set moves."""

    def key(s: BoxSample) -> str:
        path = Path(s.path)
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()

    order = sorted(range(len(samples)), key=lambda i: split_key(seed, key(samples[i])))
    held = set(order[: val_count(len(samples), fraction)])
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


def _read_coco(path: Path, problems: Problems) -> tuple[dict[str, list[BoxSample]], list[str]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError([f"{path} is not valid COCO JSON: {e}"], str(path)) from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            problems.add("missing keys", f"{path}: no {key!r} list (COCO JSON needs images, annotations and categories)")
    if problems:
        problems.raise_if_any(path)
    categories: dict[Any, str] = {}
    for cat in doc["categories"]:
        if cat.get("id") in categories:
            problems.add("duplicate ids", f"category id {cat.get('id')} is used twice ({categories[cat['id']]!r} and {cat.get('name')!r})")
        categories[cat.get("id")] = str(cat.get("name"))
    names = list(dict.fromkeys(categories[k] for k in sorted(categories, key=str)))
    images: dict[Any, dict] = {}
    for img in doc["images"]:
        if img.get("id") in images:
            problems.add("duplicate ids", f"image id {img.get('id')} is used twice ({images[img['id']].get('file_name')} and {img.get('file_name')})")
            continue
        images[img.get("id")] = img
    boxes: dict[Any, list[tuple[tuple[float, float, float, float], str]]] = {k: [] for k in images}
    seen_ann: set[Any] = set()
    for ann in doc["annotations"]:
        aid = ann.get("id")
        if aid is not None and aid in seen_ann:
            problems.add("duplicate ids", f"annotation id {aid} is used twice")
        seen_ann.add(aid)
        if ann.get("image_id") not in images:
            problems.add("unknown image ids", f"annotation {aid} refers to image id {ann.get('image_id')}, which is not in 'images'")
            continue
        if ann.get("category_id") not in categories:
            problems.add("unknown category ids", f"annotation {aid} has category id {ann.get('category_id')}, which is not in 'categories' ({', '.join(map(str, categories))})")
            continue
        if ann.get("iscrowd"):
            continue  # crowd regions are not objects to detect one by one
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            problems.add("bad boxes", f"annotation {aid}: bbox must be [x, y, width, height], got {bbox!r}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        boxes[ann["image_id"]].append(((x, y, x + w, y + h), categories[ann["category_id"]]))
    root = path.parent
    samples = []
    for iid, img in images.items():
        file = root / str(img.get("file_name", ""))
        if not file.is_file() and (root / "images" / str(img.get("file_name", ""))).is_file():
            file = root / "images" / str(img.get("file_name", ""))
        size = _declared_or_file_size(file, img.get("width"), img.get("height"), problems)
        if size is None:
            continue
        objs = boxes[iid]
        samples.append(BoxSample(file, BoxLabel(tuple(b for b, _ in objs), tuple(c for _, c in objs)), size[0], size[1], str(iid)))
    return {"train": sorted(samples, key=lambda s: str(s.path))}, names


def _read_yolo(path: Path, problems: Problems) -> tuple[dict[str, list[BoxSample]], list[str]]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError([f"{path} is not valid YAML: {e}"], str(path)) from None
    names = doc.get("names")
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            problems.add("bad names", f"{path}: names must be numbered 0..{len(keys) - 1}, got {keys}")
        names = [str(names[k]) for k in keys]
    if not isinstance(names, list) or not names:
        raise DataError([f"{path}: 'names' must list the class names (a list, or a dict from class index to name)"], str(path))
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        problems.add("duplicate ids", f"{path}: class names repeat: {names}")
    base = path.parent / str(doc.get("path", "") or "")
    splits: dict[str, list[BoxSample]] = {}
    if "train" not in doc:
        problems.add("missing keys", f"{path}: no 'train:' entry (the folder or list of training images)")
    for split in ("train", "val", "test"):
        if not doc.get(split):
            continue
        images = _yolo_images(base, doc[split], problems, path)
        splits[split] = [s for s in (_yolo_sample(f, names, problems) for f in images) if s is not None]
    return splits, names


def _yolo_images(base: Path, entry: Any, problems: Problems, yaml_path: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for e in entries:
        p = base / str(e)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in _IMAGE_SUFFIXES)
        elif p.suffix == ".txt" and p.is_file():
            files += [(p.parent / line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            problems.add("missing files", f"{yaml_path}: {e} (resolved to {p}) is neither an image folder nor a list file")
    return files


def _yolo_label_file(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):  # Ultralytics' rule: the last `images` folder → `labels`
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo_sample(image: Path, names: list[str], problems: Problems) -> BoxSample | None:
    size = _declared_or_file_size(image, None, None, problems)
    if size is None:
        return None
    w, h = size
    label_file = _yolo_label_file(image)
    boxes, classes = [], []
    if label_file.is_file():  # no label file: an image without objects (a negative), as in Ultralytics
        for n, line in enumerate(label_file.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                cls, cx, cy, bw, bh = int(fields[0]), *(float(v) for v in fields[1:5])
                if len(fields) != 5:
                    raise ValueError
            except ValueError:
                problems.add("bad boxes", f"{label_file}:{n}: expected 'class cx cy w h' (normalised), got {line.strip()!r}")
                continue
            if not 0 <= cls < len(names):
                problems.add("unknown category ids", f"{label_file}:{n}: class {cls} is not in names (0..{len(names) - 1})")
                continue
            boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
            classes.append(names[cls])
    return BoxSample(image, BoxLabel(tuple(boxes), tuple(classes)), w, h, str(image))


def _read_voc(path: Path, problems: Problems) -> tuple[dict[str, list[BoxSample]], list[str]]:
    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    img_dir = path / "JPEGImages" if (path / "JPEGImages").is_dir() else ann_dir
    by_stem: dict[str, BoxSample] = {}
    seen_files: dict[str, Path] = {}
    names: set[str] = set()
    for xml_file in sorted(ann_dir.glob("*.xml")):
        try:
            root = ET.parse(xml_file).getroot()
        except ET.ParseError as e:
            problems.add("bad annotation files", f"{xml_file}: not valid XML ({e})")
            continue
        filename = root.findtext("filename") or f"{xml_file.stem}.jpg"
        file = img_dir / filename
        if filename in seen_files:
            problems.add("duplicate ids", f"{xml_file}: image {filename} is also annotated by {seen_files[filename]}")
            continue
        seen_files[filename] = xml_file
        size = _declared_or_file_size(file, _int(root.findtext("size/width")), _int(root.findtext("size/height")), problems)
        if size is None:
            continue
        boxes, classes = [], []
        for obj in root.findall("object"):
            name = (obj.findtext("name") or "").strip()
            try:
                box = tuple(float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                problems.add("bad boxes", f"{xml_file}: object {name!r} has no numeric bndbox xmin/ymin/xmax/ymax")
                continue
            if not name:
                problems.add("bad boxes", f"{xml_file}: an object has no <name>")
                continue
            boxes.append(box)
            classes.append(name)
            names.add(name)
        by_stem[xml_file.stem] = BoxSample(file, BoxLabel(tuple(boxes), tuple(classes)), size[0], size[1], xml_file.stem)
    if not by_stem and not problems:
        raise DataError([f"{ann_dir} holds no Pascal VOC .xml annotation files"], str(path))
    splits: dict[str, list[BoxSample]] = {}
    sets = path / "ImageSets" / "Main"
    for split in ("train", "val", "test"):
        listed = sets / f"{split}.txt"
        if listed.is_file():
            stems = [line.split()[0] for line in listed.read_text().splitlines() if line.strip()]
            missing = [s for s in stems if s not in by_stem]
            for s in missing:
                problems.add("missing files", f"{listed}: {s} has no annotation file in {ann_dir}")
            splits[split] = [by_stem[s] for s in stems if s in by_stem]
    if not splits:
        splits["train"] = list(by_stem.values())
    return splits, sorted(names)


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _declared_or_file_size(file: Path, width: Any, height: Any, problems: Problems) -> tuple[int, int] | None:
    """(width, height) of an image file (its header only), checked against what the annotation declares."""
    from PIL import Image, UnidentifiedImageError

    if not file.is_file():
        problems.add("missing files", f"image file {file} does not exist")
        return None
    try:
        with Image.open(file) as im:
            w, h = im.size
    except (OSError, UnidentifiedImageError) as e:
        problems.add("unreadable files", f"{file}: cannot be read as an image ({type(e).__name__})")
        return None
    if width is not None and height is not None and (int(width), int(height)) != (w, h):
        problems.add("wrong sizes", f"{file}: the annotation says {width}x{height} but the image is {w}x{h}")
    return w, h


def _check_samples(samples: list[BoxSample], classes: list[str], problems: Problems) -> None:
    known = set(classes)
    for s in samples:
        if len(s.label) > MAX_OBJECTS:
            problems.add("crowded images", f"{s.path}: {len(s.label)} objects; at most {MAX_OBJECTS} per image are supported")
        for (x1, y1, x2, y2), name in zip(s.label.boxes, s.label.classes):
            where = f"{s.path}: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] ({name})"
            if name not in known:
                problems.add("unknown category ids", f"{where} has class {name!r}, not one of {', '.join(classes)}")
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                problems.add("zero-area boxes", f"{where} has zero area")
            elif x1 < -_EDGE_TOLERANCE or y1 < -_EDGE_TOLERANCE or x2 > s.width + _EDGE_TOLERANCE or y2 > s.height + _EDGE_TOLERANCE:
                problems.add("boxes outside the image", f"{where} lies outside the {s.width}x{s.height} image")


# ---------------------------------------------------------------------------------------- loading


def box_transform(size: int, *, train: bool, augment: str = "light") -> Any:
    """Box-aware transforms (`torchvision.transforms.v2`): augmentation for training, then a resize
    to `size` x `size` (so every batch has one size) and float in [0, 1]; boxes follow."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if train and augment != "none":
        steps.append(v2.RandomHorizontalFlip(0.5))
        steps.append(v2.ColorJitter(0.2, 0.2, 0.2) if augment == "light" else v2.RandomPhotometricDistort())
        if augment in ("strong", "randaugment"):
            steps.append(v2.RandomZoomOut(fill=114, side_range=(1.0, 2.0), p=0.3))
    steps += [v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True), v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


def image_transform(size: int) -> Any:
    """What prediction applies to an image alone: resize to `size` x `size`, float in [0, 1]."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])


def image_size_of(x: Any) -> tuple[int, int]:
    """(height, width) of an image path, PIL image or `[3, H, W]` tensor, reading only a file's header."""
    from PIL import Image

    if isinstance(x, (str, os.PathLike)):
        with Image.open(x) as im:
            return im.size[1], im.size[0]
    if isinstance(x, Image.Image):
        return x.size[1], x.size[0]
    return int(x.shape[-2]), int(x.shape[-1])


class DetectionDataset(torch.utils.data.Dataset):
    """`(image [3, S, S] float, {"boxes", "labels"})` per sample; labels are class index + 1."""

    def __init__(self, samples: Sequence[BoxSample], classes: Sequence[str], transform: Any) -> None:
        self.samples, self.transform = list(samples), transform
        self.index = {c: i + 1 for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from torchvision import tv_tensors

        from graftkit.data.images import load_image

        s = self.samples[i]
        image = tv_tensors.Image(load_image(s.path).contiguous())
        h, w = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(torch.tensor(s.label.boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(h, w))
        labels = torch.tensor([self.index[c] for c in s.label.classes], dtype=torch.int64)
        image, target = self.transform(image, {"boxes": boxes, "labels": labels})
        return image.as_subclass(torch.Tensor), {"boxes": target["boxes"].as_subclass(torch.Tensor), "labels": target["labels"]}


Targets = list[dict[str, torch.Tensor]]


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[tuple[torch.Tensor, Targets], Targets]:
    """`((images [B, 3, S, S], targets), targets)`: the loop gives the first to the model (a
    detector needs the boxes to compute its losses while training) and the second to the task."""
    images = torch.stack([b[0] for b in batch])
    targets = [b[1] for b in batch]
    return (images, targets), targets


def make_detection_loader(
    samples: Sequence[BoxSample], classes: Sequence[str], *, size: int, batch_size: int, train: bool,
    augment: str, num_workers: int, seed: int,
) -> torch.utils.data.DataLoader:  # fmt: skip
    """A seeded loader of `((images, targets), targets)`; a last training batch of one is dropped
    (BatchNorm in the new layers needs two)."""
    dataset = DetectionDataset(samples, classes, box_transform(size, train=train, augment=augment))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=train, num_workers=num_workers, generator=generator,
        collate_fn=collate_detection, drop_last=train and len(samples) % batch_size == 1,
    )  # fmt: skip
