"""Cached linear probe vs re-running the frozen backbone every epoch (what fastai and Keras do).

    .venv/bin/python benchmarks/probe.py    # needs `apt-get install -y dataset-fashion-mnist`

1,000 Fashion-MNIST images (100 per class, upsampled to 256 px JPEGs), frozen EfficientNet-Lite0
at 224 px, 10 epochs of head training, same split, optimizer, schedule, batch size, precision and
data loading on both sides. Reports wall time end to end, the ratio, and validation accuracy;
then a second graftkit run on the same data with the cache warm.
"""

from __future__ import annotations

import shutil
import time

import torch

from _common import WORK, fashion_mnist_folder, fresh_cache, machine, report

EPOCHS, BATCH, SEED = 10, 32, 0


def graftkit_probe(data, out) -> tuple[float, float, dict]:
    import graftkit

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run = graftkit.fit(data, model="efficientnet_lite0", strategy="linear-probe", epochs=EPOCHS, batch_size=BATCH, seed=SEED, out=out)
    return time.perf_counter() - t0, run.metrics["val"]["accuracy"], run.metrics


def uncached_probe(data) -> tuple[float, float]:
    """Frozen backbone in the loop: every epoch decodes and runs every image through it again."""
    from graftkit.data import ImageFileDataset, build_transform, default_num_workers, make_loader, read_image_data
    from graftkit.sources import load_backbone
    from graftkit.tasks import ClassificationTask
    from graftkit.engine import LocalEngine, choose_channels_last, choose_precision
    from graftkit.training.schedule import build_scheduler

    t0 = time.perf_counter()
    images = read_image_data(data, seed=SEED)
    backbone = load_backbone("efficientnet_lite0").eval()
    arch = backbone.weights.arch
    engine = LocalEngine(precision=choose_precision(arch, training=False)[0], channels_last=choose_channels_last(arch))
    backbone = engine.setup(backbone)
    task = ClassificationTask(images.classes)
    torch.manual_seed(SEED)
    head = task.build_head(backbone.num_features)
    tf = build_transform(backbone.preprocess, "none", train=False)
    workers = default_num_workers()
    train = make_loader(ImageFileDataset(images.train, task.encode([s.label for s in images.train]), tf), batch_size=BATCH, shuffle=True, num_workers=workers, seed=SEED)
    val = make_loader(ImageFileDataset(images.val, task.encode([s.label for s in images.val]), tf), batch_size=64, shuffle=False, num_workers=workers, seed=SEED)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.01)
    sched = build_scheduler(opt, EPOCHS * len(train), schedule="cosine", warmup_fraction=0.1)
    best = 0.0
    for epoch in range(EPOCHS):
        head.train()
        for x, y in train:
            with torch.no_grad(), engine.autocast():
                f = backbone.forward_features(engine.to_device(x)).float()
            loss = task.loss(head(f), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            sched.step()
        head.eval()
        correct = n = 0
        with torch.no_grad():
            for x, y in val:
                with engine.autocast():
                    f = backbone.forward_features(engine.to_device(x)).float()
                correct += int((head(f).argmax(1) == y).sum())
                n += len(y)
        best = max(best, correct / n)
        print(f"uncached epoch {epoch + 1}: val acc {correct / n:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0, best


def warm_imports() -> None:
    """Import what both sides use before timing either, so neither pays one-off import costs."""
    import matplotlib.figure  # noqa: F401  (graftkit's report)
    import sklearn.metrics  # noqa: F401
    import timm  # noqa: F401

    import graftkit.data  # noqa: F401
    import graftkit.training.fit  # noqa: F401


def main() -> None:
    warm_imports()
    data = fashion_mnist_folder("fmnist-1000-jpg", "train", 100)
    # Cold runs before and after the baseline (each with an empty cache): this machine's speed
    # drifts by 10-20 % over minutes, and the ratio should not depend on which side got the slow minutes.
    fresh_cache("probe")
    cold1_s, cold_acc, cold = graftkit_probe(data, WORK / "runs" / "probe-cold")
    warm_s, warm_acc, warm = graftkit_probe(data, WORK / "runs" / "probe-warm")
    assert warm["features"]["computed"] == 0, warm["features"]
    base_s, base_acc = uncached_probe(data)
    fresh_cache("probe-2")
    cold2_s, _, _ = graftkit_probe(data, WORK / "runs" / "probe-cold-2")
    cold_s = (cold1_s + cold2_s) / 2
    print(f"cold runs: {cold1_s:.1f} s, {cold2_s:.1f} s")
    rows = [
        ("re-run backbone every epoch (fastai/Keras style)", f"{base_s:.1f}", "1.0×", f"{base_acc:.3f}"),
        ("graftkit linear-probe, cache cold", f"{cold_s:.1f}", f"{base_s / cold_s:.1f}×", f"{cold_acc:.3f}"),
        ("graftkit linear-probe, cache warm", f"{warm_s:.2f}", f"{base_s / warm_s:.0f}×", f"{warm_acc:.3f}"),
    ]
    report(
        f"Probe: 1,000 images, EfficientNet-Lite0, {EPOCHS} epochs ({machine()})",
        rows,
        ("method", "wall s", "speed-up", "val accuracy"),
        {"cold_features": cold["features"], "warm_features": warm["features"], "cold_train_seconds": cold["train_seconds"]},
    )


if __name__ == "__main__":
    main()
