"""`hf:` audio models: waveform encoders (wav2vec2, HuBERT, WavLM, data2vec-audio, ...) through
transformers' `AutoModel`, from a `save_pretrained` folder or the hub cache, as an `AudioBackbone`.

An `hf:` id is an audio model when its `config.json` names one of `AUDIO_MODEL_TYPES`; the
sample rate and normalisation come from its feature extractor config when there is one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch import nn

from graftkit.backbones.audio import AudioBackbone, AudioPreprocess
from graftkit.backbones.base import WeightsInfo
from graftkit.errors import ConfigError, WeightsMismatchError
from graftkit.sources._common import sha256_file

AUDIO_MODEL_TYPES = frozenset({
    "wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d",
})  # fmt: skip
"""transformers `model_type`s read as waveform encoders (raw 16 kHz samples in, frames out)."""
SPECTROGRAM_MODEL_TYPES = frozenset({"whisper", "audio-spectrogram-transformer", "speech_to_text"})
"""Audio models that need a spectrogram feature extractor: recognised, refused with a message."""


def config_model_type(folder: Path | None) -> str | None:
    """`model_type` of `folder/config.json`, or None."""
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None


def cached_config_folder(name: str) -> Path | None:
    """The folder holding `config.json` for `name`: the folder itself, or its hub-cache snapshot (no network)."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name.split("@")[0], "config.json")
    except Exception:  # not a valid repo id: the text path reports it
        return None
    return Path(found).parent if isinstance(found, str) else None


class HFAudioEncoder(nn.Module):
    """A transformers waveform model as `[B, S] -> [B, T, D]` (its last hidden state)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(input_values=x).last_hidden_state


def _groups(encoder: nn.Module) -> list[list[nn.Module]]:
    model = encoder.model
    first = [m for m in (getattr(model, "feature_extractor", None), getattr(model, "feature_projection", None)) if m is not None]
    enc = model.encoder
    first += [m for m in (getattr(enc, "pos_conv_embed", None), getattr(enc, "layer_norm", None)) if m is not None]
    layers = list(getattr(enc, "layers", []))
    return [first, *[[layer] for layer in layers]] if layers else [first, [enc]]


def _preprocess(folder: Path, config: Any) -> AudioPreprocess:
    fe = folder / "preprocessor_config.json"
    rate, normalize = 16000, getattr(config, "feat_extract_norm", "group") == "layer"
    if fe.is_file():
        d = json.loads(fe.read_text(encoding="utf-8"))
        rate, normalize = int(d.get("sampling_rate", rate)), bool(d.get("do_normalize", normalize))
    return AudioPreprocess(sample_rate=rate, max_seconds=10.0, normalize=normalize)


def _frame_rate(config: Any, rate: int) -> float:
    strides = getattr(config, "conv_stride", None) or [320]
    return rate / math.prod(strides)


def _weights_file(folder: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_hf_audio(folder: Path, *, model_id: str, pretrained: bool = True, arch: str | None = None) -> AudioBackbone:
    """A transformers waveform encoder from a `save_pretrained` folder (config, optional
    feature-extractor config, weights) as an `AudioBackbone`.

    Args:
        folder: The folder (a hub-cache snapshot or a local one).
        model_id: The id to record.
        pretrained: False builds the architecture from the config with random weights (the
            caller seeds): `scratch:hf:...` and rebuilding a saved run.
        arch: The architecture id to record (default `hf:<folder>`).

    Raises:
        ConfigError: The config is not a waveform model transformers knows.
        WeightsMismatchError: The weights do not fit the config.

    Example:
        >>> bb = load_hf_audio(Path("tiny-wav2vec2"), model_id="hf:tiny-wav2vec2")
        >>> bb.forward_frames(torch.zeros(1, 16000)).shape[-1] == bb.num_features
        True
    """
    from transformers import AutoConfig, AutoModel

    kind = config_model_type(folder)
    if kind in SPECTROGRAM_MODEL_TYPES:
        raise ConfigError(f"'{model_id}' is a {kind} model (spectrogram input): as an audio encoder only waveform models "
                          f"({', '.join(sorted(AUDIO_MODEL_TYPES))}) load through hf: for now")  # fmt: skip
    config = AutoConfig.from_pretrained(str(folder))
    weights = _weights_file(folder)
    if pretrained and weights is not None:
        model, info = AutoModel.from_pretrained(str(folder), output_loading_info=True)
        bad = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
        if bad or info.get("mismatched_keys"):
            raise WeightsMismatchError(f"{weights} does not fit {config.model_type}: missing {bad[:5]}, mismatched {info.get('mismatched_keys')[:5]}")
        digest: str | None = sha256_file(weights)
    else:
        model, digest = AutoModel.from_config(config), None
    model.config.apply_spec_augment = False  # masking belongs to augmentation, not to the encoder's forward
    if isinstance(getattr(model, "masked_spec_embed", None), nn.Parameter):
        model.masked_spec_embed.requires_grad_(False)  # used only by SpecAugment inside the model, which is off
    preprocess = _preprocess(folder, config)
    info_ = WeightsInfo(
        model_id=model_id, arch=arch or f"hf:{folder}", source="hf" if digest else "scratch", sha256=digest,
        extra={"folder": str(folder), "model_type": config.model_type},
    )  # fmt: skip
    backbone = AudioBackbone(HFAudioEncoder(model), int(config.hidden_size), preprocess, info_, _groups, _frame_rate(config, preprocess.sample_rate))
    backbone.save_architecture = lambda out: _save_architecture(model, folder, Path(out))  # type: ignore[attr-defined]
    return backbone


def _save_architecture(model: nn.Module, folder: Path, out: Path) -> None:
    """config.json (+ preprocessor_config.json) without weights, so a run rebuilds offline."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(out))
    fe = folder / "preprocessor_config.json"
    if fe.is_file():
        (out / fe.name).write_text(fe.read_text(encoding="utf-8"), encoding="utf-8")
