"""`hf:` audio models: waveform encoders (wav2vec2, HuBERT, WavLM, data2vec-audio, ...) and the
Audio Spectrogram Transformer (AST, behind its fbank ported to torch: `backbones/ast.py`) through
transformers' `AutoModel`, from a `save_pretrained` folder or the hub cache, as an `AudioBackbone`.

An `hf:` id is an audio model when its `config.json` names one of `AUDIO_MODEL_TYPES`; the
sample rate and normalisation come from its feature extractor config when there is one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graftkit.backbones.audio import AudioBackbone, AudioPreprocess
from graftkit.backbones.base import WeightsInfo
from graftkit.errors import ConfigError, WeightsMismatchError
from graftkit.sources._common import sha256_file

AUDIO_MODEL_TYPES = frozenset({
    "wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d",
})  # fmt: skip
"""transformers `model_type`s read as waveform encoders (raw 16 kHz samples in, frames out)."""
AST_MODEL_TYPE = "audio-spectrogram-transformer"
"""Loaded with its fbank front end in torch (`HFSpectrogramEncoder`)."""
SPECTROGRAM_MODEL_TYPES = frozenset({"whisper", AST_MODEL_TYPE, "speech_to_text"})
"""Audio models that need a spectrogram front end: Whisper (`sources/whisper_builtin.py`) and AST
load; the others are recognised and refused with a message (`REFUSED_MODEL_TYPES`)."""
REFUSED_MODEL_TYPES = SPECTROGRAM_MODEL_TYPES - {"whisper", AST_MODEL_TYPE}


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

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden state `[B, T, D]`, input → output; the last is `forward`'s frames. LayerDrop
        is off here: a skipped layer would leave no hidden state, and the mix weighs each by place."""
        config = self.model.config
        drop = getattr(config, "layerdrop", 0.0)
        config.layerdrop = 0.0
        try:
            out = self.model(input_values=x, output_hidden_states=True)
        finally:
            config.layerdrop = drop
        return [*out.hidden_states[:-1], out.last_hidden_state]


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
    """A transformers waveform encoder, or an AST behind its torch fbank, from a `save_pretrained`
    folder (config, optional feature-extractor config, weights) as an `AudioBackbone`.

    Args:
        folder: The folder (a hub-cache snapshot or a local one).
        model_id: The id to record.
        pretrained: False builds the architecture from the config with random weights (the
            caller seeds): `scratch:hf:...` and rebuilding a saved run.
        arch: The architecture id to record (default `hf:<folder>`).

    Raises:
        ConfigError: The config is not a waveform model or AST transformers knows (speech_to_text is
            refused by name), or an AST's preprocessor config does not fit its model config.
        WeightsMismatchError: The weights do not fit the config.

    Example:
        >>> bb = load_hf_audio(Path("tiny-wav2vec2"), model_id="hf:tiny-wav2vec2")
        >>> bb.forward_frames(torch.zeros(1, 16000)).shape[-1] == bb.num_features
        True
    """
    kind = config_model_type(folder)
    if kind in REFUSED_MODEL_TYPES or kind == "whisper":  # Whisper is routed to whisper_builtin before this
        raise ConfigError(f"'{model_id}' is a {kind} model (spectrogram input): as an audio encoder only waveform models "
                          f"({', '.join(sorted(AUDIO_MODEL_TYPES))}) and {AST_MODEL_TYPE} load through hf: for now")  # fmt: skip
    if kind == AST_MODEL_TYPE:
        return _load_ast(folder, model_id=model_id, pretrained=pretrained, arch=arch)
    model, digest = _load_model(folder, pretrained)
    config = model.config
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


