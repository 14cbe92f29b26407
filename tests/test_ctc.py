"""`--task ctc`: a CTC head on an audio encoder's frames, greedy decoding, WER/CER, the pre-flight check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import graftkit
from graftkit.errors import ConfigError, DataError
from graftkit.tasks.ctc import CTCTask, normalise
from tests.audio_data import make_ctc_manifest, spell, tone, write_manifest


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    task = CTCTask(["a", "b"])
    assert task.greedy(torch.tensor([[1, 1, 0, 1, 2, 2, 0]])) == ["aab"]
    assert task.texts(task.encode(["ab", "b"])) == ["ab", "b"]
    assert task.encode(["ab", "b"]).tolist() == [[1, 2], [2, -1]]  # -1 pads; 0 is the blank, never a target


def test_ctc_learns_to_spell_and_predicts_exports_and_reloads(tmp_path):
    data = make_ctc_manifest(tmp_path / "speech", n=30)
    run = graftkit.fit(data, task="ctc", model="wakehubert_tiny", out="runs/ctc", epochs=8, lr=3e-3, batch_size=8, offline=True)
    val = run.metrics["val"]
    assert val["cer"] <= 0.5, val  # an untrained head writes nothing or noise: CER ~1
    assert {"reference", "hypothesis", "cer"} <= set(val["worst"][0])
    meta = json.loads((run.dir / "graft.json").read_text())
    assert meta["task"]["vocabulary"] == [" ", "a", "b", "c"] and meta["task"]["normalisation"].startswith("lowercase")
    pred = graftkit.load(run.dir, precision="fp32").predict([str(tmp_path / "speech" / "u0.wav")])[0]
    assert set(pred.label) <= set(" abc")
    from graftkit.deploy.export import export

    result = export(run.dir, "onnx")
    assert result.parity["onnx"]["passed"]
    assert graftkit.load(run.dir, backend="onnx").predict([str(tmp_path / "speech" / "u0.wav")])[0].label == pred.label


def test_preflight_reports_transcripts_longer_than_the_encoder_frames(tmp_path):
    root = tmp_path / "long"
    root.mkdir()
    rows = []
    for i in range(6):
        sf.write(root / f"s{i}.wav", tone(500, 0.4, seed=i), 16000)
        rows.append({"path": f"s{i}.wav", "text": "abcabcabcabc"})
    data = write_manifest(root / "m.csv", rows)
    with pytest.raises(DataError, match=r"needs 12 output frames and speech_embedding gives 5 for this 0.40 s clip \(12.5 frames/s\)"):
        graftkit.fit(data, task="ctc", model="speech_embedding", out="runs/x", epochs=1)


def test_preflight_reports_val_characters_the_vocabulary_cannot_write(tmp_path):
    train = make_ctc_manifest(tmp_path / "train", n=8)
    val_root = tmp_path / "val"
    val_root.mkdir()
    sf.write(val_root / "v.wav", spell("ab"), 16000)
    val = write_manifest(val_root / "m.jsonl", [{"path": "v.wav", "text": "Zap!"}])
    with pytest.raises(DataError, match=r"val v.wav: characters '!pz' are not in the vocabulary"):
        graftkit.fit(train, val=val, task="ctc", model="wakehubert_tiny", out="runs/x", epochs=1)


def test_ctc_refuses_the_linear_probe_with_a_reason(tmp_path):
    data = make_ctc_manifest(tmp_path / "s", n=8)
    with pytest.raises(ConfigError, match="--task ctc reads every frame of the encoder"):
        graftkit.fit(data, task="ctc", model="wakehubert_tiny", strategy="linear-probe", out="runs/x", epochs=1)


def test_normalisation_is_recorded_and_applied():
    assert normalise("  Hello   World ") == "hello world"
    task = CTCTask.from_data([], ["Hi there", "hi"], settings=None)  # type: ignore[arg-type]
    assert task.vocabulary == [" ", "e", "h", "i", "r", "t"]
    assert np.array_equal(task.encode(["HI"]).numpy(), task.encode(["hi"]).numpy())
