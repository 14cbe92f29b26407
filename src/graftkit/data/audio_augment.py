"""Audio augmentation presets (`--augment` for audio runs): waveform transforms in the dataset,
SpecAugment-style masking on the encoder's own spectrogram. Training only; seeded.

| preset   | waveform (each clip, in the dataset)                                   | masking (each clip)                                   |
|----------|------------------------------------------------------------------------|-------------------------------------------------------|
| `none`   | nothing                                                                | nothing                                               |
| `light`  | gain U(-6, +6) dB; shift U(-0.1, +0.1) s; white noise at SNR U(20, 40) dB with p 0.5 | 1 time mask ≤ 5 % of the frames, 1 frequency mask ≤ 10 % of the bands |
| `strong` | gain U(-10, +10) dB; shift U(-0.2, +0.2) s; white noise at SNR U(5, 20) dB | 2 time masks ≤ 10 % each, 2 frequency masks ≤ 15 % each |

- **Gain** multiplies the clip by `10 ** (dB / 20)` (no clipping: the networks take floats).
- **Shift** moves the clip by whole samples, what moves in is zeros; the draw is bounded so that
  nothing audible moves out (left: at most the quiet lead-in, right: at most the zero padding).
- **Noise** is white Gaussian noise scaled so that `10 · log10(P_clip / P_noise)` is the drawn SNR,
  both powers measured over the clip up to its last non-zero sample: the zero padding at the end
  (clips are padded to `--max-seconds`) stays zero, as at evaluation.
- **Masking** (SpecAugment, Park et al. 2019) sets spans of the spectrogram to the clip's mean
  spectrogram value (0 would be a loud value in an unnormalised log-mel, and would skew the
  BatchNorm statistics that follow it in `wakehubert_tiny`) where the encoder
  computes one (`speech_embedding`: its log-mel, `wakehubert_tiny`: the log-mel inside its graph,
  `resemblyzer`: the mel power spectrogram before the LSTM), as a forward hook that acts only while
  the backbone is in training mode; encoders without a spectrogram stage (`hf:` waveform models)
  get the time masks on the waveform instead (spans of samples set to 0), and no frequency masks.

Random draws come from torch's generator (the training loop reseeds it every epoch, and
`make_loader` seeds each worker), so a seed repeats the same augmentation. Evaluation, prediction,
feature caching (`linear-probe`) and export never augment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from graftkit.errors import ConfigError

__all__ = [
    "AUDIO_AUGMENT_PRESETS",
    "AudioAugmentPolicy",
    "Gain",
    "TimeShift",
    "NoiseAtSNR",
    "TimeMask",
    "mask_spans",
    "audio_augment_policy",
    "build_waveform_augment",
    "install_spectrogram_masking",
    "spectrogram_site",
]


@dataclass(frozen=True)
class AudioAugmentPolicy:
    """What one preset does (see the module docstring's table)."""

    gain_db: float = 0.0
    """Gain drawn from U(-gain_db, +gain_db) dB."""
    shift_seconds: float = 0.0
    """Shift drawn from U(-shift_seconds, +shift_seconds)."""
    snr_db: tuple[float, float] | None = None
    """White noise at an SNR drawn from this range, in dB; None: no noise."""
    noise_p: float = 1.0
    """Probability of adding noise to a clip."""
    time_masks: int = 0
    """How many time masks per clip."""
    time_mask_fraction: float = 0.0
    """Longest time mask, as a fraction of the clip's frames (or samples, on the waveform)."""
    freq_masks: int = 0
    """How many frequency masks per clip (spectrogram encoders only)."""
    freq_mask_fraction: float = 0.0
    """Widest frequency mask, as a fraction of the bands."""

    def describe(self) -> list[str]:
        """The steps in words (written to the run's metadata and report)."""
        steps = []
        if self.gain_db:
            steps.append(f"gain U(-{self.gain_db:g}, +{self.gain_db:g}) dB")
        if self.shift_seconds:
            steps.append(f"shift U(-{self.shift_seconds:g}, +{self.shift_seconds:g}) s within the clip's silence, zero fill")
        if self.snr_db is not None:
            p = f" with p {self.noise_p:g}" if self.noise_p < 1 else ""
            steps.append(f"white noise at SNR U({self.snr_db[0]:g}, {self.snr_db[1]:g}) dB{p}")
        if self.time_masks:
            steps.append(f"{self.time_masks} time mask(s) ≤ {self.time_mask_fraction:.0%}")
        if self.freq_masks:
            steps.append(f"{self.freq_masks} frequency mask(s) ≤ {self.freq_mask_fraction:.0%}")
        return steps


AUDIO_AUGMENT_PRESETS: dict[str, AudioAugmentPolicy] = {
    "none": AudioAugmentPolicy(),
    "light": AudioAugmentPolicy(gain_db=6.0, shift_seconds=0.1, snr_db=(20.0, 40.0), noise_p=0.5,
                                time_masks=1, time_mask_fraction=0.05, freq_masks=1, freq_mask_fraction=0.10),  # fmt: skip
    "strong": AudioAugmentPolicy(gain_db=10.0, shift_seconds=0.2, snr_db=(5.0, 20.0), noise_p=1.0,
                                 time_masks=2, time_mask_fraction=0.10, freq_masks=2, freq_mask_fraction=0.15),  # fmt: skip
}
"""The audio presets of `--augment`; `randaugment` is image-only."""


def audio_augment_policy(name: str) -> AudioAugmentPolicy:
    """The policy of an `--augment` preset for audio.

    Raises:
        ConfigError: Not an audio preset (e.g. `randaugment`).
    """
    if name not in AUDIO_AUGMENT_PRESETS:
        raise ConfigError(f"--augment {name} is not an audio preset; audio runs take: {', '.join(AUDIO_AUGMENT_PRESETS)}")
    return AUDIO_AUGMENT_PRESETS[name]


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()))


