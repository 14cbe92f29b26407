"""Keyword transfer, revisited (issue 12, requirement 7): probes on frozen encoders trained on
espeak-ng voices, tested on held-out synthetic voices and on the real Asterisk recordings, per
language (one real speaker each: English `en_US_f_Allison`, French `fr`).

Vocabulary (57 words per language): every single-word file of Asterisk's `digits/` folder that
espeak-ng can say from its name (0-20, 30-90, hundred, thousand, million) and the letters a-z.
Real clips: `digits/<name>.wav` and `letters/<x>.wav` of that language (57 each).
Synthetic: English 20 voices (5 accents x 4 variants, the demo's pitch / speed schedule), French
15 voices (fr, fr-be, fr-ch x 5 variants); cached under /tmp.

Settings searched on a **dev split of held-out synthetic voices** (English: the last 5 voices,
French: the last 4): probe (standardised logistic regression | nearest centroid, cosine), pooling
(mean over all frames | over the clip's own frames), loudness (as recorded | -20 dBFS RMS),
telephone band-limiting of the synthetic clips (no | 8 kHz and back). The best dev setting per
encoder is refitted on every synthetic voice and scored once on the real clips; every setting's
real figure is printed too (not used for choosing). Paired bootstrap (10,000 resamples of the
real clips) for the difference to MFCC; Wilson 95 % interval for each accuracy.

    OMP_NUM_THREADS=1 python benchmarks/keywords.py en|fr [MODEL ...]
    python benchmarks/keywords.py tables   # markdown tables from the cached reports (/tmp/graftkit-kws)
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from audio import clips, speak  # [N, 1.5 s] waveforms, loudness and telephone options: one implementation for both scripts

SOUNDS = {"en": Path("/usr/share/asterisk/sounds/en_US_f_Allison"), "fr": Path("/usr/share/asterisk/sounds/fr")}
NUMBERS = [str(i) for i in range(21)] + [str(i) for i in range(30, 100, 10)]
BIG = {"en": {"hundred": "hundred", "thousand": "thousand", "million": "million"}, "fr": {"hundred": "cent", "thousand": "mille", "million": "million"}}
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
CACHE = Path(tempfile.gettempdir()) / "graftkit-kws"
MODELS = ["mfcc", "speech_embedding", "scratch:speech_embedding", "wakehubert_tiny", "scratch:wakehubert_tiny", "resemblyzer", "scratch:resemblyzer"]


def vocabulary(lang: str) -> list[tuple[str, str]]:
    """(real file under the language's sounds folder, text for espeak-ng)."""
    return [(f"digits/{n}.wav", n) for n in NUMBERS] + [(f"digits/{k}.wav", t) for k, t in BIG[lang].items()] + [(f"letters/{c}.wav", c) for c in LETTERS]


def voices(lang: str) -> list[tuple[str, int, int]]:
    """(espeak voice, pitch, speed); the same pitch / speed schedule as the demo's voices."""
    if lang == "en":
        combos = list(itertools.product(["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"], ["m1", "m3", "f2", "f4"]))
    else:
        combos = list(itertools.product(["fr", "fr-be", "fr-ch"], ["m1", "m3", "f2", "f4", "m7"]))
    return [(f"{a}+{v}", 30 + (i * 7) % 45, 140 + (i * 11) % 60) for i, (a, v) in enumerate(combos)]


def synthesise(lang: str) -> list[tuple[Path, int, int]]:
    """The vocabulary said by every voice: (wav, class, voice index), cached."""
    out = []
    for vi, (voice, pitch, speed) in enumerate(voices(lang)):
        for k, (_, text) in enumerate(vocabulary(lang)):
            path = speak(CACHE / "synth" / lang / voice.replace("+", "_") / f"{k:02d}.wav", voice, pitch, speed, text)
            out.append((path, k, vi))
    return out


def _mfcc_one(w: np.ndarray) -> np.ndarray:
    from scipy.fft import dct
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    fb = mel_filter_bank(num_frequency_bins=201, num_mel_filters=40, min_frequency=20, max_frequency=8000, sampling_rate=16000)
    mel = spectrogram(w, window_function(400, "hann"), frame_length=400, hop_length=160, power=2.0, mel_filters=fb, log_mel="log")
    c = dct(mel, type=2, axis=0, norm="ortho")[:13]
    return np.concatenate([c.mean(1), c.std(1)])


def pooled(model_id: str, waves: np.ndarray, seconds: np.ndarray) -> dict[bool, np.ndarray]:
    """{own_frames_only: [N, D]} pooled features (MFCC: 13 mean + 13 std of the cepstra)."""
    if model_id == "mfcc":
        return {False: np.stack([_mfcc_one(w) for w in waves]), True: np.stack([_mfcc_one(w[: max(400, int(s * 16000))]) for w, s in zip(waves, seconds)])}
    from graftkit.sources import load_backbone

    bb = load_backbone(model_id, seed=0).eval()
    with torch.no_grad():
        frames = torch.cat([bb.forward_frames(torch.from_numpy(waves[i : i + 32])) for i in range(0, len(waves), 32)]).numpy()
    rate = bb.frame_rate
    own = np.stack([f[: max(1, min(len(f), int(np.ceil(s * rate))))].mean(0) for f, s in zip(frames, seconds)])
    return {False: frames.mean(1), True: own}


def features(lang: str, model_id: str, which: str, paths: list[Path], loud: bool, tel: bool) -> dict[bool, np.ndarray]:
    f = CACHE / "feats" / lang / f"{model_id.replace(':', '_')}-{which}-loud{int(loud)}-tel{int(tel)}.npz"
    if f.is_file():
        z = np.load(f)
        return {False: z["all"], True: z["own"]}
    out = pooled(model_id, *clips(paths, loud, tel))
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, all=out[False], own=out[True])
    return out


