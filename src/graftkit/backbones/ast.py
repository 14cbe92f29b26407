"""The Audio Spectrogram Transformer (AST) behind the audio Backbone contract: waveforms in,
patch-token frames out.

AST reads a kaldi-style log-mel filterbank, not samples. `ASTFbank` is transformers'
`ASTFeatureExtractor` (its numpy path, the one used without torchaudio) written in torch, so the
model input stays the waveform `[B, S]` at 16 kHz: the loop, the predictor, the service and the
ONNX export feed samples and never call a feature extractor.

- `HFSpectrogramEncoder.forward(x) -> [B, T, D]`: `ASTModel`'s last hidden state, every token kept:
  the CLS and distillation tokens first, then the `f × t` patch tokens (frequency-major, as AST
  orders them). T is fixed by the config (`2 + f·t`): every clip is padded or cut to `max_length`
  fbank frames first, as AST was trained.
- `HFSpectrogramEncoder.forward_layers(x) -> list[[B, T, D]]`: embeddings, then each encoder
  layer's output, the last one after the final layernorm (= `forward(x)`), for layer pooling.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
WIN, HOP, N_FFT = 400, 160, 512
"""25 ms frames every 10 ms at 16 kHz, zero-padded to a 512-point FFT."""
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
"""float32 epsilon: the floor under the mel energies before the log (the extractor's `mel_floor`)."""


def frame_kernels(window: torch.Tensor, preemphasis: float = PREEMPHASIS) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-frame linear steps folded into two conv1d kernels `(257, 1, 400)` (real, imaginary part).

    Per 400-sample frame the extractor removes the frame's mean, pre-emphasises
    (`y[n] = x[n] - a·x[n-1]`, `y[0] = (1 - a)·x[0]`), multiplies by the window and takes the
    512-point DFT of the zero-padded frame: all linear, so one matrix `DFT · window · preemph · (I - 1/400)`
    (built in float64) does it, and a strided conv1d applies it to every frame at once.
    """
    n = window.numel()
    eye = torch.eye(n, dtype=torch.float64)
    dc = eye - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    pre = eye - preemphasis * torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    pre[0, 0] = 1.0 - preemphasis
    linear = window.double()[:, None] * (pre @ dc)  # (400, 400): frame -> windowed, pre-emphasised, DC-free frame
    angle = 2 * math.pi * torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None] * torch.arange(n, dtype=torch.float64)[None] / N_FFT
    real, imag = torch.cos(angle) @ linear, -torch.sin(angle) @ linear  # (257, 400)
    return real.float().unsqueeze(1), imag.float().unsqueeze(1)


class ASTFbank(nn.Module):
    """`ASTFeatureExtractor` in torch: waveforms `[B, S]` (16 kHz, [-1, 1]) → `[B, max_length, n_mels]`.

    Frames of 400 samples every 160 (no centring), each made zero-mean, pre-emphasised (0.97) and
    windowed (symmetric Hann, the extractor's `window_function(400, "hann", periodic=False)`);
    512-point power spectrum; kaldi mel filters; natural log floored at `MEL_FLOOR`; zero rows
    appended (or frames cut) to `max_length`; then `(x - mean) / (2 * std)` when `do_normalize`.
    Fixed signal processing: buffers, not parameters (nothing in the state dict). Batched, no loop.

    Args:
        mel_filters: `[257, n_mels]`, the extractor's `mel_filters`.
        window: `[400]`, the extractor's `window`.
        max_length: Fbank frames every clip is padded or cut to (the config's `max_length`).
        mean: Normalisation mean (the extractor's `mean`).
        std: Normalisation std (the extractor's `std`).
        do_normalize: Whether to normalise.

    Example:
        >>> fbank = ast_fbank({"num_mel_bins": 128, "max_length": 1024})
        >>> fbank(torch.zeros(2, 16000)).shape
        torch.Size([2, 1024, 128])
    """

    def __init__(self, mel_filters: torch.Tensor, window: torch.Tensor, max_length: int, mean: float, std: float, do_normalize: bool = True) -> None:
        super().__init__()
        self.max_length, self.mean, self.std, self.do_normalize = int(max_length), float(mean), float(std), bool(do_normalize)
        real, imag = frame_kernels(window)
        self.register_buffer("real", real, persistent=False)
        self.register_buffer("imag", imag, persistent=False)
        self.register_buffer("mel_filters", mel_filters.float(), persistent=False)

    @property
    def num_samples(self) -> int:
        """Samples that fill `max_length` frames exactly (10 ms each, plus the last frame's 15 ms tail)."""
        return (self.max_length - 1) * HOP + WIN

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave.float()
        n = wave.shape[-1]
        if n > self.num_samples:  # frames past max_length would be cut anyway
            wave = wave[:, : self.num_samples]
        elif n < WIN:  # the extractor needs one whole frame; zero samples make it one
            wave = F.pad(wave, (0, WIN - n))
        x = wave.unsqueeze(1)  # (B, 1, S)
        power = F.conv1d(x, self.real, stride=HOP) ** 2 + F.conv1d(x, self.imag, stride=HOP) ** 2  # (B, 257, frames)
        fbank = (power.transpose(1, 2) @ self.mel_filters).clamp_min(MEL_FLOOR).log()  # (B, frames, n_mels)
        frames = fbank.shape[1]
        if frames < self.max_length:  # zero rows after the log, as the extractor pads
            fbank = F.pad(fbank, (0, 0, 0, self.max_length - frames))
        if self.do_normalize:
            fbank = (fbank - self.mean) / (2.0 * self.std)
        return fbank


def ast_fbank(preprocessor: dict, config_max_length: int | None = None) -> ASTFbank:
    """`ASTFbank` for a `preprocessor_config.json` dict (missing keys take `ASTFeatureExtractor`'s defaults).

    Args:
        preprocessor: The feature extractor's settings.
        config_max_length: The model config's `max_length`, used when the preprocessor has none.
    """
    from transformers.audio_utils import mel_filter_bank, window_function

    rate = int(preprocessor.get("sampling_rate", SAMPLE_RATE))
    mel = mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=int(preprocessor.get("num_mel_bins", 128)), min_frequency=20,
        max_frequency=rate // 2, sampling_rate=rate, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True,
    )  # fmt: skip
    return ASTFbank(
        torch.from_numpy(mel), torch.from_numpy(window_function(WIN, "hann", periodic=False)),
        max_length=int(preprocessor.get("max_length", config_max_length or 1024)), mean=float(preprocessor.get("mean", -4.2677393)),
        std=float(preprocessor.get("std", 4.5689974)), do_normalize=bool(preprocessor.get("do_normalize", True)),
    )  # fmt: skip


class HFSpectrogramEncoder(nn.Module):
    """A fbank front end and a transformers `ASTModel` as `[B, S] -> [B, T, D]`.

    Args:
        fbank: Waveforms to the model's `input_values`.
        model: The `ASTModel`.
    """

    def __init__(self, fbank: ASTFbank, model: nn.Module) -> None:
        super().__init__()
        self.fbank = fbank
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """AST's last hidden state `[B, 2 + f·t, D]` (CLS, distillation, then patch tokens)."""
        return self.model(input_values=self.fbank(x)).last_hidden_state

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden state, input → output, each `[B, T, D]`: the embeddings, then each encoder
        layer; the last is taken after AST's final layernorm, so it equals `forward(x)`
        (`num_hidden_layers + 1` entries)."""
        out = self.model(input_values=self.fbank(x), output_hidden_states=True)
        return [*out.hidden_states[:-1], out.last_hidden_state]