# --- waveform transforms: `[S]` float32 → `[S]` --------------------------------------------------


class Gain:
    """Multiply by `10 ** (dB / 20)`, dB drawn from U(-max_db, +max_db) (or fixed: `low == high`)."""

    def __init__(self, low_db: float, high_db: float) -> None:
        self.low_db, self.high_db = low_db, high_db

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        return wave * (10.0 ** (_uniform(self.low_db, self.high_db) / 20.0))


def shift(wave: torch.Tensor, samples: int) -> torch.Tensor:
    """`wave` moved by `samples` (positive: later); vacated samples are zeros, the length is kept."""
    out = torch.zeros_like(wave)
    n = wave.shape[-1]
    if samples >= 0:
        out[..., samples:] = wave[..., : n - samples]
    else:
        out[..., : n + samples] = wave[..., -samples:]
    return out


def quiet_lead(wave: torch.Tensor, fraction: float = 0.01) -> int:
    """Samples before the first one louder than `fraction` of the clip's peak."""
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    loud = torch.nonzero(wave.abs() > fraction * peak)
    return int(loud[0, 0]) if peak > 0 and len(loud) else 0


class TimeShift:
    """Shift by a whole number of samples drawn from U(-max, +max), bounded so that nothing audible
    is lost: at most the quiet lead-in to the left, at most the zero padding to the right (a
    transcript or label stays true of the shifted clip)."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        left = min(self.max_samples, quiet_lead(wave))
        right = min(self.max_samples, wave.shape[-1] - active_length(wave))
        k = int(torch.randint(-left, right + 1, ()))
        return shift(wave, k) if k else wave


def active_length(wave: torch.Tensor) -> int:
    """Samples up to and including the last non-zero one (the clip without its zero padding)."""
    nz = torch.nonzero(wave)
    return int(nz[-1, 0]) + 1 if len(nz) else 0


class NoiseAtSNR:
    """White Gaussian noise at an SNR drawn from U(low, high) dB over the clip's active part."""

    def __init__(self, low_db: float, high_db: float, p: float = 1.0) -> None:
        self.low_db, self.high_db, self.p = low_db, high_db, p

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if self.p < 1 and float(torch.rand(())) >= self.p:
            return wave
        n = active_length(wave)
        if n == 0:
            return wave
        snr = _uniform(self.low_db, self.high_db)
        noise = torch.randn(n, dtype=wave.dtype)
        signal_power = wave[:n].pow(2).mean()
        noise = noise * torch.sqrt(signal_power / (noise.pow(2).mean() * 10.0 ** (snr / 10.0)))
        out = wave.clone()
        out[:n] += noise
        return out


