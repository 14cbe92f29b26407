"""ONNX Runtime backend: run `RUN/export/model.onnx` (or the int8 model) on named input batches.

onnxruntime is imported only when a session is built, so `import graftkit.deploy` stays cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graftkit.errors import RunDirError

if TYPE_CHECKING:
    import torch
from graftkit.rundir import read_run_json, sha256_file

EXPORT_DIR = "export"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TORCHSCRIPT_FILE = "model.pt"
PREPROCESS_FILE = "preprocess.json"
PARITY_FILE = "parity.json"
BACKENDS = ("torch", "onnx", "onnx-int8")
"""`torch`: the PyTorch model; `onnx`: export/model.onnx; `onnx-int8`: export/model.int8.onnx."""


def resolve_backend(run_dir: str | Path, backend: str, *, torch_settings: bool = False) -> tuple[str, str]:
    """The backend `auto` stands for on this run, and why (other backends are returned as they are).

    `auto` is the export's own choice, recorded in `export/preprocess.json` as `default_backend`:
    `onnx-int8` when `graft export --quantize int8` kept the int8 model within its accuracy
    budget, else `onnx`. It is `torch` when there is no export, when the export was made from
    other weights than the run's (re-export to use it again), or when `torch_settings` (the
    caller set `--precision` or `--channels-last`, which only PyTorch has).
    """
    if backend != "auto":
        return backend, ""
    if torch_settings:
        return "torch", "--precision/--channels-last set how PyTorch runs"
    folder = Path(run_dir) / EXPORT_DIR
    if not (folder / PREPROCESS_FILE).is_file() or not (folder / ONNX_FILE).is_file():
        return "torch", "no ONNX export (graft export RUN makes one)"
    spec = read_run_json(folder / PREPROCESS_FILE, fix=f"run `graft export {run_dir} --format onnx` again")
    made_from = spec.get("weights_sha256")
    if made_from and made_from != weights_digest(Path(run_dir)):
        return "torch", f"the export was made from other weights: run `graft export {run_dir}` again to use it"
    choice = spec.get("default_backend", "onnx")
    if choice == "onnx-int8" and not (folder / INT8_FILE).is_file():
        choice = "onnx"
    return choice, spec.get("default_backend_why", "the ONNX export")


def weights_digest(run_dir: Path) -> str:
    """SHA-256 of `model.safetensors`: an export records it, so a retrained run's stale export is caught.
    Hashed once per file version (`--backend auto` checks staleness, then the ONNX model checks it again)."""
    path = (Path(run_dir) / "model.safetensors").resolve()
    stat = path.stat()
    return _digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def make_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation on.

    Args:
        path: An `.onnx` file.
        threads: Intra-op threads (None: torch's thread count, so both backends use the same cores).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or _default_threads()
    opts.log_severity_level = 3  # errors only: no per-node warnings on stderr
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel:
    """An exported model under ONNX Runtime, called like the PyTorch model: named batch → logits.

    Args:
        run_dir: A run directory with `export/model.onnx` (from `graft export RUN --format onnx`).
        int8: Use `export/model.int8.onnx` (from `--quantize int8`) instead.
        threads: Intra-op threads (None: torch's thread count).

    Raises:
        RunDirError: The export is missing, or stale (made from other weights than the run's
            model.safetensors); the message names the `graft export` command that fixes it.

    Example:
        >>> ort_model = OnnxRuntimeModel("runs/flowers")
        >>> logits = ort_model({"pixel_values": torch.zeros(1, 3, 224, 224)})
    """

    def __init__(self, run_dir: str | Path, *, int8: bool = False, threads: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        folder = self.run_dir / EXPORT_DIR
        self.path = folder / (INT8_FILE if int8 else ONNX_FILE)
        fix = f"graft export {self.run_dir} --format onnx" + (" --quantize int8" if int8 else "")
        if not self.path.is_file() or not (folder / PREPROCESS_FILE).is_file():
            raise RunDirError(f"{self.path} does not exist: export the run first with `{fix}`.")
        self.spec = read_run_json(folder / PREPROCESS_FILE, fix=f"run `{fix}` again")
        made_from = self.spec.get("weights_sha256")
        if made_from and made_from != weights_digest(self.run_dir):
            raise RunDirError(f"{self.path} was exported from other weights than {self.run_dir}/model.safetensors: run `{fix}` again.")
        recorded = self.spec.get("files", {}).get(self.path.name, {}).get("sha256")
        if recorded and recorded != sha256_file(self.path):
            raise RunDirError(f"{self.path} is damaged or was replaced (its SHA-256 differs from preprocess.json's): run `{fix}` again.")
        try:
            self.session = make_session(self.path, threads)
        except Exception as e:  # onnxruntime's own error (e.g. a truncated protobuf)
            raise RunDirError(f"{self.path} cannot be loaded by ONNX Runtime ({str(e).splitlines()[0][:160]}): run `{fix}` again.") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits `[B, C]` (float32, CPU) for a batch of named inputs."""
        import torch

        return torch.from_numpy(self.run({n: _numpy(batch[n]) for n in self.input_names}))

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits `[B, C]` for named numpy inputs (no torch involved)."""
        outputs = self.session.run(None, {n: feeds[n] for n in self.input_names})
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1)  # multitask: one output per task


def _default_threads() -> int:
    """torch's thread count when torch is loaded (both backends then use the same cores), else
    the cores this process may run on."""
    import os
    import sys

    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())
