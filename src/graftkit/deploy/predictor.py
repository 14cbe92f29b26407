"""Predict with a trained run: `graftkit.load(run_dir).predict(...)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from graftkit.deploy.modality import run_modality
from graftkit.tasks import Prediction

__all__ = ["Prediction", "Predictor", "load"]


class Predictor:
    """A trained model loaded from its run directory, ready to predict.

    Args:
        run_dir: a finished run directory.
        device: torch device to run on (the `torch` backend).
        backend: `torch` (the PyTorch model), `onnx` (`export/model.onnx` under ONNX Runtime) or
            `onnx-int8` (`export/model.int8.onnx`); the ONNX files come from `graft export`.
        precision: `torch` backend: `auto` (the run's own request, else the rule for `device`),
            `fp32` or `bf16`.
        channels_last: `torch` backend: memory format for CNNs (None: the run's request, else per model).
    """

    def __init__(
        self, run_dir: str | Path, device: str = "cpu", backend: str = "torch", *, precision: str = "auto", channels_last: bool | None = None,
        calibrated: bool = True,
    ) -> None:  # fmt: skip
        from graftkit.engine import tune_malloc

        tune_malloc()
        self.run_dir = Path(run_dir)
        self.backend = backend
        if backend == "torch":
            from graftkit.rundir import load_model

            self.model, self.meta, self.task = load_model(self.run_dir)
            self._run = run_modality(self.meta, self.run_dir)
            # Precision is re-decided for the device predicting (a run trained in bf16 on a GPU
            # predicts in fp32 on a CPU without native bf16), unless asked for, or the run asked for one.
            from graftkit.engine import run_inference_settings

            self.engine = run_inference_settings(self.meta, device=str(device), precision=precision, channels_last=channels_last).engine()
            self.model = self.engine.setup(self.model)
            self.preprocess = self.model.backbone.preprocess
            self.tokenizer = getattr(self.model.backbone, "tokenizer", None)
        else:
            if precision != "auto" or channels_last is not None:
                from graftkit.errors import ConfigError

                raise ConfigError(f"--precision and --channels-last set how PyTorch runs; --backend {backend} runs the exported graph: drop them")
            self._load_onnx(backend)
        self.classes: list[str] = self.task.classes
        self.modality: str = self.meta.modality
        # The temperature fitted on validation (classification) divides the logits of every
        # backend; `calibrated=False` gives the raw scores. It never changes the top class.
        calibration = self.meta.calibration or {}
        self.temperature: float | None = float(calibration["temperature"]) if calibrated and calibration.get("temperature") else None

    def _load_onnx(self, backend: str) -> None:
        """Everything predict needs without building the PyTorch model: graft.json, the task, the
        preprocessing (and tokenizer) and an ONNX Runtime session."""
        from graftkit.deploy.runtime import BACKENDS, EXPORT_DIR, OnnxRuntimeModel
        from graftkit.errors import ConfigError
        from graftkit.rundir import read_finished
        from graftkit.tasks import task_from_dict
        from graftkit.engine import LocalEngine

        if backend not in BACKENDS:
            raise ConfigError(f"--backend {backend!r} is not known; choose one of: {', '.join(BACKENDS)}")
        _, self.meta = read_finished(self.run_dir)
        self._run = run_modality(self.meta, self.run_dir)  # an unknown modality fails before the session is built
        self.task = task_from_dict(self.meta.task)
        try:
            self.task.export_spec()  # raises for tasks that are not one graph (text generation)
        except ConfigError as e:
            raise ConfigError(f"{e} (--backend {backend} needs an export: use --backend torch)") from None
        self.model = OnnxRuntimeModel(self.run_dir, int8=backend == "onnx-int8")
        self.engine = LocalEngine("cpu")
        self.preprocess, self.tokenizer = self._run.load_inputs(self.run_dir / EXPORT_DIR)

    def _logits(self, batch: Any) -> torch.Tensor:
        """The model's raw outputs for one preprocessed batch (a tensor, or a dict for text)."""
        if self.backend != "torch":
            return self.model(batch if isinstance(batch, dict) else {"pixel_values": batch})
        with self.engine.autocast():
            return self.model(self.engine.to_device(batch))

    def predict_proba(self, inputs: Sequence[Any], batch_size: int = 32) -> torch.Tensor:
        """The task's outputs per input: class probabilities `[N, C]` (per-label probabilities for
        multi-label, values `[N, 1]` for regression).

        Args:
            inputs: image paths, PIL images or uint8 `[3, H, W]` tensors; strings for text runs.
        """
        batches, in_input_order = self._run.raw_batches(inputs, batch_size, self.preprocess, self.tokenizer)  # checks the inputs
        out = []
        with torch.inference_mode():
            for batch in batches:
                logits = self._logits(batch).float()
                if self.temperature is not None:
                    logits = logits / self.temperature
                out.append(self.task.activate(logits).cpu())
        if not out:
            return torch.zeros((0, max(len(self.classes), 1)))
        return in_input_order(torch.cat(out))

    def predict(self, inputs: Iterable[Any], top_k: int = 1, batch_size: int = 32) -> list[Prediction]:
        """Top-k predictions per input.

        Example:
            >>> graftkit.load("runs/flowers").predict(["rose.jpg"], top_k=3)[0].label
            'rose'
        """
        inputs = list(inputs)
        names = [_name(x, i) for i, x in enumerate(inputs)]
        return self.task.predict(self, inputs, names, top_k, batch_size)

    def outputs(self, inputs: Sequence[Any], batch_size: int) -> torch.Tensor:
        """The task's activated outputs per input (what `Task.predict` decodes)."""
        return self.predict_proba(inputs, batch_size=batch_size)

    @property
    def backbone(self) -> Any:
        """The PyTorch backbone (generative tasks call its `generate`)."""
        return self.model.backbone

    def predict_iter(self, inputs: Sequence[Any], top_k: int = 1, batch_size: int = 32, progress: bool = False) -> Iterator[Prediction]:
        """`predict`, yielding results a few batches at a time (for long input lists and streams).

        Args:
            inputs: As for `predict`.
            top_k: Classes per result.
            batch_size: Inputs per forward pass.
            progress: Show a progress bar on stderr (only on a terminal, and only for more than
                four batches).

        Example:
            >>> for p in graftkit.load("runs/flowers").predict_iter(files, progress=True):
            ...     print(p.input, p.label)
        """
        from graftkit.deploy.batch import predict_in_chunks

        return predict_in_chunks(self.predict, inputs, top_k=top_k, batch_size=batch_size, progress=progress, unit=self._run.progress_unit)


def _name(x: Any, i: int) -> str:
    return str(x) if isinstance(x, (str, Path)) else f"<input {i}>"


def load(
    run_dir: str | Path, device: str = "cpu", backend: str = "torch", *, precision: str = "auto", channels_last: bool | None = None,
    calibrated: bool = True,
) -> Predictor:  # fmt: skip
    """Load a run directory for prediction: offline, no training data, no pickle.

    Args:
        run_dir: a finished run directory.
        device: torch device (the `torch` backend).
        backend: `torch`, `onnx` or `onnx-int8` (the last two need `graft export` first).
        precision: `torch` backend: `auto` (the run's request, else the rule for `device`), `fp32` or `bf16`.
        channels_last: `torch` backend: CNN memory format (None: the run's request, else per model).
        calibrated: divide the logits by the temperature fitted on validation (classification runs;
            every backend); False: the raw scores.

    Raises:
        RunDirError: the folder is not a finished run, or the ONNX export is missing or stale.
        ConfigError: unknown backend, or an ONNX backend for a text-generating run.
    """
    return Predictor(run_dir, device=device, backend=backend, precision=precision, channels_last=channels_last, calibrated=calibrated)
