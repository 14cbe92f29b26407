"""Keras 3's side of the peers benchmark (torch backend): frozen base, then unfrozen — the Keras transfer-learning guide.

    KERAS_BACKEND=torch peers-keras/bin/python side_keras.py keras CONFIG.json RESULT.json

The weights: Keras ships no EfficientNet-Lite, and `keras.applications` weights come from the
network, so the base is the same timm `tf_efficientnet_lite0` (no classifier) loaded strictly from
the driver's file, wrapped with `keras.layers.TorchModuleWrapper` — Keras' documented way to use a
torch module as a layer under the torch backend; its parameters become Keras variables, so
`base.trainable = False/True` freezes and unfreezes them for Keras' optimizer.

The recipe is the guide's (keras.io "Transfer learning & fine-tuning"): inputs scaled to the
model's normalisation (mean = std = 0.5: `Rescaling(1/127.5, offset=-1)`), NHWC → NCHW with
`Permute`, `base(x, training=False)` so BatchNorm stays in inference mode in both phases (the
wrapper calls `module.eval()`), `Dropout(0.2)`, `Dense(classes)`; Adam 1e-3 with the base frozen for
`frozen_epochs`, then recompile with Adam 1e-5 and train everything for `unfrozen_epochs`.
Keras 3 without TensorFlow has no `image_dataset_from_directory`, so the PNG folders are read
into uint8 NumPy arrays (inside the timed run) and fed to `fit`; validation on the test images each
epoch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def read_folder(root: Path, classes: list[str]):
    import numpy as np
    from PIL import Image

    xs, ys = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(c)
    return np.stack(xs), np.array(ys)


def main() -> None:
    side, config_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    t_launch = float(os.environ["PEERS_T0"])
    cfg = json.loads(config_path.read_text())
    im = cfg["images"]
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import timm
    import torch

    torch.set_num_threads(cfg["threads"])
    import keras
    from keras import layers

    assert keras.backend.backend() == "torch", keras.backend.backend()
    keras.utils.set_random_seed(cfg["seed"])
    classes = sorted(p.name for p in Path(im["train"]).iterdir() if p.is_dir())
    x_train, y_train = read_folder(Path(im["train"]), classes)
    x_test, y_test = read_folder(Path(im["test"]), classes)

    body = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    state = torch.load(im["weights"], map_location="cpu", weights_only=True)
    body.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=True)

    s = im["image_size"]
    inputs = keras.Input((s, s, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.Permute((3, 1, 2))(x)
    base = layers.TorchModuleWrapper(body, output_shape=(None, body.num_features))
    x = base(x, training=False)
    x = layers.Dropout(0.2)(x)
    model = keras.Model(inputs, layers.Dense(len(classes))(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    phases: list[dict] = []

    class PhaseTimes(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            phases.append({"t": time.time() - t_launch, "accuracy": float(self.model.history.history["val_accuracy"][-1])})

    def trainable() -> int:
        return sum(p.numel() for p in body.parameters() if p.requires_grad)

    fit = dict(batch_size=im["batch_size"], validation_data=(x_test, y_test), shuffle=True, verbose=2, callbacks=[PhaseTimes()])
    t0 = time.perf_counter()
    base.trainable = False
    frozen_trainable = trainable()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=im["frozen_epochs"], **fit)
    base.trainable = True
    unfrozen_trainable = trainable()
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=im["frozen_epochs"] + im["unfrozen_epochs"], initial_epoch=im["frozen_epochs"], **fit)
    result = {
        "accuracy": phases[-1]["accuracy"],
        "frozen_accuracy": phases[0]["accuracy"],
        "frozen_s": phases[0]["t"],
        "train_s": time.perf_counter() - t0,
        "phases": phases,
        "base_trainable_params": {"frozen": frozen_trainable, "unfrozen": unfrozen_trainable},
        "threads": torch.get_num_threads(),
    }
    result_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
