"""`--task asr`: Whisper-style sequence-to-sequence fine-tuning on audio, with a tiny random
Whisper (`hf:` folder built here, the real tiny.en tokenizer); predict, reload, export refusal,
the pre-flight check's messages, and the KV-cached decoding against the uncached loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import graftkit
from graftkit.errors import ConfigError, DataError
from graftkit.tasks.asr import ASRTask, error_rates, normalise
from tests.audio_data import make_tiny_whisper, tone, write_manifest

WORDS = {"One.": 300.0, "Two.": 900.0, "Three.": 2400.0}


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> str:
    return "hf:" + str(make_tiny_whisper(tmp_path_factory.mktemp("whisper")))


def make_words(root: Path, n: int = 12, fmt: str = "jsonl") -> Path:
    """`n` clips whose pitch says one of three words, and a manifest (`path,text` or NeMo)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        text, freq = list(WORDS.items())[i % 3]
        sf.write(root / f"w{i}.wav", tone(freq, 0.5 + 0.05 * (i % 3), seed=i), 16000)
        rows.append({"audio_filepath": f"w{i}.wav", "text": text, "duration": 0.0} if fmt == "nemo" else {"path": f"w{i}.wav", "text": text})
    return write_manifest(root / ("manifest.csv" if fmt == "csv" else "manifest.jsonl"), rows)


def test_normalisation_spells_digits_and_drops_notes_and_punctuation():
    assert normalise("Press 1, then [pause] the Pound key.") == "press one then the pound key"
    assert error_rates(["Press one."], ["press 1"])["wer"] == 0.0  # the same words once normalised
    assert error_rates(["a b c d"], ["a b x d"])["wer"] == 0.25


def test_log_mel_front_end_matches_whisper_feature_extractor(tiny_whisper):
    from transformers import WhisperFeatureExtractor

    from graftkit.sources import load_backbone

    bb = load_backbone(tiny_whisper)
    wave = tone(700.0, 0.7)
    ref = WhisperFeatureExtractor(feature_size=80, chunk_length=1)([wave], sampling_rate=16000, return_tensors="pt").input_features
    ours = bb.input_features(torch.from_numpy(wave)[None])
    assert ours.shape == ref.shape == (1, 80, 100)
    assert torch.allclose(ours, ref, atol=1e-4)
    assert bb.forward_frames(torch.from_numpy(wave)[None]).shape == (1, 35, 16)  # 0.7 s at 50 frames/s, cut to the clip


def test_kv_cached_generation_matches_the_uncached_greedy_loop(tmp_path):
    from graftkit.backbones.whisper import transcribe_waveforms
    from graftkit.sources import load_backbone

    bb = load_backbone(f"hf:{make_tiny_whisper(tmp_path / 'w', init_std=1.0)}").eval()  # large weights: varied tokens
    waves = [torch.from_numpy(tone(f, 0.5, seed=i)) for i, f in enumerate((300.0, 2000.0))]
    cached = transcribe_waveforms(bb, waves, num_beams=1, max_new_tokens=6)
    # the old path: the decoder re-run on the whole prefix at every step, argmax
    feats = bb.input_features(torch.stack([torch.nn.functional.pad(w, (0, bb.mel.num_samples - len(w))) for w in waves]))
    tokens = torch.tensor([bb.prompt] * 2)
    with torch.no_grad():
        enc = bb.model.model.encoder(feats).last_hidden_state
        for _ in range(6):
            nxt = bb.model(encoder_outputs=(enc,), decoder_input_ids=tokens).logits[:, -1].argmax(-1)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
    uncached = []
    for row in tokens[:, len(bb.prompt) :].tolist():
        row = row[: row.index(bb.eos_token_id)] if bb.eos_token_id in row else row
        uncached.append(bb.tokenizer.decode([t for t in row if t < bb.eos_token_id]).strip())
    assert cached == uncached and len(set(" ".join(cached))) > 3, cached
    assert len(transcribe_waveforms(bb, waves, num_beams=3, max_new_tokens=4)) == 2  # beam search runs too


