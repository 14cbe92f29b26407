"""Audio decoding: files → mono float32 waveforms at the model's sample rate, cut or padded.

Decoding goes through libsndfile (`soundfile`: wav, flac, ogg/vorbis, opus, mp3 with libsndfile
≥ 1.1); stereo is averaged to mono; resampling is `soxr` (the SoX resampler, "HQ"). Every clip a
model sees is exactly `preprocess.num_samples` long: longer clips are cut at the end, shorter ones
padded with zeros at the end (the limit is recorded in graft.json and the report).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInfo",
    "AudioFileDataset",
    "decode_audio",
    "decode_audio_bytes",
    "fit_length",
    "load_audio",
    "probe_audio",
]

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"})
"""File suffixes read as audio (case-insensitive)."""

SILENCE_PEAK = 1e-4
"""A clip whose absolute peak is below this (about -80 dBFS) counts as silent."""


def _to_mono(wave: np.ndarray) -> np.ndarray:
    # soundfile returns (frames, channels) with always_2d=True
    return wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target or wave.size == 0:
        return wave
    import soxr

    return soxr.resample(wave, rate, target, quality="HQ").astype(np.float32, copy=False)


def decode_audio(source: str | Path | io.BytesIO, sample_rate: int) -> np.ndarray:
    """Decode a file (or file-like object) into a mono float32 waveform at `sample_rate`.

    Args:
        source: An audio file path or a binary file-like object.
        sample_rate: The rate to resample to, in Hz.

    Returns:
        `[samples]` float32 in [-1, 1].

    Raises:
        soundfile.LibsndfileError / RuntimeError: the file cannot be decoded (callers report it).

    Example:
        >>> decode_audio("yes.wav", 16000).shape
        (16000,)
    """
    import soundfile as sf

    wave, rate = sf.read(source, dtype="float32", always_2d=True)
    return _resample(_to_mono(wave), int(rate), sample_rate)


def decode_audio_bytes(data: bytes, sample_rate: int) -> np.ndarray:
    """`decode_audio` for bytes in memory (uploads to `graft serve`)."""
    return decode_audio(io.BytesIO(data), sample_rate)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Cut `wave` to `num_samples`, or pad it with zeros at the end."""
    if wave.shape[0] >= num_samples:
        return wave[:num_samples]
    return np.pad(wave, (0, num_samples - wave.shape[0]))


def load_audio(path: str | Path, sample_rate: int, num_samples: int) -> torch.Tensor:
    """A file as the model's input: mono, resampled, cut or padded to `num_samples`; `[num_samples]`."""
    return torch.from_numpy(np.ascontiguousarray(fit_length(decode_audio(path, sample_rate), num_samples)))


@dataclass(frozen=True)
class AudioInfo:
    """What validation learns about one file."""

    seconds: float
    """Duration, in seconds."""
    peak: float
    """Largest absolute sample value (0 for an empty clip)."""


def probe_audio(path: str | Path) -> AudioInfo:
    """Decode a file fully (so a truncated file fails here, not during training) and measure it.

    Raises:
        Exception: whatever the decoder raises for an unreadable file (callers report it by name).
    """
    import soundfile as sf

    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return AudioInfo(wave.shape[0] / float(rate), peak)


def audio_problem(path: Path, max_seconds: float | None) -> tuple[str, str] | None:
    """`(kind, message)` for a file that cannot be trained on, or None when it is fine.

    Kinds: `unreadable audio files`, `empty audio files`, `silent audio files`, `too long clips`.
    """
    try:
        info = probe_audio(path)
    except Exception as e:  # libsndfile's error says what is wrong with the file
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        return "unreadable audio files", f"{path}: cannot decode ({first}): re-encode it as wav/flac or remove it"
    if info.seconds == 0:
        return "empty audio files", f"{path}: holds no audio samples: remove it"
    if info.peak < SILENCE_PEAK:
        return "silent audio files", f"{path}: is silent (peak {info.peak:.1e}): remove it or record it again"
    if max_seconds is not None and info.seconds > max_seconds + 1e-6:
        return "too long clips", (
            f"{path}: {info.seconds:.2f} s is longer than the {max_seconds:g} s limit: "
            "trim it or raise --max-seconds"
        )
    return None


class AudioFileDataset(Dataset):
    """Decodes audio files into fixed-length waveforms; yields `(waveform [S], target)`.

    Args:
        paths: The audio files.
        targets: One row per file (`task.encode(...)`); None for unlabelled use (targets -1).
        sample_rate: The model's rate, in Hz.
        num_samples: Samples per clip after cutting / padding.
        augment: Optional `f(waveform) -> waveform` applied to each decoded clip (training only).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        targets: torch.Tensor | None,
        *,
        sample_rate: int,
        num_samples: int,
        augment: Any = None,
    ) -> None:
        self.paths = list(paths)
        self.targets = targets
        self.sample_rate, self.num_samples, self.augment = sample_rate, num_samples, augment
        if targets is not None and len(targets) != len(self.paths):
            raise ValueError(f"{len(targets)} target rows for {len(self.paths)} files")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        wave = load_audio(self.paths[i], self.sample_rate, self.num_samples)  # (S,)
        if self.augment is not None:
            wave = self.augment(wave)
        target = self.targets[i] if self.targets is not None else torch.tensor(-1)
        return wave, target