def mask_spans(x: torch.Tensor, axis: int, count: int, max_width: int, *, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Set `count` spans of up to `max_width` positions along `axis` to 0 (or to `fill[b]` for
    example b), independently per example of the batch (axis 0). Returns a new tensor."""
    if count == 0 or max_width < 1:
        return x
    out = x.clone()
    size = x.shape[axis]
    for b in range(x.shape[0]):
        row = out[b]
        value = float(fill[b]) if fill is not None else 0.0
        for _ in range(count):
            width = int(torch.randint(0, min(max_width, size) + 1, ()))
            if width == 0:
                continue
            start = int(torch.randint(0, size - width + 1, ()))
            row.narrow(axis - 1, start, width).fill_(value)
    return out


class TimeMask:
    """Waveform time masking (for encoders without a spectrogram): `count` spans of up to
    `fraction` of the samples set to 0."""

    def __init__(self, count: int, fraction: float) -> None:
        self.count, self.fraction = count, fraction

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        return mask_spans(wave[None], 1, self.count, int(self.fraction * wave.shape[-1]))[0]


class Compose:
    """The transforms in order; `steps` names them (recorded in the run)."""

    def __init__(self, transforms: list[Callable[[torch.Tensor], torch.Tensor]], steps: list[str]) -> None:
        self.transforms, self.steps = transforms, steps

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            wave = t(wave)
        return wave


def build_waveform_augment(policy: AudioAugmentPolicy, sample_rate: int, *, spectrogram: bool) -> Compose | None:
    """The dataset's per-clip transform: gain → noise → shift (→ time masks when the encoder has no
    spectrogram to mask). None when the policy does nothing to waveforms."""
    ts: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if policy.gain_db:
        ts.append(Gain(-policy.gain_db, policy.gain_db))
    if policy.snr_db is not None:
        ts.append(NoiseAtSNR(*policy.snr_db, p=policy.noise_p))
    if policy.shift_seconds:
        ts.append(TimeShift(int(round(policy.shift_seconds * sample_rate))))
    if not spectrogram and policy.time_masks:
        ts.append(TimeMask(policy.time_masks, policy.time_mask_fraction))
    return Compose(ts, policy.describe()) if ts else None


# --- masking the encoder's spectrogram ------------------------------------------------------------


@dataclass(frozen=True)
class SpectrogramSite:
    """Where an encoder's spectrogram can be masked."""

    module: nn.Module
    """The module whose output (`where="output"`) or first input (`where="input"`) it is."""
    where: str
    time_axis: int
    """Axis of frames in the `[B, ...]` tensor."""
    freq_axis: int
    """Axis of frequency bands."""
    name: str
    """What it is, for the run's record."""


def spectrogram_site(backbone: nn.Module) -> SpectrogramSite | None:
    """The spectrogram stage of a built-in encoder, or None (waveform models, unknown encoders)."""
    from graftkit.sources.audio_builtin import GE2EEncoder, SpeechEmbeddingEncoder, WakeHubertEncoder

    enc = getattr(backbone, "encoder", None)
    if isinstance(enc, SpeechEmbeddingEncoder):
        return SpectrogramSite(enc.mel, "output", 1, 2, "log-mel [B, frames, 32]")
    if isinstance(enc, WakeHubertEncoder):
        log = dict(enc.graph.named_modules()).get("student/mel/Log")
        return SpectrogramSite(log, "output", 2, 1, "log-mel [B, 64, frames]") if log is not None else None
    if isinstance(enc, GE2EEncoder):
        return SpectrogramSite(enc.lstm, "input", 1, 2, "mel power [B, frames, 40]")
    return None


class SpectrogramMasking:
    """SpecAugment masks on a spectrogram `[B, ...]`, applied only while `owner.training`."""

    def __init__(self, owner: nn.Module, site: SpectrogramSite, policy: AudioAugmentPolicy) -> None:
        self.owner, self.site, self.policy = owner, site, policy

    def mask(self, spec: torch.Tensor) -> torch.Tensor:
        p, s = self.policy, self.site
        means = spec.detach().flatten(1).mean(1)  # (B,): each clip's mean value
        spec = mask_spans(spec, s.time_axis, p.time_masks, int(p.time_mask_fraction * spec.shape[s.time_axis]), fill=means)
        return mask_spans(spec, s.freq_axis, p.freq_masks, int(p.freq_mask_fraction * spec.shape[s.freq_axis]), fill=means)

    def output_hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        return self.mask(output) if self.owner.training else None

    def input_hook(self, module: nn.Module, args: tuple) -> tuple | None:
        return (self.mask(args[0]), *args[1:]) if self.owner.training else None


def install_spectrogram_masking(backbone: nn.Module, policy: AudioAugmentPolicy) -> SpectrogramSite | None:
    """Mask the backbone's spectrogram in training mode (replacing any masking installed before).

    Returns:
        The site masked, or None when the encoder has no spectrogram stage (then the waveform
        transform carries the time masks) or the policy has no masks.
    """
    old = getattr(backbone, "_graft_spec_masking", None)
    if old is not None:
        old.remove()
        backbone._graft_spec_masking = None
    site = spectrogram_site(backbone)
    if site is None or not (policy.time_masks or policy.freq_masks):
        return site
    masking = SpectrogramMasking(backbone, site, policy)
    if site.where == "output":
        handle = site.module.register_forward_hook(masking.output_hook)
    else:
        handle = site.module.register_forward_pre_hook(masking.input_hook)
    backbone._graft_spec_masking = handle
    return site
