"""Tiny generated audio for the tests: tones whose pitch is the class, a tiny random wav2vec2 and a tiny random Whisper."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

PITCHES = {"low": 300.0, "mid": 900.0, "high": 2400.0}


def tone(freq: float, seconds: float = 0.6, rate: int = 16000, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A sine at `freq` Hz (±3 % jitter) with a little noise; `[S]` or `[S, channels]` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.03 * rng.standard_normal()) * t) + 0.01 * rng.standard_normal(t.size)
    wave = wave.astype(np.float32)
    return np.stack([wave] * channels, 1) if channels > 1 else wave


def make_audio_folder(root: Path, per_class: int = 8, classes: dict[str, float] = PITCHES) -> Path:
    """`root/<class>/<i>.wav`: tones per class; every third clip at 8 kHz and every fourth stereo."""
    for c, (name, freq) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rate = 8000 if i % 3 == 2 else 16000
            sf.write(d / f"{name}_{i}.wav", tone(freq, 0.4 + 0.05 * (i % 4), rate, seed=100 * c + i, channels=2 if i % 4 == 3 else 1), rate)
    return root


def write_manifest(path: Path, rows: list[dict]) -> Path:
    """A CSV (by suffix) or JSONL manifest of `rows`."""
    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_wav2vec2_dir(root: Path) -> Path:
    """A random wav2vec2 (2 conv layers, 2 transformer layers, hidden 32) saved with save_pretrained."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=8,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = Wav2Vec2Model(config)
    model.save_pretrained(root)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(root)
    return root


LETTER_PITCHES = {"a": 400.0, "b": 1000.0, "c": 2200.0, " ": 0.0}


def spell(text: str, rate: int = 16000, letter_seconds: float = 0.12, seed: int = 0) -> np.ndarray:
    """A clip that 'says' `text`: one tone per letter (a space is a short silence)."""
    parts = [np.zeros(int(rate * 0.05), np.float32)]
    for i, ch in enumerate(text):
        f = LETTER_PITCHES[ch]
        parts.append(tone(f, letter_seconds, rate, seed=seed * 31 + i) if f else np.zeros(int(rate * letter_seconds / 2), np.float32))
    parts.append(np.zeros(int(rate * 0.05), np.float32))
    return np.concatenate(parts)


def make_ctc_manifest(root: Path, n: int = 24, fmt: str = "jsonl") -> Path:
    """`n` clips of 1-3 'spoken' letters and a manifest (`path,text`, or NeMo JSONL with `fmt="nemo"`)."""
    import random

    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(1, 3)))
        if i % 5 == 4:
            text = text + " " + rng.choice("abc")
        sf.write(root / f"u{i}.wav", spell(text, seed=i), 16000)
        rows.append({"audio_filepath": f"u{i}.wav", "text": text, "duration": 0.0} if fmt == "nemo" else {"path": f"u{i}.wav", "text": text})
    return write_manifest(root / ("manifest.csv" if fmt == "csv" else "manifest.jsonl"), rows)


def make_tiny_whisper(root: Path, max_source_positions: int = 50, init_std: float = 0.02) -> Path:
    """A random Whisper (d_model 16, 1 + 1 layers; window 2 * 50 mel frames = 1 s) with tiny.en's tokenizer."""
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from graftkit.sources.whisper_builtin import model_folder

    config = WhisperConfig(
        vocab_size=51864, num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=max_source_positions,
        max_target_positions=16, decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256, bos_token_id=50256,
        init_std=init_std,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        WhisperForConditionalGeneration(config).save_pretrained(root)
    PreTrainedTokenizerFast(tokenizer_file=str(model_folder() / "tokenizer.json")).save_pretrained(root)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root)
    return root
