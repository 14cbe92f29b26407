"""The Backbone contract for audio (DESIGN.md §2): waveforms in, frame features and pooled features out.

Every audio backbone takes a batch of mono waveforms `[B, S]` (float32 in [-1, 1] at
`preprocess.sample_rate`, each clip cut or padded to `preprocess.num_samples`) and gives
- `forward_frames(x) -> [B, T, D]`: one vector per output frame (what a CTC head reads);
- `forward_features(x) -> [B, D]`: the frames pooled (mean over time);
- `layer_groups()`: input → output, for partial / gradual unfreezing and layer-wise learning rates;
- with `--layer-pooling weighted` (`use_layer_pooling`), the frames are a learned softmax-weighted
  sum of every layer's layer-normalised frames (the SUPERB protocol, `LayerMix`), and
  `forward_layer_features(x)` gives each layer's pooled features `[B, L, D]`, what the probe caches.
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


LAYER_POOLINGS = ("last", "weighted")


@dataclass(frozen=True)
class AudioPreprocess:
    """How audio files become a backbone's input waveforms."""

    sample_rate: int = 16000
    """Rate the network was trained at, in Hz; files are resampled to it (soxr)."""
    max_seconds: float = 10.0
    """Clips are cut or zero-padded at the end to this length (`--max-seconds`)."""
    normalize: bool = False
    """Scale each clip to zero mean and unit variance before the network (wav2vec2-style)."""
    layer_pooling: str = "last"
    """`last`: the encoder's output frames; `weighted`: a learned weighted sum of all its layers' frames."""

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ConfigError(f"--max-seconds must be a positive number of seconds, got {self.max_seconds}")
        if self.layer_pooling not in LAYER_POOLINGS:
            raise ConfigError(f"--layer-pooling must be one of {', '.join(LAYER_POOLINGS)}, got {self.layer_pooling!r}")

    @property
    def num_samples(self) -> int:
        """Samples per clip fed to the network."""
        return int(round(self.sample_rate * self.max_seconds))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "audio", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AudioPreprocess":
        return cls(**{k: v for k, v in d.items() if k != "kind"})


class LayerMix(nn.Module):
    """SUPERB's weighted sum of an encoder's layers: `softmax(logits) · layers`, over dim 1 of
    `[B, L, ...]`. The logits start at zero (every layer weighted equally)."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.logits.float(), dim=0).to(layers.dtype)
        return (layers * w.view(1, -1, *([1] * (layers.ndim - 2)))).sum(dim=1)

    def weights(self) -> list[float]:
        """The layers' weights, input → output."""
        return [round(float(v), 4) for v in torch.softmax(self.logits.detach().float(), dim=0)]


class LayerPooling:
    """`--layer-pooling weighted` for an audio backbone whose `layer_frames(x)` gives every layer's
    frames (a list of `[B, T, D]`, input → output): mixes them with a `LayerMix`. Mixed into
    `AudioBackbone` and `WhisperBackbone`."""

    layer_mix: "LayerMix | None"

    def has_layers(self) -> bool:
        return False

    def use_layer_pooling(self, kind: str) -> None:
        """Switch to `kind` (`last` / `weighted`) and record it in `preprocess`.

        Raises:
            ConfigError: `weighted` for an encoder without per-layer frames of its output width.
        """
        import dataclasses as dc

        self.layer_mix = None
        if kind == "weighted":
            if not self.has_layers():
                raise ConfigError(f"--layer-pooling weighted needs an encoder with per-layer frames of one width; "
                                  f"{self.weights.model_id} has none: use an hf: wav2vec2 / HuBERT / WavLM / AST model or "
                                  "whisper_tiny_en, or --layer-pooling last")  # fmt: skip
            self.layer_mix = LayerMix(self.num_layers())
        self.preprocess = dc.replace(self.preprocess, layer_pooling=kind)  # AudioPreprocess refuses an unknown `kind`

    def num_layers(self) -> int:
        """How many layers `layer_frames` gives (one forward pass on a short silence)."""
        was_training = self.training
        with torch.no_grad():
            n = len(self.eval().layer_frames(torch.zeros(1, self.preprocess.sample_rate // 2)))
        self.train(was_training)
        return n

    def normed_layer_frames(self, x: torch.Tensor | dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """`layer_frames`, each frame layer-normalised over D (no affine), as s3prl's weighted-sum
        featurizer does by default: one encoder's layers can differ in scale (the inner residual
        stream vs the output after a final layer norm), and an unnormalised mix is then ruled by
        the largest. (Whisper tiny.en's differ little: frame RMS 0.7-1.2 across its 5 states.)"""
        return [nn.functional.layer_norm(f, f.shape[-1:]) for f in self.layer_frames(x)]

    def forward_layer_features(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Every layer's pooled features `[B, L, D]` (the mean of its normalised frames over time):
        what the probe caches under `--layer-pooling weighted`, so that only the mix and the head
        train. The mix is linear, so mixing these equals pooling `mixed_frames`."""
        return torch.stack([f.mean(dim=1) for f in self.normed_layer_frames(x)], dim=1)

    def mixed_frames(self, x: torch.Tensor) -> torch.Tensor:
        assert self.layer_mix is not None
        return self.layer_mix(torch.stack(self.normed_layer_frames(x), dim=1))

    def mix_groups(self, groups: list[list[nn.Module]]) -> list[list[nn.Module]]:
        """`groups` with the mix in the last one (it trains with the top of the encoder)."""
        if self.layer_mix is None or not groups:
            return groups
        return [*groups[:-1], [*groups[-1], self.layer_mix]]


class AudioBackbone(LayerPooling, nn.Module):
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
        self.layer_mix = None

    def _normalised(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(x, dict):
            x = x["waveform"]
        if self.preprocess.normalize:
            x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True) + 1e-7)
        return x

    def forward_frames(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Frame features `[B, T, D]` of waveforms `[B, S]` (or `{"waveform": [B, S]}`, the exported
        input's name): the encoder's output, or under `--layer-pooling weighted` the mix of its layers."""
        if self.layer_mix is not None:
            return self.mixed_frames(x)
        return self.encoder(self._normalised(x))

    def has_layers(self) -> bool:
        return hasattr(self.encoder, "forward_layers")

    def layer_frames(self, x: torch.Tensor | dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Every layer's frames `[B, T, D]`, input → output (the encoder's `forward_layers`)."""
        return self.encoder.forward_layers(self._normalised(x))

    def forward_features(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features `[B, D]`: the mean of the frames over time."""
        return self.forward_frames(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def layer_groups(self) -> list[list[nn.Module]]:
        return self.mix_groups(self._groups(self.encoder))

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
