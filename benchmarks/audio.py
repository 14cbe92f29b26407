"""Audio benchmarks on real recordings (needs `apt-get install asterisk-core-sounds-en-wav
asterisk-core-sounds-en` for the Asterisk prompts and their transcripts).

1. keyword transfer: a logistic-regression probe on each encoder's pooled features, trained on the
   200 bundled espeak-ng digits (20 synthetic voices), tested on the 10 real Asterisk digit
   recordings (one human speaker, 8 kHz telephone audio): pretrained vs the same encoder with
   random weights vs an MFCC + logistic-regression baseline.
2. Whisper tiny.en zero-shot: greedy transcripts of every third Asterisk English prompt (the
   held-out third), WER / CER against the shipped transcripts after one normalisation
   (lowercase, punctuation removed, digits spelled out).

3. new language with CTC (needs `asterisk-core-sounds-fr-wav asterisk-core-sounds-fr`): character
   CTC on the real Asterisk French prompts (one speaker, 8 kHz), pretrained `wakehubert_tiny` vs
   the same encoder from scratch, same data, epochs, learning rate and seed; CER / WER on every
   fifth prompt (held out); the pre-flight check is run for `speech_embedding` too.
4. speed: probe features/s per encoder (and Whisper tiny.en's encoder), fine-tuning steps/s,
   single-clip `predict` latency; 3 rounds, the order of the encoders alternating, median and range.

5. keyword transfer on 36 real words (digits and letters), pooling and loudness chosen on
   held-out synthetic voices (`keywords-real`).
6. `--augment none|light|strong` when fine-tuning on synthetic voices, tested on the real words
   (`augment [SEED]`).

    (The revisited keyword transfer, 57 words per language, English and French: benchmarks/keywords.py.)

    OMP_NUM_THREADS=1 python benchmarks/audio.py [keywords|whisper|ctc-fr|speed|keywords-real|augment|all]
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




from graftkit.tasks.asr import normalise  # noqa: E402  (the package's scoring normalisation, recorded in asr runs)


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


LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
WORDS = DIGITS + LETTERS  # 36 classes: spoken digits and letter names


def speak(path: Path, voice: str, pitch: int, speed: int, text: str) -> Path:
    """`text` said by espeak-ng `voice` into `path` (16 kHz, silence trimmed to 50 ms), once: cached."""
    import subprocess

    import soundfile as sf
    import soxr

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = path.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(raw), text], check=True)
        wave, rate = sf.read(raw, dtype="float32")
        raw.unlink()
        wave = soxr.resample(wave, rate, 16000)
        loud = np.flatnonzero(np.abs(wave) > 0.02)
        sf.write(path, wave[max(0, loud[0] - 800) : loud[-1] + 800] if loud.size else wave, 16000)
    return path


def _espeak_words(root: Path) -> list[tuple[Path, int, str]]:
    """The 36 words said by the demo's 20 espeak-ng voices (as scripts/make_audio_demo_data.py),
    cached under `root`: (wav, class, voice)."""
    import itertools

    accents = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"]
    out = []
    for i, (accent, variant) in enumerate(itertools.product(accents, ["m1", "m3", "f2", "f4"])):
        pitch, speed, voice = 30 + (i * 7) % 45, 140 + (i * 11) % 60, f"{accent}_{variant}"
        for k, word in enumerate(WORDS):
            path = root / voice / f"{k:02d}.wav"
            speak(path, f"{accent}+{variant}", pitch, speed, word)
            out.append((path, k, voice))
    return out


def clips(paths: list[Path], loudness: bool, telephone: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`[N, 1.5 s]` waveforms (cut / zero-padded at the end) and each clip's length in seconds;
    `loudness`: each clip scaled to an RMS of -20 dBFS over its own samples (before padding);
    `telephone`: resampled to 8 kHz and back (the band of the real recordings, 0-4 kHz)."""
    import soxr

    from graftkit.data.audio import decode_audio, fit_length

    n = int(16000 * SECONDS)
    waves, seconds = [], []
    for p in paths:
        w = decode_audio(p, 16000)
        if telephone:
            w = soxr.resample(soxr.resample(w, 16000, 8000, quality="HQ"), 8000, 16000, quality="HQ").astype(np.float32)
        if loudness:
            w = w * (0.1 / max(float(np.sqrt(np.mean(w**2))), 1e-6))
        waves.append(fit_length(w, n))
        seconds.append(min(len(w), n) / 16000)
    return np.stack(waves).astype(np.float32), np.array(seconds)


