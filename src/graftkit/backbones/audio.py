"""The Backbone contract for audio (DESIGN.md §2): waveforms in, frame features and pooled features out.

Every audio backbone takes a batch of mono waveforms `[B, S]` (float32 in [-1, 1] at
`preprocess.sample_rate`, each clip cut or padded to `preprocess.num_samples`) and gives
- `forward_frames(x) -> [B, T, D]`: one vector per output frame (what a CTC head reads);
- `forward_features(x) -> [B, D]`: the frames pooled (mean over time);
- `layer_groups()`: input → output, for partial / gradual unfreezing and layer-wise learning rates.
The network inside is any `nn.Module` mapping `[B, S]` to `[B, T, D]` (an `onnx2torch` graph, a
transformers model, a small module of our own); `sources/` builds it and loads its weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from graftkit.backbones.base import WeightsInfo
from graftkit.errors import ConfigError


@dataclass(frozen=True)
class AudioPreprocess:
    """How audio files become a backbone's input waveforms."""

    sample_rate: int = 16000
    """Rate the network was trained at, in Hz; files are resampled to it (soxr)."""
    max_seconds: float = 10.0
    """Clips are cut or zero-padded at the end to this length (`--max-seconds`)."""
    normalize: bool = False
    """Scale each clip to zero mean and unit variance before the network (wav2vec2-style)."""

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ConfigError(f"--max-seconds must be a positive number of seconds, got {self.max_seconds}")

    @property
    def num_samples(self) -> int:
        """Samples per clip fed to the network."""
        return int(round(self.sample_rate * self.max_seconds))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "audio", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AudioPreprocess":
        return cls(**{k: v for k, v in d.items() if k != "kind"})


class AudioBackbone(nn.Module):
    """An audio network behind the Backbone contract.

    Args:
        encoder: Maps waveforms `[B, S]` to frames `[B, T, D]`.
        num_features: D.
        preprocess: Sample rate and clip length.
        weights: Where the weights came from.
        groups: `groups(encoder) -> list[list[nn.Module]]`, input → output.
        frame_rate: Output frames per second (for CTC's pre-flight check and the report).

    Example:
        >>> bb = load_backbone("speech_embedding")
        >>> bb.forward_frames(torch.zeros(2, 16000)).shape
        torch.Size([2, 4, 96])
    """

    modality = "audio"

    def __init__(
        self,
        encoder: nn.Module,
        num_features: int,
        preprocess: AudioPreprocess,
        weights: WeightsInfo,
        groups: Callable[[nn.Module], list[list[nn.Module]]],
        frame_rate: float,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_features = num_features
        self.preprocess = preprocess
        self.weights = weights
        self._groups = groups
        self.frame_rate = frame_rate

    def forward_frames(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Frame features `[B, T, D]` of waveforms `[B, S]` (or `{"waveform": [B, S]}`, the exported input's name)."""
        if isinstance(x, dict):
            x = x["waveform"]
        if self.preprocess.normalize:
            x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True) + 1e-7)
        return self.encoder(x)

    def forward_features(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features `[B, D]`: the mean of the frames over time."""
        return self.forward_frames(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def layer_groups(self) -> list[list[nn.Module]]:
        return self._groups(self.encoder)

    def frames_for(self, seconds: float) -> int:
        """How many output frames a clip of `seconds` gives (measured: one forward pass on silence)."""
        was_training = self.training
        with torch.no_grad():
            n = self.eval().forward_frames(torch.zeros(1, int(round(seconds * self.preprocess.sample_rate)))).shape[1]
        self.train(was_training)
        return int(n)


def chunk_groups(modules: list[nn.Module], n: int) -> list[list[nn.Module]]:
    """`modules` that hold parameters, in order, cut into `n` groups of about equal parameter count."""
    with_params = [m for m in modules if any(True for _ in m.parameters(recurse=False))]
    total = sum(p.numel() for m in with_params for p in m.parameters(recurse=False)) or 1
    groups: list[list[nn.Module]] = [[] for _ in range(n)]
    seen = 0
    for m in with_params:
        k = min(n - 1, int(n * seen / total))
        groups[k].append(m)
        seen += sum(p.numel() for p in m.parameters(recurse=False))
    return [g for g in groups if g]
