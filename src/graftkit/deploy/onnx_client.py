"""A torch-free ONNX client: `graft predict RUN img --backend onnx` for image classification runs.

It does what `export/preprocess.json` tells any client to do (decode, resize the short side,
centre-crop, scale, normalise, softmax with the fitted temperature) with PIL, numpy and ONNX
Runtime only, so a prediction starts in well under the seconds that importing torch costs. Runs
this client does not cover (other tasks and modalities) go through `graftkit.load` as before;
`client_for` says which.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graftkit.data.prediction import Prediction
from graftkit.deploy.runtime import EXPORT_DIR, PREPROCESS_FILE, OnnxRuntimeModel
from graftkit.rundir import read_finished, read_run_json

_RESAMPLE = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST", "lanczos": "LANCZOS"}


def client_for(run_dir: str | Path, backend: str, *, calibrated: bool = True) -> "OnnxImageClassifier | None":
    """The torch-free client for `backend` on this run, or None when the run needs the full
    predictor (the torch backend, a text or non-classification run, or no export yet: the full
    predictor then names the fix). `calibrated=False`: scores without the fitted temperature."""
    if backend not in ("onnx", "onnx-int8"):
        return None
    path, spec = read_finished(run_dir)  # a damaged run is named here, as by graftkit.load
    pre = Path(path) / EXPORT_DIR / PREPROCESS_FILE
    if spec.modality != "image" or spec.task.get("name") != "classification" or not pre.is_file():
        return None
    export = read_run_json(pre, fix=f"run `graft export {path} --format onnx` again")
    if "image" not in export or export.get("output", {}).get("activation") != "softmax":
        return None
    if export["image"].get("channels", 3) != 3 or "window" in export["image"]:
        return None  # one-channel and windowed grey runs: the full predictor's decoder

    return OnnxImageClassifier(path, export, int8=backend == "onnx-int8", calibrated=calibrated)


class OnnxImageClassifier:
    """An exported image classifier under ONNX Runtime, fed as `preprocess.json` says.

    Args:
        run_dir: A finished run directory with `export/model.onnx`.
        export: The parsed `export/preprocess.json`.
        int8: Run `export/model.int8.onnx`.
        calibrated: Divide the logits by the temperature `preprocess.json` records (as `graftkit.load`).
    """

    modality = "image"

    def __init__(self, run_dir: Path, export: dict[str, Any], *, int8: bool = False, calibrated: bool = True) -> None:
        self.model = OnnxRuntimeModel(run_dir, int8=int8)  # checks the file, its hash and staleness
        self.classes = list(export["classes"])
        self.image = export["image"]
        self.temperature = float(export["output"].get("temperature") or 1.0) if calibrated else 1.0
        (self.input_name,) = export["inputs"]

    def preprocess(self, path: str | Path) -> np.ndarray:
        """One image file → a normalised `[3, S, S]` float32 array."""
        from PIL import Image

        from graftkit.data.images import decode_rgb_array
        from graftkit.errors import DataError

        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError([f"{path}: cannot be read ({e.strerror or e}): check the path and permissions"], str(path)) from None
        rgb = Image.fromarray(decode_rgb_array(data, path))
        short, crop = int(self.image["resize_short_side"]), int(self.image["center_crop"])
        w, h = rgb.size  # the short side to `short`, the long one scaled and truncated, as torchvision's Resize
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        rgb = rgb.resize(size, getattr(Image.Resampling, _RESAMPLE.get(self.image.get("interpolation"), "BICUBIC")))
        left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
        pixels = np.asarray(rgb.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
        mean, std = np.asarray(self.image["mean"], np.float32), np.asarray(self.image["std"], np.float32)
        return ((pixels - mean) / std).transpose(2, 0, 1)

    def predict(self, inputs: Sequence[str | Path], top_k: int = 1, batch_size: int = 32) -> list[Prediction]:
        """A `Prediction` per image file (the class, its probability, the top-k list)."""
        out: list[Prediction] = []
        k = min(top_k, len(self.classes))
        for start in range(0, len(inputs), batch_size):
            part = list(inputs[start : start + batch_size])
            logits = self.model.run({self.input_name: np.stack([self.preprocess(p) for p in part])})
            probs = _softmax(logits / self.temperature)
            for name, row in zip(part, probs):
                order = np.argsort(-row, kind="stable")[:k]
                top = [(self.classes[i], float(row[i])) for i in order]
                out.append(Prediction(str(name), top[0][0], top[0][1], top))
        return out

    def predict_iter(self, inputs: Sequence[str | Path], top_k: int = 1, batch_size: int = 32, progress: bool = False) -> Iterator[Prediction]:
        """`predict`, a few batches at a time (as `Predictor.predict_iter`)."""
        from graftkit.deploy.batch import predict_in_chunks

        return predict_in_chunks(self.predict, inputs, top_k=top_k, batch_size=batch_size, progress=progress, unit="img")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
