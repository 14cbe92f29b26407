"""fastai's side of the peers benchmark: `vision_learner(...).fine_tune(n)`, fastai's own recipe.

    peers-fastai/bin/python side_fastai.py fastai CONFIG.json RESULT.json

The weights: `vision_learner(dls, "tf_efficientnet_lite0", pretrained=True,
pretrained_cfg_overlay={"file": WEIGHTS})`. fastai hands unknown keyword arguments on to
`create_timm_model` → `timm.create_model`, and timm's `pretrained_cfg_overlay` points its pretrained
loader at a local file instead of the hub, so fastai takes its normal pretrained path (ImageNet
normalisation from timm's config — mean = std = 0.5 for this model —, a frozen body, its own head)
with exactly the weights graftkit loads (the driver wrote them, renamed into timm's keys, from the
same package file; timm loads them strictly, dropping only the 1000-class classifier).

`fine_tune(unfrozen_epochs, freeze_epochs=frozen_epochs)` at fastai's default base lr (2e-3), no
augmentation (images are already at the benchmark size), validating on the test images each epoch
as fastai always does. The frozen phase is timed from process start to the end of its first
`fit_one_cycle` (what a frozen-only run would cost), its accuracy read from fastai's recorder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    side, config_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    t_launch = float(os.environ["PEERS_T0"])
    cfg = json.loads(config_path.read_text())
    im = cfg["images"]
    import torch

    torch.set_num_threads(cfg["threads"])
    from fastai.callback.core import Callback
    from fastai.vision.all import ImageDataLoaders, accuracy, set_seed, vision_learner

    set_seed(cfg["seed"])
    root = Path(im["train"]).parent
    dls = ImageDataLoaders.from_folder(root, train=Path(im["train"]).name, valid=Path(im["test"]).name, bs=im["batch_size"], seed=cfg["seed"])
    learn = vision_learner(
        dls, "tf_efficientnet_lite0", pretrained=True, metrics=accuracy,
        pretrained_cfg_overlay={"file": im["weights"], "num_classes": 1000},
    )

    phases: list[dict] = []

    class PhaseTimes(Callback):
        """Record wall time and accuracy at the end of each `fit` (frozen phase, then unfrozen)."""

        order = 99

        def after_fit(self):
            phases.append({"t": time.time() - t_launch, "accuracy": float(self.learn.recorder.values[-1][-1]), "epochs": len(self.learn.recorder.values)})

    learn.add_cb(PhaseTimes())
    n_train = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    with learn.no_bar():
        learn.fine_tune(im["unfrozen_epochs"], freeze_epochs=im["frozen_epochs"])
    result = {
        "accuracy": phases[-1]["accuracy"],
        "frozen_accuracy": phases[0]["accuracy"],
        "frozen_s": phases[0]["t"],
        "train_s": time.perf_counter() - t0,
        "phases": phases,
        "trainable_params_frozen_phase": n_train,
        "threads": torch.get_num_threads(),
        "num_workers": dls.num_workers,
    }
    result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
