"""Whisper tiny.en from its CTranslate2 file, read by graftkit's own reader, offline."""

from __future__ import annotations

import socket

import pytest
import torch

from graftkit.errors import WeightsMismatchError
from graftkit.sources.ct2 import read_ct2
from graftkit.sources.whisper_builtin import load_whisper_tiny_en, model_folder, transcribe


def test_ct2_reader_reads_every_variable_and_the_alias():
    spec, variables = read_ct2(model_folder() / "model.bin")
    assert spec == "WhisperSpec"
    assert len(variables) == 149  # 148 variables + the projection alias
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 384, 384)  # fused Q, K, V
    assert variables["decoder/embeddings/weight"].dtype == torch.float16


def test_truncated_ct2_files_are_refused(tmp_path):
    cut = tmp_path / "model.bin"
    cut.write_bytes((model_folder() / "model.bin").read_bytes()[:5000])
    with pytest.raises(WeightsMismatchError, match="truncated"):
        read_ct2(cut)


def test_whisper_transcribes_spoken_digits_offline(monkeypatch):
    from graftkit.demo import audio_demo_data_dir

    root = audio_demo_data_dir()  # the bundled espeak-ng digits: no apt, no network

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket, "socket", refuse)
    whisper = load_whisper_tiny_en()
    assert sum(p.numel() for p in whisper.model.parameters()) == 37_760_256  # proj_out is tied to the token embedding
    # Three fixed clips Whisper gets right: zero-shot on synthetic espeak speech is poor in general
    # (4 of 16 clips measured); the real Asterisk recordings are scored in benchmarks/audio.py.
    clips = {"seven": "en-us_m1", "four": "en-gb_m1", "nine": "en-us_f2"}
    from graftkit.data.audio import decode_audio

    got = transcribe(whisper, [decode_audio(root / w / f"{v}.ogg", 16000) for w, v in clips.items()])
    digits = {"7": "seven", "4": "four", "9": "nine"}
    said = ["".join(digits.get(ch, ch) for ch in g.lower()) for g in got]
    assert [w in g for w, g in zip(clips, said)] == [True, True, True], got
