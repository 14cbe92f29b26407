"""Audio augmentation (`--augment` on audio runs): each transform does what it says, the preset
reaches the training dataset and the encoder's spectrogram, and evaluation / prediction never see it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import graftkit
from graftkit.data import audio as audio_data
from graftkit.data.audio_augment import (
    AUDIO_AUGMENT_PRESETS,
    Gain,
    NoiseAtSNR,
    TimeMask,
    TimeShift,
    build_waveform_augment,
    install_spectrogram_masking,
    mask_spans,
    shift,
    spectrogram_site,
)
from graftkit.errors import ConfigError
from graftkit.sources import load_backbone
from tests.audio_data import make_audio_folder, tone


def _speech_like(n: int = 16000, pad: int = 4000) -> torch.Tensor:
    wave = torch.from_numpy(tone(500, n / 16000, seed=3))
    return torch.cat([wave, torch.zeros(pad)])  # zero padding at the end, as fit_length makes


def _spans(zero: np.ndarray) -> list[tuple[int, int]]:
    """(start, width) of each run of True."""
    out, start = [], None
    for i, z in enumerate(list(zero) + [False]):
        if z and start is None:
            start = i
        elif not z and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_gain_scales_by_the_drawn_decibels():
    wave = _speech_like()
    out = Gain(6.0, 6.0)(wave)
    assert torch.allclose(out, wave * 10 ** (6 / 20))
    torch.manual_seed(0)
    ratios = [float(Gain(-6, 6)(wave).abs().max() / wave.abs().max()) for _ in range(50)]
    assert 10 ** (-6 / 20) - 1e-6 <= min(ratios) and max(ratios) <= 10 ** (6 / 20) + 1e-6 and max(ratios) - min(ratios) > 0.5


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_mixed_at_the_chosen_snr_and_padding_stays_silent(snr):
    torch.manual_seed(1)
    wave = _speech_like()
    out = NoiseAtSNR(snr, snr)(wave)
    n = 16000
    noise = out[:n] - wave[:n]
    measured = 10 * np.log10(float(wave[:n].pow(2).sum() / noise.pow(2).sum()))
    assert abs(measured - snr) < 0.5, measured
    assert torch.equal(out[n:], torch.zeros(4000))  # padding is not part of the clip


def test_shift_moves_the_content_and_keeps_it():
    wave = _speech_like()
    later, earlier = shift(wave, 800), shift(wave, -800)
    assert torch.equal(later[800:], wave[:-800]) and torch.equal(later[:800], torch.zeros(800))
    assert torch.equal(earlier[:-800], wave[800:]) and torch.equal(earlier[-800:], torch.zeros(800))
    torch.manual_seed(0)
    shifted = TimeShift(1600)(wave)
    lags = [j for j in range(-1600, 1601) if torch.equal(shift(wave, j), shifted)]
    assert len(lags) == 1 and 0 < lags[0] <= 1600  # one shift of the same samples; the tone starts at once: only later
    quiet = torch.cat([torch.zeros(300), wave[:-300]])  # 300 quiet samples in front, 4300 padding behind
    for _ in range(30):
        out = TimeShift(1600)(quiet)
        assert torch.equal(out[out != 0], quiet[quiet != 0])  # nothing audible lost, whichever way it moved


def test_masks_zero_spans_of_the_right_axis_and_width():
    torch.manual_seed(0)
    spec = torch.ones(4, 50, 32)  # (B, frames, bands)
    timed = mask_spans(spec, 1, 2, 5)
    for b in range(4):
        rows = (timed[b] == 0).all(dim=1).numpy()  # a time mask zeroes every band of its frames
        assert ((timed[b] == 0).any(dim=1).numpy() == rows).all()
        spans = _spans(rows)
        assert 1 <= len(spans) <= 2 and all(w <= 5 for _, w in spans) and rows.sum() <= 10
    freq = mask_spans(spec, 2, 1, 4)
    for b in range(4):
        cols = (freq[b] == 0).all(dim=0).numpy()
        assert ((freq[b] == 0).any(dim=0).numpy() == cols).all() and cols.sum() <= 4
    assert torch.equal(spec, torch.ones(4, 50, 32))  # the input is not modified
    wave = torch.ones(1000)
    masked = TimeMask(1, 0.1)(wave)
    assert (masked == 0).sum() <= 100 and len(_spans((masked == 0).numpy())) <= 1


def test_spectrogram_masks_act_only_in_training_mode():
    bb = load_backbone("speech_embedding")
    site = spectrogram_site(bb)
    assert site is not None and site.module is bb.encoder.mel
    x = torch.from_numpy(np.stack([tone(700, 1.0), tone(1500, 1.0, seed=1)]))
    install_spectrogram_masking(bb, AUDIO_AUGMENT_PRESETS["strong"])
    install_spectrogram_masking(bb, AUDIO_AUGMENT_PRESETS["strong"])  # replaces, does not stack
    seen = []
    site.module.register_forward_hook(lambda m, a, o: seen.append(o.detach().clone()))  # runs after the masking hook
    torch.manual_seed(0)
    with torch.no_grad():
        bb.eval().forward_frames(x)
        bb.train().forward_frames(x)
    clean, masked = seen
    changed = masked != clean
    frames = changed.all(dim=2)  # (B, frames): a time mask covers every band of its frames
    bands = changed.all(dim=1)  # (B, bands): a frequency mask covers every frame of its bands
    assert frames.any() and bands.any()
    assert (changed == (frames[:, :, None] | bands[:, None, :])).all()  # nothing else touched
    for b in range(2):  # the masked cells hold the clip's mean log-mel (not 0: a loud value in log-mel)
        torch.testing.assert_close(masked[b][changed[b]], torch.full_like(masked[b][changed[b]], float(clean[b].mean())))
    assert spectrogram_site(load_backbone("resemblyzer")).where == "input"
    assert spectrogram_site(load_backbone("wakehubert_tiny")).module is not None


def test_waveform_models_get_time_masks_on_the_waveform():
    aug = build_waveform_augment(AUDIO_AUGMENT_PRESETS["strong"], 16000, spectrogram=False)
    assert type(aug.transforms[-1]).__name__ == "TimeMask"
    assert build_waveform_augment(AUDIO_AUGMENT_PRESETS["none"], 16000, spectrogram=True) is None


def test_augment_reaches_the_training_dataset_only_and_is_recorded(tmp_path, monkeypatch):
    data = make_audio_folder(tmp_path / "tones", per_class=6)
    made = []
    init = audio_data.AudioFileDataset.__init__

    def spy(self, paths, targets, **kw):
        init(self, paths, targets, **kw)
        made.append(self)

    monkeypatch.setattr(audio_data.AudioFileDataset, "__init__", spy)
    calls = {"train": 0, "eval": 0}

    from graftkit.data import audio_augment

    original = audio_augment.SpectrogramMasking.mask

    def counting_mask(self, spec):
        calls["train" if self.owner.training else "eval"] += 1
        return original(self, spec)

    monkeypatch.setattr(audio_augment.SpectrogramMasking, "mask", counting_mask)
    run = graftkit.fit(data, model="speech_embedding", strategy="finetune", augment="strong", out="runs/aug", epochs=1, batch_size=4, offline=True)
    train = [d for d in made if d.augment is not None]
    assert len(train) == 1 and len(train[0]) == 15  # 18 clips, 15 in train (4 batches of 4)
    assert [type(t).__name__ for t in train[0].augment.transforms] == ["Gain", "NoiseAtSNR", "TimeShift"]
    assert all(d.augment is None for d in made if d is not train[0])  # val: no augmentation
    assert calls["train"] == 4 and calls["eval"] == 0  # 4 training batches masked, nothing else
    clips = json.loads((run.dir / "graft.json").read_text())["data"]["clips"]
    assert clips["augment"]["preset"] == "strong" and "white noise at SNR U(5, 20) dB" in clips["augment"]["steps"]
    assert clips["augment"]["masks_on"].startswith("log-mel")
    model = graftkit.load(run.dir)
    wav = str(data / "low" / "low_0.wav")
    first, second = model.predict([wav])[0], model.predict([wav])[0]
    assert first.score == second.score and calls["train"] == 4  # predict: deterministic, unmasked


def test_image_only_presets_are_refused_for_audio(tmp_path):
    data = make_audio_folder(tmp_path / "tones", per_class=4)
    with pytest.raises(ConfigError, match="--augment randaugment is not an audio preset; audio runs take: none, light, strong"):
        graftkit.fit(data, model="wakehubert_tiny", strategy="finetune", augment="randaugment", out="runs/x", epochs=1, offline=True)


def test_train_help_states_what_each_audio_preset_does(capsys):
    from graftkit.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "light = gain ±6 dB, shift ±0.1 s, white noise at SNR 20-40 dB" in text
    assert "strong = gain ±10 dB" in text


def test_the_same_seed_repeats_the_augmentation(tmp_path):
    data = make_audio_folder(tmp_path / "tones", per_class=5)

    def train_loss(out: str, augment: str, seed: int = 0) -> float:
        run = graftkit.fit(data, model="wakehubert_tiny", strategy="finetune", augment=augment, out=out, epochs=1, batch_size=4,
                           seed=seed, precision="fp32", offline=True)  # fmt: skip
        return json.loads((run.dir / "history.jsonl").read_text().splitlines()[0])["train_loss"]

    first, again = train_loss("runs/a", "strong"), train_loss("runs/b", "strong")
    assert first == again  # same seed: same gains, noise, shifts and masks
    assert train_loss("runs/c", "none") != first  # and they do change what the model trains on
