"""Predict with a trained run: `graftkit.load(run_dir).predict(...)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from graftkit.errors import DataError


@dataclass(frozen=True)
class Prediction:
    """One input's result: the top class, its probability, and the top-k list."""

    input: str
    label: str
    score: float
    top_k: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "label": self.label, "score": self.score, "top_k": [{"label": l, "score": s} for l, s in self.top_k]}


class Predictor:
    """A trained model loaded from its run directory, ready to predict.

    Args:
        run_dir: a finished run directory.
        device: torch device to run on.
    """

    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        from graftkit.rundir import load_model
        from graftkit.training.engine import LocalEngine, tune_malloc

        tune_malloc()
        self.run_dir = Path(run_dir)
        self.model, self.meta, self.task = load_model(self.run_dir)
        precision = self.meta.get("precision", {})
        self.engine = LocalEngine(device, precision=precision.get("inference", "fp32"), channels_last=precision.get("channels_last", False))
        self.model = self.engine.setup(self.model)
        self.classes: list[str] = self.task.classes
        self.preprocess = self.model.backbone.preprocess

    def predict_proba(self, inputs: Sequence[Any], batch_size: int = 32) -> torch.Tensor:
        """Class probabilities `[N, C]` for image paths, PIL images or uint8 `[3, H, W]` tensors."""
        from graftkit.data import build_transform, load_image

        transform = build_transform(self.preprocess, "none", train=False)
        out = []
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                batch = torch.stack([transform(_as_tensor(x, load_image)) for x in inputs[start : start + batch_size]])
                with self.engine.autocast():
                    logits = self.model(self.engine.to_device(batch))
                out.append(torch.softmax(logits.float(), dim=1).cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.classes)))

    def predict(self, inputs: Iterable[Any], top_k: int = 1, batch_size: int = 32) -> list[Prediction]:
        """Top-k predictions per input.

        Example:
            >>> graftkit.load("runs/flowers").predict(["rose.jpg"], top_k=3)[0].label
            'rose'
        """
        inputs = list(inputs)
        probs = self.predict_proba(inputs, batch_size=batch_size)
        decoded = self.task.decode(probs, top_k=max(top_k, 1))
        return [Prediction(_name(x, i), d[0][0], d[0][1], d) for i, (x, d) in enumerate(zip(inputs, decoded))]


def _as_tensor(x: Any, load_image) -> torch.Tensor:
    if isinstance(x, (str, Path)):
        return load_image(x)
    if isinstance(x, torch.Tensor):
        return x
    from PIL import Image

    if isinstance(x, Image.Image):
        import numpy as np

        return torch.from_numpy(np.asarray(x.convert("RGB"))).permute(2, 0, 1).contiguous()
    raise DataError([f"cannot predict on a {type(x).__name__}: pass image paths, PIL images or uint8 [3, H, W] tensors"])


def _name(x: Any, i: int) -> str:
    return str(x) if isinstance(x, (str, Path)) else f"<input {i}>"


def load(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """Load a run directory for prediction: offline, no training data, no pickle.

    Raises:
        RunDirError: the folder is not a finished run.
    """
    return Predictor(run_dir, device=device)
