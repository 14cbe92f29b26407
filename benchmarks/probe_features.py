"""Frozen EfficientNet-Lite0 features of Fashion-MNIST for the probe-solver study (issue 10, req. 1).

    PYTHONPATH=src:scripts python benchmarks/probe_features.py official   # 100/class official train (seed 0), 200/class official test
    PYTHONPATH=src:scripts python benchmarks/probe_features.py dev        # two dev splits drawn from the training images only
    PROBE_SIZE=288 PYTHONPATH=src:scripts python benchmarks/probe_features.py res
    PROBE_POOLING=concat PYTHONPATH=src:scripts python benchmarks/probe_features.py official   # --layer-pooling concat

Writes `benchmarks/_work/probe_study/NAME.npz` (x = features, y = labels, idx = image indices),
original and horizontally flipped; `probe_head_timing.py` and the dev studies read them. Choices
(strength grid, flips, resolution, layer pooling: `probe_layers_dev.py`) were studied on the `dev`
splits only."""
from __future__ import annotations
import os, sys, time
from pathlib import Path
import numpy as np
from _common import WORK
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fashion_mnist import read_split, write_folder, CLASSES

OUT = WORK / "probe_study"

def folder(name, images, labels, idx, flip=False):
    out = WORK / "probe_imgs" / name
    if not (out / ".complete").is_file():
        imgs = images[:, :, ::-1].copy() if flip else images
        write_folder(out, imgs, labels, idx, fmt="jpg", size=256)
        (out / ".complete").write_text("ok")
    return out

def feats_of(backbone, folder_path, idx, labels):
    from types import SimpleNamespace
    from graftkit.training.frozen import labelled_features
    samples = [SimpleNamespace(path=folder_path / CLASSES[labels[i]] / f"{i:05d}.jpg", label=CLASSES[labels[i]]) for i in idx]
    f = labelled_features(backbone, samples, CLASSES)
    return f.features, f.labels

def main(which):
    from graftkit.sources import load_backbone
    os.environ.setdefault("GRAFTKIT_CACHE", str(WORK / "cache" / "probe_study"))
    backbone = load_backbone("efficientnet_lite0", offline=True)
    size = int(os.environ.get("PROBE_SIZE", "224"))
    pooling = os.environ.get("PROBE_POOLING", "last")
    suffix = ("" if size == 224 else f"_{size}") + ("" if pooling == "last" else f"_{pooling}")
    if pooling != "last":
        backbone.use_layer_pooling(pooling)
    if size != 224:
        import dataclasses as dc
        backbone.preprocess = dc.replace(backbone.preprocess, input_size=size)
    OUT.mkdir(parents=True, exist_ok=True)
    tr_img, tr_lab = read_split("train")
    jobs = []
    if which == "res":  # dev1 train + every other dev1 dev image (1,000), at PROBE_SIZE
        rng = np.random.default_rng(1)
        pool = [rng.choice(np.flatnonzero(tr_lab == c), 300, replace=False) for c in range(10)]
        tr = np.concatenate([p[:100] for p in pool]); dv = np.concatenate([p[100:] for p in pool])[::2]
        jobs = [("dev1_train", tr, False), ("dev1_devhalf", dv, False)]
        imgs, labs = tr_img, tr_lab
    elif which == "dev":
        for seed in (1, 2):
            rng = np.random.default_rng(seed)
            pool = [rng.choice(np.flatnonzero(tr_lab == c), 300, replace=False) for c in range(10)]
            tr = np.concatenate([p[:100] for p in pool]); dv = np.concatenate([p[100:] for p in pool])
            jobs += [(f"dev{seed}_train", tr, False), (f"dev{seed}_train_flip", tr, True), (f"dev{seed}_dev", dv, False)]
        imgs, labs = tr_img, tr_lab
    else:
        from fashion_mnist import pick_per_class
        te_img, te_lab = read_split("t10k")
        tr = pick_per_class(tr_lab, 100, seed=0)
        jobs = [("off_train", tr, False)] + ([("off_train_flip", tr, True)] if suffix == "" else [])
        te = pick_per_class(te_lab, 200, seed=0)
    for name, idx, flip in jobs:
        if (OUT / f"{name}{suffix}.npz").is_file():
            continue
        t0 = time.perf_counter()
        fname = "dev1_dev" if name == "dev1_devhalf" else name
        f, y = feats_of(backbone, folder(fname, tr_img, tr_lab, idx, flip), idx, tr_lab)
        np.savez(OUT / f"{name}{suffix}.npz", x=f, y=y, idx=idx)
        print(name, f.shape, f"{time.perf_counter()-t0:.0f} s", flush=True)
    if which == "official" and not (OUT / f"off_test{suffix}.npz").is_file():
        t0 = time.perf_counter()
        f, y = feats_of(backbone, folder("off_test", te_img, te_lab, te), te, te_lab)
        np.savez(OUT / f"off_test{suffix}.npz", x=f, y=y, idx=te)
        print("off_test", f.shape, f"{time.perf_counter()-t0:.0f} s", flush=True)

if __name__ == "__main__":
    main(sys.argv[1])
