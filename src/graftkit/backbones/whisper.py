"""Whisper behind the audio Backbone contract: waveforms in, encoder frames out, and the whole
encoder-decoder kept for sequence-to-sequence speech recognition (`--task asr`).

Input is the same as every audio backbone's: mono float32 waveforms `[B, S]` at 16 kHz. The
log-mel front end is Whisper's own (`WhisperLogMel`, transformers' `WhisperFeatureExtractor`
written in torch), so the loop, the predictor and the service feed waveforms and never call a
feature extractor. Every clip is zero-padded to Whisper's fixed window (30 s for the released
models: `max_source_positions * 2` mel frames of 10 ms) before the encoder, as Whisper was trained.

- `forward_frames(x) -> [B, T, D]`: encoder frames (50 per second), cut to the clip's own length;
- `forward_features(x) -> [B, D]`: their mean;
- `model`: the `WhisperForConditionalGeneration` (decoder and tied output layer included),
  `tokenizer`, `prompt` (decoder prompt ids, e.g. `<|startoftranscript|><|notimestamps|>`);
- `layer_groups()`: front end, encoder blocks, decoder embeddings, decoder blocks, final norm.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from graftkit.backbones.audio import AudioPreprocess, LayerPooling
from graftkit.backbones.base import WeightsInfo

HOP = 160
"""Samples per mel frame at 16 kHz (10 ms)."""
N_FFT = 400


class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram: Hann STFT (400, hop 160) power, mel filters, log10 floored at
    the clip's max − 8, then `(x + 4) / 4`; waveforms zero-padded (or cut) to `num_samples`.
    Fixed signal processing: buffers, not parameters (nothing in the state dict).

    Args:
        mel_filters: `[n_fft // 2 + 1, n_mels]`, the feature extractor's `mel_filters`.
        num_samples: The window every clip is padded to (480000 = 30 s for the released models).
    """

    def __init__(self, mel_filters: torch.Tensor, num_samples: int) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.register_buffer("mel_filters", mel_filters.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.shape[-1]
        wave = F.pad(wave.float(), (0, self.num_samples - n)) if n < self.num_samples else wave[..., : self.num_samples].float()
        stft = torch.stft(wave, N_FFT, HOP, window=self.window, return_complex=True)  # (B, 201, frames + 1)
        power = stft[..., :-1].abs() ** 2
        mel = self.mel_filters.T @ power  # (B, n_mels, frames)
        log = mel.clamp(min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


def whisper_groups(model: nn.Module) -> list[list[nn.Module]]:
    """Input → output: the encoder's convolutions and positions, each encoder block, the encoder's
    final norm with the decoder's embeddings (the output layer is tied to them), each decoder
    block, the decoder's final norm."""
    enc, dec = model.model.encoder, model.model.decoder
    return [
        [enc.conv1, enc.conv2, enc.embed_positions],
        *[[layer] for layer in enc.layers],
        [enc.layer_norm, dec.embed_tokens, dec.embed_positions],
        *[[layer] for layer in dec.layers],
        [dec.layer_norm],
    ]


class WhisperBackbone(LayerPooling, nn.Module):
    """A transformers `WhisperForConditionalGeneration` as an audio backbone that keeps its decoder.

    Args:
        model: The network (weights already loaded by `sources/`).
        tokenizer: Its tokenizer (a `PreTrainedTokenizerFast` or `WhisperTokenizer`).
        mel_filters: The front end's mel matrix `[201, n_mels]`.
        weights: Where the weights came from.
        prompt: Decoder prompt ids, starting with `decoder_start_token_id`.
        save_architecture: `f(folder)` writing config, tokenizer and feature-extractor config, so a
            run rebuilds offline.

    Example:
        >>> bb = load_backbone("whisper_tiny_en")
        >>> bb.forward_frames(torch.zeros(1, 16000)).shape
        torch.Size([1, 50, 384])
    """

    modality = "audio"
    head_kind = "seq2seq"
    frame_rate = 50.0

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        mel_filters: torch.Tensor,
        weights: WeightsInfo,
        prompt: list[int],
        save_architecture: Callable[[Any], None],
    ) -> None:
        super().__init__()
        self.model = model
        window = int(model.config.max_source_positions) * 2 * HOP
        self.mel = WhisperLogMel(mel_filters, window)
        self.tokenizer = tokenizer
        self.weights = weights
        self.prompt = list(prompt)
        self.num_features = int(model.config.d_model)
        self.preprocess = AudioPreprocess(sample_rate=16000, max_seconds=window / 16000, normalize=False)
        self._save = save_architecture
        self.layer_mix = None

    @property
    def window_seconds(self) -> float:
        """The longest clip Whisper reads (its fixed input window)."""
        return self.mel.num_samples / 16000

    @property
    def eos_token_id(self) -> int:
        return int(self.model.config.eos_token_id)

    @property
    def max_target_tokens(self) -> int:
        """Decoder positions: prompt + transcript + end-of-text must fit."""
        return int(self.model.config.max_target_positions)

    def input_features(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-mel features `[B, n_mels, 2 * max_source_positions]` of waveforms `[B, S]`."""
        if isinstance(x, dict):
            x = x["waveform"]
        return self.mel(x)

    def forward_frames(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Encoder frames `[B, T, D]`, cut to the clip's length (T = ceil(S / 320), 50 per second);
        under `--layer-pooling weighted` the learned mix of every encoder layer's frames."""
        if self.layer_mix is not None:
            return self.mixed_frames(x)
        wave = x["waveform"] if isinstance(x, dict) else x
        frames = self.model.model.encoder(self.input_features(wave)).last_hidden_state  # (B, 1500, D) for 30 s
        return frames[:, : self._keep(wave, frames)]

    def _keep(self, wave: torch.Tensor, frames: torch.Tensor) -> int:
        return max(1, min(frames.shape[1], math.ceil(wave.shape[-1] / (2 * HOP))))

    def has_layers(self) -> bool:
        return True

    def layer_frames(self, x: torch.Tensor | dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Every encoder hidden state `[B, T, D]` (the embeddings, then each layer; the last is
        after the final layer norm, `forward_frames`' frames), cut to the clip's length."""
        wave = x["waveform"] if isinstance(x, dict) else x
        out = self.model.model.encoder(self.input_features(wave), output_hidden_states=True)
        keep = self._keep(wave, out.last_hidden_state)
        return [h[:, :keep] for h in (*out.hidden_states[:-1], out.last_hidden_state)]

    def forward_features(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled features `[B, D]`: the mean of the clip's encoder frames."""
        return self.forward_frames(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def layer_groups(self) -> list[list[nn.Module]]:
        return self.mix_groups(whisper_groups(self.model))

    def frames_for(self, seconds: float) -> int:
        """Encoder frames for a clip of `seconds` (50 per second, at most the window's)."""
        return max(1, min(int(self.model.config.max_source_positions), math.ceil(seconds * self.frame_rate)))

    def lora_target_modules(self) -> list[str]:
        """The attention projections (PEFT's choice for Whisper)."""
        return ["q_proj", "v_proj"]

    def save_architecture(self, out: Any) -> None:
        """config.json, tokenizer and preprocessor_config.json (no weights) into `out`."""
        self._save(out)


@torch.inference_mode()
def generate_text(
    model: nn.Module, tokenizer: Any, features: torch.Tensor, prompt: list[int], *, eos_token_id: int, num_beams: int = 1, max_new_tokens: int = 96
) -> list[str]:
    """Transcripts of log-mel `features [B, n_mels, frames]`: transformers' generation loop (KV
    cache on; beam search when `num_beams > 1`) after the decoder `prompt`.

    Whisper's own `generate` (language detection, timestamps, long-form) is bypassed: the prompt is
    given, so the plain encoder-decoder loop of `GenerationMixin` runs. Text tokens are the ids
    below `eos_token_id`; the special tokens (prompt, timestamps, end of text) come after it.
    """
    from transformers.generation import GenerationMixin

    start = torch.tensor([prompt] * len(features), device=features.device)
    max_new = max(1, min(max_new_tokens, int(model.config.max_target_positions) - len(prompt)))
    mask = torch.ones(features.shape[0], features.shape[-1], dtype=torch.long, device=features.device)  # Whisper masks nothing; given, transformers does not guess one
    ids = GenerationMixin.generate(
        model, input_features=features, attention_mask=mask, decoder_input_ids=start, num_beams=num_beams, max_new_tokens=max_new, do_sample=False,
        eos_token_id=eos_token_id, pad_token_id=eos_token_id, use_cache=True,
    )  # fmt: skip
    return [tokenizer.decode([t for t in row if t < eos_token_id]).strip() for row in ids[:, len(prompt) :].tolist()]


def transcribe_waveforms(backbone: WhisperBackbone, waves: list[torch.Tensor], *, num_beams: int = 1, max_new_tokens: int = 96, batch_size: int = 8) -> list[str]:
    """Transcripts of 16 kHz waveforms (1-D, any length up to the window) with a `WhisperBackbone`.

    Example:
        >>> transcribe_waveforms(load_backbone("whisper_tiny_en"), [torch.from_numpy(decode_audio("seven.wav", 16000))])
        ['Seven.']
    """
    model = backbone.model
    was_training = backbone.training
    backbone.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        n = backbone.mel.num_samples
        for start in range(0, len(waves), batch_size):
            chunk = [torch.as_tensor(w, dtype=torch.float32).reshape(-1)[:n] for w in waves[start : start + batch_size]]
            batch = torch.stack([F.pad(w, (0, n - len(w))) for w in chunk]).to(device)
            features = backbone.input_features(batch)
            out += generate_text(model, backbone.tokenizer, features, backbone.prompt, eos_token_id=backbone.eos_token_id,
                                 num_beams=num_beams, max_new_tokens=max_new_tokens)  # fmt: skip
    finally:
        backbone.train(was_training)
    return out