def test_asr_fine_tuning_lowers_the_loss_scores_wer_predicts_and_reloads(tmp_path, tiny_whisper, capsys):
    from graftkit.cli import main

    data = make_words(tmp_path / "words", n=12)
    out = tmp_path / "runs" / "asr"
    rc = main(["train", str(data), "--task", "asr", "--model", tiny_whisper, "--strategy", "finetune", "--out", str(out), "--epochs", "10",
               "--lr", "0.01", "--batch-size", "4", "--num-beams", "1", "--max-new-tokens", "6", "--num-workers", "0", "--offline"])  # fmt: skip
    assert rc == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"], [h["train_loss"] for h in history]
    metrics = json.loads((out / "metrics.json").read_text())
    val = metrics["val"]
    assert 0.0 <= val["wer"] and 0.0 <= val["cer"] and val["scored"] == 2
    assert {"file", "reference", "hypothesis", "wer"} <= set(val["examples"][0])  # the worst utterances, for the report
    assert set(val["zero_shot"]) >= {"wer", "cer", "n"}  # the starting weights, measured before training
    spec = json.loads((out / "graft.json").read_text())
    assert spec["task"]["name"] == "asr" and spec["task"]["normalisation"].startswith("lowercase")
    assert spec["task"]["decoding"] == "greedy" and spec["task"]["kv_cache"] is True
    assert (out / "hf" / "config.json").is_file() and (out / "hf" / "tokenizer.json").is_file()
    assert "worst" in (out / "report.html").read_text().lower() or "hypothesis" in (out / "report.html").read_text()

    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "words" / "w0.wav"), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert isinstance(printed["label"], str)

    again = graftkit.load(out).predict([str(tmp_path / "words" / "w0.wav")])[0]  # the run reloads from its folder alone
    assert again.label == printed["label"]
    assert main(["evaluate", str(out), str(data), "--out", str(tmp_path / "eval")]) == 0  # scored on a labelled set, without training data
    assert "wer" in json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]


def test_asr_takes_partial_and_lora_and_nemo_manifests(tmp_path, tiny_whisper):
    data = make_words(tmp_path / "nemo", n=9, fmt="nemo")
    for strategy in ("partial:2", "lora"):
        run = graftkit.fit(data, task="asr", model=tiny_whisper, strategy=strategy, out=tmp_path / strategy.replace(":", "-"), epochs=1,
                           lr=1e-3, batch_size=4, num_beams=1, max_new_tokens=6, offline=True)  # fmt: skip
        assert "wer" in run.metrics["val"]
        assert isinstance(graftkit.load(run.dir).predict([str(tmp_path / "nemo" / "w1.wav")])[0].label, str)
    from fastapi.testclient import TestClient

    from graftkit.deploy.serve import create_app

    with TestClient(create_app(run.dir)) as client:  # an upload is transcribed as graft predict transcribes the file
        r = client.post("/predict", files={"file": ("w1.wav", (tmp_path / "nemo" / "w1.wav").read_bytes(), "audio/wav")})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["label"] == graftkit.load(run.dir).predict([str(tmp_path / "nemo" / "w1.wav")])[0].label


def test_asr_refuses_the_linear_probe_and_export_with_the_fix(tmp_path, tiny_whisper):
    data = make_words(tmp_path / "words", n=6)
    with pytest.raises(ConfigError, match="use --strategy finetune"):
        graftkit.fit(data, task="asr", model=tiny_whisper, strategy="linear-probe", out=tmp_path / "lp", offline=True)
    run = graftkit.fit(data, task="asr", model=tiny_whisper, strategy="auto", out=tmp_path / "ft", epochs=1, batch_size=4, num_beams=1,
                       max_new_tokens=6, offline=True)  # fmt: skip
    auto = json.loads((run.dir / "graft.json").read_text())["auto"]
    assert auto["strategy"] == "finetune" and "no linear probe" in " ".join(auto["reasons"])  # auto never picks the probe for asr
    from graftkit.deploy.export import export

    with pytest.raises(ConfigError, match=r"does not export asr runs.*graft predict RUN file.wav"):
        export(run.dir, "onnx")


def test_asr_needs_a_model_with_a_decoder(tmp_path):
    data = make_words(tmp_path / "words", n=6)
    with pytest.raises(ConfigError, match="needs a Whisper model.*use --task ctc"):
        graftkit.fit(data, task="asr", model="wakehubert_tiny", out=tmp_path / "x", epochs=1, offline=True)


