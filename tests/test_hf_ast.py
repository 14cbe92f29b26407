"""`hf:` Audio Spectrogram Transformer (AST): the torch fbank against transformers' extractor, the
backbone contract, training / saving / offline reloading, and the spectrogram models still refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import graftkit
from graftkit.backbones.ast import ASTFbank, HFSpectrogramEncoder, ast_fbank
from graftkit.backbones.audio import AudioBackbone
from graftkit.errors import ConfigError
from graftkit.sources import load_backbone, resolve
from tests.audio_data import PITCHES, make_audio_folder, tone

MEL_BINS, MAX_LENGTH = 16, 100  # 1 s of 10 ms fbank frames


def make_tiny_ast(root: Path) -> Path:
    """A random AST (hidden 32, 2 layers, 16 mel bins, 100 frames: 1 × 9 patches) and its extractor config."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    config = ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_mel_bins=MEL_BINS,
        max_length=MAX_LENGTH, patch_size=16, frequency_stride=10, time_stride=10,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ASTModel(config).save_pretrained(root)
    ASTFeatureExtractor(num_mel_bins=MEL_BINS, max_length=MAX_LENGTH).save_pretrained(root)
    return root


@pytest.fixture
def tiny_ast(tmp_path) -> Path:
    return make_tiny_ast(tmp_path / "tiny-ast")


@pytest.fixture
def tones(tmp_path) -> Path:
    return make_audio_folder(tmp_path / "tones", per_class=8)


def _waves(kind: str, samples: int) -> np.ndarray:
    if kind == "random":
        return np.random.default_rng(3).uniform(-1, 1, (2, samples)).astype(np.float32)
    t = np.arange(samples) / 16000
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 3100 * t) + 0.1]).astype(np.float32)  # the second with a DC offset


# --- the fbank ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "sine"])
@pytest.mark.parametrize("samples", [8000, 24000])  # 48 frames (padded to 100) and 148 (cut to 100)
def test_fbank_matches_the_feature_extractor(kind, samples):
    from transformers import ASTFeatureExtractor

    fe = ASTFeatureExtractor(num_mel_bins=MEL_BINS, max_length=MAX_LENGTH)
    fbank = ast_fbank(fe.to_dict())
    waves = _waves(kind, samples)
    ref = fe(list(waves), sampling_rate=16000, return_tensors="np")["input_values"]
    with torch.no_grad():
        ours = fbank(torch.from_numpy(waves)).numpy()
    assert ours.shape == ref.shape == (2, MAX_LENGTH, MEL_BINS)
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)
    assert not list(fbank.state_dict()), "fixed signal processing: buffers, not weights to save"


def test_fbank_without_normalisation_and_with_the_default_128_bins():
    from transformers import ASTFeatureExtractor

    fe = ASTFeatureExtractor(do_normalize=False, max_length=300)
    fbank = ast_fbank(fe.to_dict())
    assert isinstance(fbank, ASTFbank) and fbank.mel_filters.shape == (257, 128)
    waves = _waves("sine", 16000)
    ref = fe(list(waves), sampling_rate=16000, return_tensors="np")["input_values"]
    with torch.no_grad():
        np.testing.assert_allclose(fbank(torch.from_numpy(waves)).numpy(), ref, atol=1e-3, rtol=0)


# --- the backbone ------------------------------------------------------------------------------


