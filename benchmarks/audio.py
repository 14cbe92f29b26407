"""Audio benchmarks on real recordings (needs `apt-get install asterisk-core-sounds-en-wav
asterisk-core-sounds-en` for the Asterisk prompts and their transcripts).

1. keyword transfer: a logistic-regression probe on each encoder's pooled features, trained on the
   200 bundled espeak-ng digits (20 synthetic voices), tested on the 10 real Asterisk digit
   recordings (one human speaker, 8 kHz telephone audio): pretrained vs the same encoder with
   random weights vs an MFCC + logistic-regression baseline.
2. Whisper tiny.en zero-shot: greedy transcripts of every third Asterisk English prompt (the
   held-out third), WER / CER against the shipped transcripts after one normalisation
   (lowercase, punctuation removed, digits spelled out).

    python benchmarks/audio.py [keywords|whisper|all]
"""

from __future__ import annotations

import gzip
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SECONDS = 1.5


def _waves(paths: list[Path]) -> np.ndarray:
    from graftkit.data.audio import decode_audio, fit_length

    return np.stack([fit_length(decode_audio(p, 16000), int(16000 * SECONDS)) for p in paths])


def _pooled(model_id: str, waves: np.ndarray) -> np.ndarray:
    from graftkit.sources import load_backbone

    bb = load_backbone(model_id, seed=0).eval()
    with torch.no_grad():
        return torch.cat([bb.forward_features(torch.from_numpy(waves[i : i + 32])) for i in range(0, len(waves), 32)]).numpy()


def _mfcc(waves: np.ndarray) -> np.ndarray:
    from scipy.fft import dct
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    fb = mel_filter_bank(num_frequency_bins=201, num_mel_filters=40, min_frequency=20, max_frequency=8000, sampling_rate=16000)
    out = []
    for w in waves:
        mel = spectrogram(w, window_function(400, "hann"), frame_length=400, hop_length=160, power=2.0, mel_filters=fb, log_mel="log")  # (40, T)
        c = dct(mel, type=2, axis=0, norm="ortho")[:13]  # (13, T)
        out.append(np.concatenate([c.mean(1), c.std(1)]))
    return np.stack(out)


def _probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean())


def keywords() -> None:
    from graftkit.demo import audio_demo_data_dir

    root = audio_demo_data_dir()
    train = [(p, DIGITS.index(p.parent.name)) for p in sorted(root.glob("*/*.ogg"))]
    test = [(ASTERISK / "digits" / f"{i}.wav", i) for i in range(10)]
    tr_w, te_w = _waves([p for p, _ in train]), _waves([p for p, _ in test])
    tr_y, te_y = np.array([y for _, y in train]), np.array([y for _, y in test])
    print(f"train: {len(train)} espeak-ng clips (20 voices); test: {len(test)} real Asterisk digits")
    t0 = time.perf_counter()
    print(f"MFCC + logreg: {_probe_accuracy(_mfcc(tr_w), tr_y, _mfcc(te_w), te_y):.2f} ({time.perf_counter() - t0:.1f} s)")
    for model in ("speech_embedding", "wakehubert_tiny", "resemblyzer"):
        for model_id in (model, f"scratch:{model}"):
            t0 = time.perf_counter()
            acc = _probe_accuracy(_pooled(model_id, tr_w), tr_y, _pooled(model_id, te_w), te_y)
            print(f"{model_id} probe: {acc:.2f} ({time.perf_counter() - t0:.1f} s for {len(train) + len(test)} clips)")


_NUMBERS = {str(i): w for i, w in enumerate(DIGITS)}


def normalise(text: str) -> str:
    text = re.sub(r"\[[^\]]*\]", " ", text.lower())
    text = re.sub(r"\d", lambda m: f" {_NUMBERS[m.group()]} ", text)
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]", " ", text)).strip()


def whisper(limit: int = 36) -> None:
    import jiwer

    from graftkit.sources.whisper_builtin import load_whisper_tiny_en, transcribe

    rows = []
    for line in gzip.decompress(TRANSCRIPTS.read_bytes()).decode("utf-8", "replace").splitlines():
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";") and (ASTERISK / f"{name.strip()}.wav").is_file() and normalise(text):
            rows.append((ASTERISK / f"{name.strip()}.wav", text.strip()))
    held = rows[::3][:limit]
    model = load_whisper_tiny_en()
    t0 = time.perf_counter()
    from graftkit.data.audio import decode_audio

    hyps = transcribe(model, [decode_audio(p, 16000) for p, _ in held])
    seconds = time.perf_counter() - t0
    refs = [normalise(t) for _, t in held]
    hyps_n = [normalise(h) for h in hyps]
    print(f"Whisper tiny.en zero-shot, greedy, {len(held)} held-out Asterisk English prompts (every third of {len(rows)}):")
    print(f"  WER {jiwer.wer(refs, hyps_n):.3f}  CER {jiwer.cer(refs, hyps_n):.3f}  ({seconds:.1f} s, {seconds / len(held):.2f} s per prompt)")
    worst = sorted(zip(refs, hyps_n), key=lambda rh: -jiwer.wer(rh[0], rh[1]))[:3]
    for r, h in worst:
        print(f"  ref: {r!r}\n  hyp: {h!r}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("keywords", "all"):
        keywords()
    if what in ("whisper", "all"):
        whisper()