def test_preflight_reports_empty_long_and_overlong_transcripts_at_once(tmp_path, tiny_whisper):
    root = tmp_path / "bad"
    root.mkdir()
    rows = []
    for i in range(6):
        sf.write(root / f"c{i}.wav", tone(500.0, 0.5, seed=i), 16000)
        rows.append({"path": f"c{i}.wav", "text": "One."})
    rows[1]["text"] = "[silence]"  # nothing said once the note is removed
    rows[2]["text"] = "one two three four five six seven eight nine ten eleven twelve"  # 12 tokens + end of text
    sf.write(root / "c3.wav", tone(500.0, 1.5, seed=3), 16000)  # longer than the 1 s window
    data = write_manifest(root / "m.csv", rows)
    with pytest.raises(DataError) as e:
        graftkit.fit(data, task="asr", model=tiny_whisper, out=tmp_path / "x", epochs=1, max_new_tokens=6, offline=True)
    text = str(e.value)
    assert "c1.wav: the transcript is empty" in text
    assert "c2.wav: the transcript is 12 tokens and decoding stops after --max-new-tokens 6: raise --max-new-tokens to at least 13" in text
    assert "c3.wav: 1.50 s is longer than" in text
    with pytest.raises(DataError, match=r"--max-seconds 2 is longer than Whisper's 1 s window[\s\S]*c3.wav: 1.50 s is longer than Whisper's 1 s window"):
        graftkit.fit(data, task="asr", model=tiny_whisper, out=tmp_path / "y", epochs=1, max_seconds=2.0, max_new_tokens=16, offline=True)
    with pytest.raises(DataError, match=r"c2.wav: the transcript is 15 tokens, more than the decoder's 13: split the clip"):
        rows[2]["text"] = " ".join(["one"] * 15)
        write_manifest(root / "m.csv", rows)
        graftkit.fit(data, task="asr", model=tiny_whisper, out=tmp_path / "z", epochs=1, max_new_tokens=64, offline=True)


def test_task_round_trips_its_graft_json_entry():
    task = ASRTask(num_beams=2, max_new_tokens=20, zero_shot={"wer": 0.5})
    again = ASRTask.from_dict(json.loads(json.dumps(task.to_dict())))
    assert (again.num_beams, again.max_new_tokens, again.zero_shot) == (2, 20, {"wer": 0.5})
    assert np.isnan(error_rates([""], ["x"])["wer"])  # an empty reference is not scored


def test_whisper_tiny_en_is_a_pinned_offline_audio_backbone_that_rebuilds_from_its_run_folder(tmp_path):
    from graftkit.sources import list_models, load_backbone
    from graftkit.sources.loading import build_audio_architecture
    from graftkit.sources.whisper_builtin import SHA256

    assert "whisper_tiny_en" in [m.id for m in list_models()]
    bb = load_backbone("whisper_tiny_en").eval()
    assert bb.modality == "audio" and bb.weights.sha256 == SHA256 and bb.prompt == [50257, 50362]
    assert bb.preprocess.sample_rate == 16000 and bb.window_seconds == 30.0
    groups = bb.layer_groups()
    params = [p for g in groups for m in g for p in m.parameters()]
    assert len({id(p) for p in params}) == len(params) == len(list(bb.parameters()))  # each parameter in one group
    x = torch.from_numpy(np.stack([tone(440, 1.0), tone(2000, 1.0, seed=1)]))
    with torch.no_grad():
        frames = bb.forward_frames(x)
    assert frames.shape == (2, bb.frames_for(1.0), 384) == (2, 50, 384)
    bb.save_architecture(tmp_path / "hf")  # what a run keeps: config, tokenizer, feature extractor; no weights
    assert not list((tmp_path / "hf").glob("*.safetensors"))
    rebuilt = build_audio_architecture(bb.weights.arch, tmp_path / "hf").eval()
    rebuilt.load_state_dict(bb.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.forward_features(x), frames.mean(1))
    assert rebuilt.prompt == bb.prompt


def test_teacher_forced_logits_line_up_with_greedy_decoding(tmp_path):
    """Labels are the tokens after `<|startoftranscript|>`; logits at position j predict labels[j]
    from the tokens before it: fed its own greedy output, the model's argmax is that output."""
    from graftkit.sources import load_backbone
    from graftkit.tasks.asr import SpeechSeq2SeqModel

    bb = load_backbone(f"hf:{make_tiny_whisper(tmp_path / 'w', init_std=1.0)}").eval()  # large weights: the tokens vary
    model = SpeechSeq2SeqModel(bb)
    wave = torch.from_numpy(tone(900.0, 0.6))[None]
    tokens = torch.tensor([bb.prompt])
    with torch.no_grad():
        enc = bb.model.model.encoder(bb.input_features(wave)).last_hidden_state
        for _ in range(5):
            nxt = bb.model(encoder_outputs=(enc,), decoder_input_ids=tokens).logits[:, -1].argmax(-1)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
        labels = tokens[:, 1:]
        assert len(set(labels[0, len(bb.prompt) - 1 :].tolist())) > 2, labels  # not one token repeated
        logits = model({"waveform": wave, "labels": labels})
    start = len(bb.prompt) - 1
    assert logits.shape[:2] == labels.shape
    assert torch.equal(logits.argmax(-1)[:, start:], labels[:, start:])
    padded = torch.cat([labels, torch.full((1, 2), -100)], 1)  # -100 padding is read as end of text, never as an id
    with torch.no_grad():
        assert torch.allclose(model({"waveform": wave, "labels": padded})[:, : labels.shape[1]], logits, atol=1e-5)
