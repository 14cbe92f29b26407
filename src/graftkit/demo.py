"""`graft demo`: the whole workflow on a real data set that ships inside the package, offline."""

from __future__ import annotations

import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

DEMO_ZIP = "fashion-mnist-600.zip"
TEXT_DEMO = "movie-snippets-600.csv.gz"
AUDIO_DEMO_ZIP = "spoken-digits-espeak.zip"
DETECTION_DEMO = "detection-scenes.zip"
DETECTION_DEMO_EPOCHS = 5
DETECTION_DEMO_STRATEGY = "linear-probe"
"""Frozen backbone, FPN + FCOS head train: on the bundled val scenes 5 epochs reach mAP 0.21 in
~130 s of one core, where fine-tuning everything reached 0.04 in 2 epochs (90 s) and 0.12 in 3
(benchmarks/RESULTS.md, "Detection")."""


def _demo_cache() -> Path:
    """Where bundled demo data is unpacked (`$GRAFTKIT_CACHE/demo`, default `~/.cache/graftkit/demo`)."""
    return Path(os.environ.get("GRAFTKIT_CACHE") or Path.home() / ".cache" / "graftkit") / "demo"


def _unpacked(zip_name: str, folder: str) -> Path:
    """Unpack a bundled zip (once; a `.complete` marker is written last) and return `folder` in it."""
    base = _demo_cache()
    root = base / folder
    if not (root / ".complete").is_file():
        with resources.as_file(resources.files("graftkit.data.demo") / zip_name) as zpath, zipfile.ZipFile(zpath) as z:
            z.extractall(base)
        (root / ".complete").write_text("ok")
    return root


def demo_data_dir() -> Path:
    """Unpack the bundled Fashion-MNIST subset (once) and return its class-folder root."""
    return _unpacked(DEMO_ZIP, "fashion-mnist")


def text_demo_data() -> Path:
    """Unpack the bundled movie-review snippets (once) and return the CSV (`text,label,score`)."""
    import gzip

    base = _demo_cache()
    path = base / "movie-snippets-600.csv"
    if not path.is_file():
        base.mkdir(parents=True, exist_ok=True)
        with resources.as_file(resources.files("graftkit.data.demo") / TEXT_DEMO) as gz:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(gzip.decompress(gz.read_bytes()))
            tmp.replace(path)
    return path


def audio_demo_data_dir() -> Path:
    """Unpack the bundled spoken digits (once) and return their class-folder root."""
    return _unpacked(AUDIO_DEMO_ZIP, "spoken-digits")


def detection_demo_data() -> Path:
    """Unpack the bundled detection scenes (once) and return their folder (`train.json`,
    `val.json`, `data.yaml`, `images/`, `labels/`; made by `scripts/make_detection_data.py --bundle`)."""
    return _unpacked(DETECTION_DEMO, "detection-scenes")


def run_demo(kind: str = "image", out: str | Path | None = None, strategy: str | None = None, epochs: int | None = None):
    """The offline demo: `image` trains EfficientNet-Lite0 on 600 Fashion-MNIST images; `text`
    trains MiniLM on 600 movie-review snippets (binary sentiment); `audio` trains Google's
    speech_embedding on 200 spoken digits (20 espeak-ng voices); `detection` trains an FCOS
    detector on EfficientNet-Lite0 (frozen) over 240 scenes of Fashion-MNIST items pasted on real
    textures and photos, on one torch thread. Prints the validation headline.

    Returns:
        The finished `Run`.
    """
    if kind == "detection":
        return _run_detection_demo(out or "runs/demo-detection", strategy or DETECTION_DEMO_STRATEGY, epochs)
    strategy = strategy or "linear-probe"
    if kind == "text":
        return _run_text_demo(out or "runs/demo-text", strategy, epochs)
    if kind == "audio":
        return _run_audio_demo(out or "runs/demo-audio", strategy, epochs)
    data = demo_data_dir()
    return _classifier_demo(
        data, f"Fashion-MNIST subset (600 images, 10 classes, MIT license) unpacked at {data}", "efficientnet_lite0",
        out or "runs/demo", strategy, epochs or (10 if strategy == "linear-probe" else 3), "images",
        f"{next(iter(sorted(data.glob('*/*.png'))))} --top-k 3",
    )  # fmt: skip


def _run_text_demo(out: str | Path, strategy: str, epochs: int | None):
    data = text_demo_data()
    return _classifier_demo(
        data, f"600 movie-review snippets (VADER, MIT license), positive / negative, at {data}", "minilm",
        out, strategy, epochs or (20 if strategy == "linear-probe" else 3), "reviews", '"what a wonderful film" "utterly boring"',
        text_col="text", label_col="label",
    )  # fmt: skip


def _run_audio_demo(out: str | Path, strategy: str, epochs: int | None):
    data = audio_demo_data_dir()
    return _classifier_demo(
        data, f"200 spoken digits, 20 synthetic espeak-ng voices (CC0), 10 classes, at {data}", "speech_embedding",
        out, strategy, epochs or (40 if strategy == "linear-probe" else 5), "clips",
        f"{next(iter(sorted(data.glob('*/*.ogg'))))} --top-k 3",
    )  # fmt: skip


def _classifier_demo(data: Path, about: str, model: str, out: str | Path, strategy: str, epochs: int, noun: str, example: str,
                     **settings: Any):  # fmt: skip
    """Train `model` on bundled classification data, then print the accuracy, the report and a
    `graft predict` line to try (`example`: its inputs)."""
    from graftkit.engine.progress import info
    from graftkit.training.fit import fit

    info(f"demo: {about}")
    run = fit(data, model=model, strategy=strategy, out=out, overwrite=True, offline=True, epochs=epochs, **settings)
    acc = run.metrics["val"]["accuracy"]
    print(f"demo finished: validation accuracy {acc:.3f} on {run.metrics['val']['n']} held-out {noun}")
    print(f"report: {Path(run.dir) / 'report.html'}")
    print(f"try:    graft predict {run.dir} {example}")
    return run


def _run_detection_demo(out: str | Path, strategy: str, epochs: int | None):
    import torch

    from graftkit.engine.progress import info
    from graftkit.training.fit import fit

    data = detection_demo_data()
    info(f"demo: 240 train / 60 val scenes, 4 Fashion-MNIST item classes on scikit-image textures and photos (MIT / public domain), at {data}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a detector's many small convolutions: one thread was 2.5x faster than two on a shared 2-core CPU
    try:
        run = fit(data / "train.json", val=data / "val.json", model="efficientnet_lite0", task="detection", detector="fcos", strategy=strategy,
                  out=out, overwrite=True, offline=True, image_size=128, batch_size=8, epochs=epochs or DETECTION_DEMO_EPOCHS)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    val = run.metrics["val"]
    print(f"demo finished: validation mAP {val['map']:.3f} (mAP50 {val['map50']:.3f}) on {val['images']} held-out scenes")
    print(f"report: {Path(run.dir) / 'report.html'}")
    print(f"try:    graft predict {run.dir} {next(iter(sorted((data / 'images' / 'val').glob('*.jpg'))))} --format json --draw drawn/")
    return run