def _frames(model_id: str, waves: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Per-clip frames `[T, D]` of the padded clips, and the encoder's frame rate."""
    from graftkit.sources import load_backbone

    bb = load_backbone(model_id, seed=0).eval()
    with torch.no_grad():
        frames = torch.cat([bb.forward_frames(torch.from_numpy(waves[i : i + 32])) for i in range(0, len(waves), 32)]).numpy()
    return list(frames), bb.frame_rate


def _pool(frames: list[np.ndarray], seconds: np.ndarray, rate: float, valid_only: bool) -> np.ndarray:
    """Mean over all frames, or over the frames that cover the clip's own samples (not the padding;
    the built-in encoders are causal, so those frames do not see the padding)."""
    if not valid_only:
        return np.stack([f.mean(0) for f in frames])
    return np.stack([f[: max(1, min(len(f), int(np.ceil(s * rate))))].mean(0) for f, s in zip(frames, seconds)])


def _mfcc_pooled(waves: np.ndarray, seconds: np.ndarray, valid_only: bool) -> np.ndarray:
    if not valid_only:
        return _mfcc(waves)
    return np.stack([_mfcc(w[None, : max(400, int(s * 16000))])[0] for w, s in zip(waves, seconds)])


def keywords_real(dev_voices: int = 5, telephone: bool = False) -> None:
    """Keyword transfer on 36 real Asterisk words (digits 0-9, letters a-z) with settings chosen on
    held-out synthetic voices: pooling over every frame or only the clip's own frames; loudness
    normalisation or not. The choice is made on a dev split (the last `dev_voices` voices) and
    the probe is then refitted on all 20 voices and scored once on the real recordings.
    `telephone`: the synthetic clips (train and dev) are band-limited to 4 kHz first, as the real
    8 kHz recordings are (a property of the target known in advance, not tuned on it)."""
    import tempfile

    syn = _espeak_words(Path(tempfile.gettempdir()) / "graftkit-espeak-words")
    voices = sorted({v for *_, v in syn})
    dev = set(voices[-dev_voices:])
    real = [(ASTERISK / ("digits" if k < 10 else "letters") / f"{k if k < 10 else WORDS[k]}.wav", k) for k in range(len(WORDS))]
    y = np.array([k for _, k, _ in syn])
    is_dev = np.array([v in dev for *_, v in syn])
    real_y = np.array([k for _, k in real])
    print(f"train: {len(syn)} espeak-ng clips ({len(voices)} voices, 36 words{', band-limited to 4 kHz' if telephone else ''}); "
          f"dev: {dev_voices} held-out voices; test: {len(real)} real Asterisk clips")  # fmt: skip
    data = {}
    for loud in (False, True):
        data[loud] = (clips([p for p, _, _ in syn], loud, telephone), clips([p for p, _ in real], loud))
    results = []
    for model_id in ("mfcc", "speech_embedding", "scratch:speech_embedding", "wakehubert_tiny", "scratch:wakehubert_tiny"):
        t0 = time.perf_counter()
        scores = {}
        for loud in (False, True):
            (sw, ss), (rw, rs) = data[loud]
            if model_id != "mfcc":
                sf_, rate = _frames(model_id, sw)
                rf_, _ = _frames(model_id, rw)
            for valid in (False, True):
                if model_id == "mfcc":
                    sx, rx = _mfcc_pooled(sw, ss, valid), _mfcc_pooled(rw, rs, valid)
                else:
                    sx, rx = _pool(sf_, ss, rate, valid), _pool(rf_, rs, rate, valid)
                dev_acc = _probe_accuracy(sx[~is_dev], y[~is_dev], sx[is_dev], y[is_dev])
                real_acc = _probe_accuracy(sx, y, rx, real_y)
                scores[(loud, valid)] = (dev_acc, real_acc)
        best = max(scores, key=lambda k: (scores[k][0], k == (False, False)))  # ties: the plain setting
        plain = scores[(False, False)]
        chosen = scores[best]
        what = f"loudness {'normalised' if best[0] else 'as recorded'}, pooling over {'own frames' if best[1] else 'all frames'}"
        results.append((model_id, plain, chosen, what))
        print(f"{model_id}: plain (all frames, as recorded) dev {plain[0]:.3f} real {plain[1]:.3f}; chosen on dev: {what}: dev {chosen[0]:.3f} "
              f"real {chosen[1]:.3f} ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
        print("    all settings (dev, real): " + "; ".join(f"loud={k[0]} own={k[1]}: {v[0]:.3f}, {v[1]:.3f}" for k, v in scores.items()))


def augment_presets(epochs: int = 8, model: str = "wakehubert_tiny", seed: int = 0) -> None:
    """Fine-tuning with `--augment none|light|strong`: train on 15 espeak-ng voices (36 words),
    validate on the 5 other voices, test on the 36 real Asterisk words. Same seed, epochs and
    learning rate for every preset; the order of the presets rotates with the seed."""
    import csv
    import tempfile

    import graftkit

    syn = _espeak_words(Path(tempfile.gettempdir()) / "graftkit-espeak-words")
    voices = sorted({v for *_, v in syn})
    dev = set(voices[-5:])
    work = Path(tempfile.mkdtemp(prefix="augment-"))
    manifest = work / "words.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for p, k, v in syn:
            w.writerow([str(p), WORDS[k], "val" if v in dev else "train"])
        for k, word in enumerate(WORDS):
            w.writerow([str(ASTERISK / ("digits" if k < 10 else "letters") / f"{k if k < 10 else word}.wav"), word, "test"])
    presets = ["none", "light", "strong"]
    presets = presets[seed % 3 :] + presets[: seed % 3]
    print(f"{model} finetune, {epochs} epochs, seed {seed}: train 540 espeak clips (15 voices), val 180 (5 other voices), test 36 real Asterisk words")
    for preset in presets:
        t0 = time.perf_counter()
        run = graftkit.fit(manifest, model=model, strategy="finetune", augment=preset, epochs=epochs, batch_size=32, seed=seed,
                           max_seconds=SECONDS, out=work / preset, offline=True)  # fmt: skip
        m = run.metrics
        print(f"  --augment {preset}: val accuracy {m['val']['accuracy']:.3f}, real test accuracy {m['test']['accuracy']:.3f} "
              f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip


FRENCH = Path("/usr/share/asterisk/sounds/fr_CA_f_June")
FRENCH_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz")


def french_prompts(max_seconds: float = 3.0) -> list[tuple[Path, str, float]]:
    """(wav, normalised transcript, seconds) of every French prompt with a transcript, no digits
    (spelling numbers out needs French number grammar), at most `max_seconds` long. Normalisation:
    lowercase, `[notes]` / `(notes)` and punctuation removed, hyphens to spaces; accents kept."""
    import soundfile as sf

    rows = []
    for line in gzip.decompress(FRENCH_TRANSCRIPTS.read_bytes()).decode("utf-8", "replace").splitlines():
        name, sep, text = line.partition(":")
        path = FRENCH / f"{name.strip()}.wav"
        if not sep or line.startswith(";") or not path.is_file():
            continue
        text = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", text.lower()).replace("\u2019", "'")
        if re.search(r"\d", text):
            continue
        text = re.sub(r"\s+", " ", re.sub(r"[^a-zàâäçéèêëîïôöùûüÿœæ' ]", " ", text.replace("-", " "))).strip()
        seconds = sf.info(path).duration
        if text and seconds <= max_seconds:
            rows.append((path, text, seconds))
    return rows


def _french_manifest(root: Path) -> tuple[Path, dict[str, int]]:
    """`manifest.csv` with a `split` column: every fifth prompt is test, every fifth of the rest
    val; val/test prompts with a character no training prompt has are dropped (the vocabulary
    is built from train)."""
    import csv

    rows = french_prompts()
    test = rows[::5]
    rest = [r for i, r in enumerate(rows) if i % 5]
    val, train = rest[::5], [r for i, r in enumerate(rest) if i % 5]
    chars = {c for _, t, _ in train for c in t}
    keep = lambda rs: [r for r in rs if set(r[1]) <= chars]  # noqa: E731
    splits = {"train": train, "val": keep(val), "test": keep(test)}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "split"])
        for split, rs in splits.items():
            for p, t, _ in rs:
                w.writerow([str(p), t, split])
    return path, {k: len(v) for k, v in splits.items()}


def ctc_french(epochs: int = 40, lr: float = 3e-3, seeds: tuple[int, ...] = (0,)) -> None:
    import tempfile

    import graftkit
    from graftkit.errors import DataError

    work = Path(tempfile.mkdtemp(prefix="ctc-fr-"))
    manifest, sizes = _french_manifest(work)
    print(f"French prompts <= 3 s without digits: {sizes} (one speaker, 8 kHz → 16 kHz)")
    try:
        graftkit.fit(manifest, task="ctc", model="speech_embedding", out=work / "se", epochs=1, offline=True)
        print("speech_embedding: pre-flight passed")
    except DataError as e:
        lines = [ln for ln in str(e).splitlines() if "output frames" in ln]
        more = re.search(r"and (\d+) more", str(e))
        count = len(lines) + (int(more.group(1)) if more else 0)
        print(f"speech_embedding: pre-flight refuses {count} problems, e.g. {lines[0].strip(' -') if lines else str(e)[:200]}")
    for seed in seeds:
        order = ("wakehubert_tiny", "scratch:wakehubert_tiny") if seed % 2 == 0 else ("scratch:wakehubert_tiny", "wakehubert_tiny")
        for model in order:
            t0 = time.perf_counter()
            run = graftkit.fit(manifest, task="ctc", model=model, strategy="finetune", out=work / f"{model.replace(':', '-')}-{seed}",
                               epochs=epochs, lr=lr, batch_size=16, seed=seed, offline=True)  # fmt: skip
            test = run.metrics["test"]
            print(f"{model} seed {seed}: test CER {test['cer']:.3f} WER {test['wer']:.3f}, val CER {run.metrics['val']['cer']:.3f} "
                  f"({time.perf_counter() - t0:.0f} s, {epochs} epochs)")  # fmt: skip
            for w in test["worst"][:2]:
                print(f"    ref {w['reference']!r}\n    hyp {w['hypothesis']!r}")


def _median_range(values: list[float]) -> str:
    v = sorted(values)
    return f"{float(np.median(v)):.1f} ({v[0]:.1f}–{v[-1]:.1f})"


def speed(rounds: int = 3) -> None:
    """Features/s, fine-tuning steps/s and single-clip predict latency (threads: OMP_NUM_THREADS)."""
    import tempfile

    import graftkit
    from graftkit.demo import audio_demo_data_dir
    from graftkit.sources import load_backbone
    from graftkit.sources.whisper_builtin import load_whisper_tiny_en

    files = sorted(audio_demo_data_dir().glob("*/*.ogg"))
    waves = torch.from_numpy(_waves(files[:32]))  # (32, 1.5 s)
    encoders = ["speech_embedding", "wakehubert_tiny", "resemblyzer"]
    models = {name: load_backbone(name).eval() for name in encoders}
    whisper = load_whisper_tiny_en()
    feats: dict[str, list[float]] = {n: [] for n in [*encoders, "whisper_tiny_en"]}
    steps: dict[str, list[float]] = {n: [] for n in encoders}
    for r in range(rounds):
        for name in (encoders if r % 2 == 0 else encoders[::-1]):
            bb = models[name]
            with torch.inference_mode():
                t0 = time.perf_counter()
                for i in range(0, len(waves), 16):
                    bb.forward_features(waves[i : i + 16])
                feats[name].append(len(waves) / (time.perf_counter() - t0))
            head = torch.nn.Linear(bb.num_features, 10)
            opt = torch.optim.AdamW([*bb.parameters(), *head.parameters()], 1e-4)
            y = torch.arange(16) % 10
            bb.train()
            t0 = time.perf_counter()
            for i in range(3):
                loss = torch.nn.functional.cross_entropy(head(bb.forward_features(waves[:16])), y)
                loss.backward()
                opt.step()
                opt.zero_grad()
            steps[name].append(3 / (time.perf_counter() - t0))
            bb.eval()
        with torch.inference_mode():  # Whisper's encoder on its 30 s log-mel window, as the seq2seq task feeds it
            t0 = time.perf_counter()
            for i in range(0, 8, 4):
                x = whisper.features(list(waves[i : i + 4].numpy()), sampling_rate=16000, return_tensors="pt").input_features
                whisper.model.model.encoder(x).last_hidden_state.mean(1)
            feats["whisper_tiny_en"].append(8 / (time.perf_counter() - t0))
    print(f"probe features, clips/s (1.5 s clips, batches of 16; Whisper: 8 clips padded to 30 s, batches of 4), {rounds} rounds, median (range):")
    for n, v in feats.items():
        print(f"  {n}: {_median_range(v)}")
    print("fine-tuning steps/s (batch 16 × 1.5 s, forward + backward + AdamW, classification head):")
    for n, v in steps.items():
        print(f"  {n}: {_median_range(v)}")
    work = Path(tempfile.mkdtemp(prefix="speed-"))
    print("single-clip predict latency, ms (`graftkit.load(run).predict([file])`, a probe run, 10 calls per round):")
    for name in ("speech_embedding", "wakehubert_tiny"):
        run = graftkit.fit(audio_demo_data_dir(), model=name, out=work / name, epochs=1, offline=True)
        model = graftkit.load(run.dir)
        model.predict([str(clips[0])])  # warm-up
        lat = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(10):
                model.predict([str(clips[1])])
            lat.append((time.perf_counter() - t0) / 10 * 1000)
        print(f"  {name}: {_median_range(lat)}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("keywords", "all"):
        keywords()
    if what in ("whisper", "all"):
        whisper()
    if what in ("ctc-fr", "all"):
        ctc_french(epochs=int(sys.argv[2]) if len(sys.argv) > 2 else 40, seeds=(int(sys.argv[3]),) if len(sys.argv) > 3 else (0,))
    if what in ("speed", "all"):
        speed()
    if what in ("keywords-real", "all"):
        keywords_real(telephone=len(sys.argv) > 2 and sys.argv[2] == "telephone")
    if what in ("augment", "all"):
        augment_presets(seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0)