def _load_model(folder: Path, pretrained: bool) -> tuple[nn.Module, str | None]:
    """`AutoModel` from `folder`: its weights, strictly (missing or mismatched keys fail), or random
    from the config (no weights file, or `pretrained=False`); and the weights' sha256 (None when random)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(folder))
    weights = _weights_file(folder)
    if not (pretrained and weights is not None):
        return AutoModel.from_config(config), None
    model, info = AutoModel.from_pretrained(str(folder), output_loading_info=True)
    bad = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
    if bad or info.get("mismatched_keys"):
        raise WeightsMismatchError(f"{weights} does not fit {config.model_type}: missing {bad[:5]}, mismatched {list(info.get('mismatched_keys') or [])[:5]}")
    return model, sha256_file(weights)


def _ast_groups(encoder: nn.Module) -> list[list[nn.Module]]:
    """Input → output: patch and position embeddings, each encoder layer, the final layernorm."""
    model = encoder.model
    layers = model.layers if hasattr(model, "layers") else model.encoder.layer  # transformers 5 / 4
    return [[model.embeddings], *[[layer] for layer in layers], [model.layernorm]]


def _load_ast(folder: Path, *, model_id: str, pretrained: bool, arch: str | None) -> AudioBackbone:
    """An AST (`ASTModel`) behind `ASTFbank`: 16 kHz waveforms in, the model's tokens out.

    The fbank settings come from `preprocessor_config.json` (`ASTFeatureExtractor`'s defaults
    without one); the clip length is the model's window, `max_length` frames of 10 ms.
    """
    from graftkit.backbones.ast import HOP, SAMPLE_RATE, HFSpectrogramEncoder, ast_fbank

    model, digest = _load_model(folder, pretrained)
    config = model.config
    fe = folder / "preprocessor_config.json"
    settings = json.loads(fe.read_text(encoding="utf-8")) if fe.is_file() else {}
    rate = int(settings.get("sampling_rate", SAMPLE_RATE))
    if rate != SAMPLE_RATE:
        raise ConfigError(f"{fe}: sampling_rate {rate}: the AST fbank is ported for {SAMPLE_RATE} Hz audio only")
    fbank = ast_fbank(settings, config_max_length=int(config.max_length))
    if fbank.max_length != int(config.max_length) or fbank.mel_filters.shape[1] != int(config.num_mel_bins):
        raise ConfigError(f"{fe}: max_length {fbank.max_length} / num_mel_bins {fbank.mel_filters.shape[1]} do not fit the model's "
                          f"config ({config.max_length} / {config.num_mel_bins}): use the preprocessor config saved with the model")  # fmt: skip
    seconds = fbank.max_length * HOP / rate
    encoder = HFSpectrogramEncoder(fbank, model)
    preprocess = AudioPreprocess(sample_rate=rate, max_seconds=seconds, normalize=False)  # the fbank normalises
    f_dim, t_dim = model.embeddings.get_shape(config)
    tokens = 2 + f_dim * t_dim  # CLS + distillation + patches, whatever the clip's length
    info_ = WeightsInfo(
        model_id=model_id, arch=arch or f"hf:{folder}", source="hf" if digest else "scratch", sha256=digest,
        extra={"folder": str(folder), "model_type": config.model_type},
    )  # fmt: skip
    backbone = AudioBackbone(encoder, int(config.hidden_size), preprocess, info_, _ast_groups, tokens / seconds)
    backbone.save_architecture = lambda out: _save_ast_architecture(model, fbank, settings, Path(out))  # type: ignore[attr-defined]
    return backbone


def _save_ast_architecture(model: nn.Module, fbank: Any, settings: dict, out: Path) -> None:
    """config.json and preprocessor_config.json (the fbank's settings, written out in full)."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(out))
    full = {
        "feature_extractor_type": "ASTFeatureExtractor", "feature_size": 1, "padding_value": 0.0, "return_attention_mask": False,
        **settings, "sampling_rate": 16000, "num_mel_bins": int(fbank.mel_filters.shape[1]), "max_length": fbank.max_length,
        "mean": fbank.mean, "std": fbank.std, "do_normalize": fbank.do_normalize,
    }  # fmt: skip
    (out / "preprocessor_config.json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")


def _save_architecture(model: nn.Module, folder: Path, out: Path) -> None:
    """config.json (+ preprocessor_config.json) without weights, so a run rebuilds offline."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(out))
    fe = folder / "preprocessor_config.json"
    if fe.is_file():
        (out / fe.name).write_text(fe.read_text(encoding="utf-8"), encoding="utf-8")