def test_hf_ast_keeps_the_audio_backbone_contract(tiny_ast):
    model_id = f"hf:{tiny_ast}"
    assert resolve(model_id).modality == "audio"
    bb = load_backbone(model_id)
    assert isinstance(bb, AudioBackbone) and isinstance(bb.encoder, HFSpectrogramEncoder)
    assert bb.num_features == 32 and bb.weights.sha256 and bb.weights.extra["model_type"] == "audio-spectrogram-transformer"
    assert bb.preprocess.sample_rate == 16000 and bb.preprocess.max_seconds == 1.0 and not bb.preprocess.normalize
    tokens = 2 + 1 * 9  # CLS + distillation + (16 - 16) // 10 + 1 = 1 frequency × (100 - 16) // 10 + 1 = 9 time patches
    assert bb.frame_rate == tokens / 1.0
    groups = bb.layer_groups()
    assert len(groups) == 2 + 2 and all(groups)  # embeddings, 2 layers, final layernorm
    in_groups = sorted(id(p) for g in groups for m in g for p in m.parameters())
    assert in_groups == sorted(id(p) for p in bb.parameters()), "every parameter in exactly one group"
    x = torch.from_numpy(np.stack([tone(300, 0.6), tone(2400, 0.6, seed=1)]))
    bb.eval()
    with torch.no_grad():
        frames, pooled, layers = bb.forward_frames(x), bb.forward_features(x), bb.encoder.forward_layers(x)
    assert frames.shape == (2, tokens, 32) and pooled.shape == (2, 32) and bb.frames_for(0.6) == tokens
    assert len(layers) == 2 + 1 and all(h.shape == (2, tokens, 32) for h in layers)
    torch.testing.assert_close(layers[-1], frames)
    assert not torch.allclose(layers[0], layers[1])
    # the pretrained weights were loaded: a scratch build of the same folder differs
    scratch = load_backbone(f"scratch:{model_id}", seed=1)
    assert scratch.weights.sha256 is None and scratch.weights.source == "scratch"
    with torch.no_grad():
        assert not torch.allclose(scratch.eval().forward_features(x), pooled)
    bb.train()
    bb.forward_features(x).sum().backward()
    assert all(p.grad is not None for p in bb.parameters())


def test_a_preprocessor_config_that_does_not_fit_the_model_is_refused(tiny_ast):
    fe = tiny_ast / "preprocessor_config.json"
    fe.write_text(json.dumps({**json.loads(fe.read_text()), "max_length": 50}))
    with pytest.raises(ConfigError, match="max_length 50 / num_mel_bins 16 do not fit the model's config \\(100 / 16\\)"):
        load_backbone(f"hf:{tiny_ast}")


# --- training, saving, reloading ---------------------------------------------------------------


class _Keep:
    """Keeps the model the loop trains (the run's weights after a one-epoch run)."""

    model: torch.nn.Module | None = None

    def on_epoch_end(self, state):
        self.model = state.model


def test_hf_ast_trains_saves_and_reloads_offline_from_the_run(tones, tiny_ast, tmp_path):
    keep = _Keep()
    run = graftkit.fit(tones, model=f"hf:{tiny_ast}", strategy="finetune", out="runs/ast", epochs=1, batch_size=8, offline=True, callbacks=[keep])
    saved = run.dir / "hf"
    assert json.loads((saved / "config.json").read_text())["model_type"] == "audio-spectrogram-transformer"
    assert json.loads((saved / "preprocessor_config.json").read_text())["max_length"] == MAX_LENGTH
    shutil.move(tiny_ast, tmp_path / "gone")  # the run rebuilds from RUN/hf/, not from the source folder
    predictor = graftkit.load(run.dir, calibrated=False)
    x = torch.from_numpy(np.stack([tone(300, 0.5), tone(900, 0.5, seed=2)]))
    with torch.no_grad():
        before, after = keep.model.eval()(x), predictor.model.eval()(x)
    torch.testing.assert_close(after, before)
    assert predictor.predict([str(tones / "low" / "low_0.wav")])[0].label in PITCHES


def test_scratch_hf_ast_trains(tones, tiny_ast):
    run = graftkit.fit(tones, model=f"scratch:hf:{tiny_ast}", strategy="finetune", out="runs/ast-scratch", epochs=1, batch_size=8, offline=True)
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["modality"] == "audio"
    assert graftkit.load(run.dir).predict([str(tones / "high" / "high_0.wav")])[0].label in PITCHES


# --- refused -----------------------------------------------------------------------------------


def test_other_spectrogram_models_are_still_refused_with_a_message(tmp_path):
    """speech_to_text takes a spectrogram graftkit does not port (AST and Whisper load)."""
    from transformers import Speech2TextConfig

    Speech2TextConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2).save_pretrained(tmp_path / "s2t")
    model_id = f"hf:{tmp_path / 's2t'}"
    assert resolve(model_id).modality == "audio"
    with pytest.raises(ConfigError, match="is a speech_to_text model \\(spectrogram input\\).*and audio-spectrogram-transformer load"):
        load_backbone(f"scratch:{model_id}")
