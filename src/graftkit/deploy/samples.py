"""Inputs for checking an exported model: the run's validation samples, or synthetic ones.

Parity checks, int8 calibration and the accuracy of a quantized model all need real inputs. A
run directory lists its exact split in `split.json`: image runs the files (relative to the data
root), text runs the row numbers of the data file, which is read again with the run's settings.
When those files are gone (the run was copied to another machine), seeded synthetic inputs are
used instead, and the description says so: a parity figure on noise is weaker evidence than one
on validation data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graftkit.rundir import RunSpec, read_run_json


@dataclass
class Samples:
    """Inputs to run an exported model on, with labels when they are real validation samples."""

    items: list[Any]
    """Image paths or uint8 `[3, H, W]` tensors (image runs); strings (text runs)."""
    labels: list[Any] | None
    """The items' labels (class names, lists of names, numbers), or None for synthetic inputs."""
    source: str
    """Where they came from, e.g. `validation images from split.json (120 of 120)`."""

    @property
    def real(self) -> bool:
        return self.labels is not None


def calibration_images(run_dir: str | Path, limit: int = 128) -> tuple[Samples, Samples] | None:
    """Training images of an image run for int8: every k-th (at most `limit`) to calibrate the
    ranges, and as many others, between them, on which each int8 try is compared with fp32; None
    when their files are gone. Using training images keeps the validation images, on which the
    int8 model's accuracy is measured, out of every choice int8 makes."""
    found = image_split_samples(Path(run_dir), "train")
    if found is None or not found.items:
        return None
    step = max(2, len(found.items) // limit)
    calibrate = Samples(found.items[::step][:limit], found.labels[::step][:limit], f"{found.source}, every {step}th")
    calibrate.source += f": {len(calibrate.items)}"
    held = Samples(found.items[step // 2 :: step][:limit], found.labels[step // 2 :: step][:limit], "")
    held.source = f"{len(held.items)} other training images"
    return calibrate, held


def image_split_samples(run_dir: Path, split_name: str = "val") -> Samples | None:
    path = run_dir / "split.json"
    if not path.is_file():
        return None
    split = read_run_json(path)
    listed = (split.get("files") or {}).get(split_name) or []
    roots = [Path(split[k]) for k in ("val_root", "root") if split.get(k)]
    items, labels = [], []
    for rel, label in listed:
        candidates = [Path(rel)] if Path(rel).is_absolute() else [r / rel for r in roots]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is not None:
            items.append(hit)
            labels.append(label)
    what = "validation" if split_name == "val" else "training"
    if not items:
        return Samples([], [], f"none of the {len(listed)} {what} files listed in split.json exist here")
    return Samples(items, labels, f"{what} images from split.json ({len(items)} of {len(listed)})")


def text_validation_samples(run_dir: Path, meta: RunSpec) -> Samples | None:
    from graftkit.errors import GraftError

    data = meta.data
    source = data.get("root")
    if not source or not Path(source).exists():
        return Samples([], [], f"the data file {source} does not exist here")
    if data.get("split") == "given" and not data.get("val_root") and Path(source).is_file():
        return Samples([], [], f"the separate validation file of this run is not recorded (trained before graftkit kept its path); {Path(source).name} holds training texts only")
    cfg = meta.config
    try:
        from graftkit.data import read_dataset
        from graftkit.tasks import get_task

        dataset = read_dataset(
            source, modality="text", label_kind=get_task(meta.task["name"]).label_kind, val=data.get("val_root"), text_col=cfg.get("text_col"),
            label_col=cfg.get("label_col"), val_fraction=cfg.get("val_fraction", 0.2), seed=cfg.get("seed", 0),
            encoding=cfg.get("encoding"),
        )  # fmt: skip
    except GraftError as e:
        return Samples([], [], f"the data file {source} cannot be read again ({str(e).splitlines()[0]})")
    rows = None
    if (run_dir / "split.json").is_file():
        rows = set((read_run_json(run_dir / "split.json").get("rows") or {}).get("val") or [])
    val = [s for s in dataset.val if not rows or s.row in rows]
    name = Path(data.get("val_root") or source).name
    return Samples([s.text for s in val], [s.label for s in val], f"validation texts from {name} ({len(val)})")


def synthetic_images(n: int, size: int, seed: int) -> list[torch.Tensor]:
    # Smooth colour fields (low-resolution noise, upsampled) rather than pixel noise: their
    # statistics are closer to photographs, so the logits are not all alike.
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 3, 8, 8), generator=g)
    big = torch.nn.functional.interpolate(low, size=(size + size // 7, size + size // 7), mode="bicubic", align_corners=False)
    return [(img.clamp(0, 1) * 255).to(torch.uint8) for img in big]


def synthetic_texts(run_dir: Path, meta: RunSpec, n: int, seed: int) -> list[str]:
    tokenizer = load_run_tokenizer(run_dir, meta)
    specials = set(getattr(tokenizer, "all_special_tokens", []))
    words = [w for w in sorted(tokenizer.get_vocab()) if w not in specials and w.isalpha()] or ["text"]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(3, 24, (1,), generator=g))
        idx = torch.randint(0, len(words), (length,), generator=g).tolist()
        out.append(" ".join(words[i] for i in idx))
    return out


def load_run_tokenizer(folder: Path, meta: RunSpec) -> Any:
    """The tokenizer saved with a text run (`RUN/hf/`) or beside its export (`RUN/export/`)."""
    from graftkit.sources.hf_weights import load_tokenizer

    sub = folder / meta.text.architecture_dir
    return load_tokenizer(sub if sub.is_dir() else folder, meta.text.kind)