def predict(probe: str, tx: np.ndarray, ty: np.ndarray, x: np.ndarray) -> np.ndarray:
    if probe == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(tx, ty).predict(x)
    classes = np.unique(ty)
    cent = np.stack([tx[ty == c].mean(0) for c in classes])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
    xn = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    return classes[(xn @ cent.T).argmax(1)]


def wilson(k: int, n: int) -> tuple[float, float]:
    z, p = 1.96, k / n
    d = 1 + z * z / n
    c, h = (p + z * z / (2 * n)) / d, z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, n: int = 10000) -> tuple[float, float]:
    """95 % paired bootstrap interval of mean(a) - mean(b) (per-clip correctness)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), size=(n, len(a)))
    d = a[idx].mean(1) - b[idx].mean(1)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def main(lang: str, models: list[str]) -> None:
    syn = synthesise(lang)
    vocab = vocabulary(lang)
    real = [SOUNDS[lang] / f for f, _ in vocab]
    missing = [str(p) for p in real if not p.is_file()]
    if missing:
        raise SystemExit(f"error: missing real clips {missing}; apt-get install asterisk-core-sounds-{lang}-wav")
    y = np.array([k for _, k, _ in syn])
    vi = np.array([v for *_, v in syn])
    n_voices = len(voices(lang))
    n_dev = 5 if lang == "en" else 4
    is_dev = vi >= n_voices - n_dev
    ry = np.arange(len(vocab))
    digits10 = np.isin(y, range(10))
    print(f"[{lang}] train: {len(syn)} espeak-ng clips ({n_voices} voices x {len(vocab)} words); dev: last {n_dev} voices; "
          f"test: {len(real)} real Asterisk clips", flush=True)  # fmt: skip
    settings = list(itertools.product(["logreg", "centroid"], [False, True], [False, True], [False, True]))  # probe, own, loud, tel
    report = {}
    for model_id in models:
        t0 = time.perf_counter()
        rows = {}
        for loud, tel in itertools.product([False, True], [False, True]):
            sx = features(lang, model_id, "synth", [p for p, _, _ in syn], loud, tel)
            rx = features(lang, model_id, "real", real, loud, False)
            for probe, own in itertools.product(["logreg", "centroid"], [False, True]):
                dev = float((predict(probe, sx[own][~is_dev], y[~is_dev], sx[own][is_dev]) == y[is_dev]).mean())
                hits = predict(probe, sx[own], y, rx[own]) == ry
                d10 = predict(probe, sx[own][digits10], y[digits10], rx[own][:10]) == ry[:10]
                rows[(probe, own, loud, tel)] = {"dev": dev, "real_hits": hits.astype(int).tolist(), "digits10_hits": d10.astype(int).tolist()}
        order = {s: i for i, s in enumerate(settings)}
        best = max(rows, key=lambda s: (rows[s]["dev"], -order[s]))  # ties: the earlier (plainer) setting
        report[model_id] = {"chosen": list(best), "rows": {"|".join(map(str, k)): v for k, v in rows.items()}, "seconds": time.perf_counter() - t0}
        r = rows[best]
        print(f"  {model_id}: chosen {best} dev {r['dev']:.3f} real {np.mean(r['real_hits']):.3f} "
              f"({sum(r['real_hits'])}/{len(ry)}); digits 0-9 10-way {sum(r['digits10_hits'])}/10 ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        for s, v in rows.items():
            print(f"      {s}: dev {v['dev']:.3f} real {np.mean(v['real_hits']):.3f} d10 {sum(v['digits10_hits'])}/10")
    if "mfcc" in report:
        m = np.array(report["mfcc"]["rows"]["|".join(map(str, report["mfcc"]["chosen"]))]["real_hits"])
        for model_id, rep in report.items():
            h = np.array(rep["rows"]["|".join(map(str, rep["chosen"]))]["real_hits"])
            lo, hi = wilson(int(h.sum()), len(h))
            dlo, dhi = bootstrap_diff(h, m)
            rep.update(acc=float(h.mean()), wilson=[lo, hi], diff_mfcc=float(h.mean() - m.mean()), diff_ci=[dlo, dhi])
            print(f"  {model_id}: real {h.mean():.3f} [{lo:.3f}, {hi:.3f}]  vs MFCC {h.mean() - m.mean():+.3f} [{dlo:+.3f}, {dhi:+.3f}]")
    out = CACHE / f"report-{lang}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"  written {out}")


def tables() -> None:
    """Markdown tables from the cached reports (`python benchmarks/keywords.py tables`)."""
    def name(s: list) -> str:
        return f"{s[0]}, {'own' if s[1] else 'all'} frames, {'-20 dBFS' if s[2] else 'as recorded'}{', telephone' if s[3] else ''}"

    for lang in ("en", "fr"):
        f = CACHE / f"report-{lang}.json"
        if not f.is_file():
            continue
        rep = json.loads(f.read_text())
        print(f"\n[{lang}] chosen on dev\n| features | setting chosen on dev | dev acc | real acc (57) [Wilson 95 %] | − MFCC [paired bootstrap 95 %] | digits 0–9, 10-way |")
        print("|---|---|---|---|---|---|")
        for m, r in rep.items():
            row = r["rows"]["|".join(map(str, r["chosen"]))]
            h = row["real_hits"]
            print(f"| {m} | {name(r['chosen'])} | {row['dev']:.3f} | {r['acc']:.3f} ({sum(h)}/{len(h)}) [{r['wilson'][0]:.2f}, {r['wilson'][1]:.2f}] | "
                  f"{100 * r['diff_mfcc']:+.1f} [{100 * r['diff_ci'][0]:+.1f}, {100 * r['diff_ci'][1]:+.1f}] | {sum(row['digits10_hits'])}/10 |")  # fmt: skip
        keys = list(next(iter(rep.values()))["rows"])
        print(f"\n[{lang}] every setting, real accuracy (dev in brackets) — not used for choosing")
        print("| setting | " + " | ".join(rep) + " |\n|---|" + "---|" * len(rep))
        for k in keys:
            s = [x == "True" if x in ("True", "False") else x for x in k.split("|")]
            print(f"| {name(s)} | " + " | ".join(f"{np.mean(r['rows'][k]['real_hits']):.3f} ({r['rows'][k]['dev']:.2f})" for r in rep.values()) + " |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["tables"]:
        tables()
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "en", sys.argv[2:] or MODELS)
