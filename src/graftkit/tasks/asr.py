"""Speech recognition by sequence-to-sequence fine-tuning (`--task asr`): Whisper-style.

The pretrained encoder-decoder keeps its own output layer (the vocabulary); training is teacher
forced token cross-entropy, as for `--task seq2seq`, with audio in place of source text:
- inputs: waveforms → Whisper's log-mel features (inside the backbone, `backbones/whisper.py`);
- targets (`audio_targets`): the transcript's tokens after the decoder prompt, then end of text,
  i.e. `<|notimestamps|> text <|endoftext|>` for tiny.en; padding is -100 (skipped by the loss);
  the model's decoder input is the targets shifted right behind `<|startoftranscript|>`;
- decoding: transformers' generation loop with its KV cache, greedy or beam (`--num-beams`);
- scoring: WER and CER (jiwer) after one text normalisation, applied to references and hypotheses
  alike and recorded in graft.json (`NORMALISATION`); the zero-shot WER/CER of the weights the run
  started from is measured on validation before training, so metrics.json has before and after;
  the report lists the worst validation utterances with reference and hypothesis.

Targets are the transcripts as written (with `[notes]` removed), so the model keeps Whisper's
cased, punctuated style; normalisation is for scoring only.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError, DataError
from graftkit.tasks.base import Metric, Prediction, TaskSettings, register_task
from graftkit.tasks.generation import IGNORE, Seq2SeqTask

NORMALISATION = "lowercase; [bracketed notes] removed; each digit spelled out (1 -> one); every character but a-z and ' removed; whitespace collapsed"
"""How references and hypotheses are normalised before WER / CER (recorded in graft.json)."""

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BASELINE_LIMIT = 200
"""At most this many validation clips are transcribed before training for the zero-shot baseline."""


def normalise(text: str) -> str:
    """The scoring normalisation (`NORMALISATION`).

    Example:
        >>> normalise("Press 1, then [pause] the pound key.")
        'press one then the pound key'
    """
    text = re.sub(r"\[[^\]]*\]", " ", str(text).lower())
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text)
    return re.sub(r"\s+", " ", re.sub(r"[^a-z' ]", " ", text)).strip()


def training_text(text: str) -> str:
    """A transcript as the decoder learns it: `[notes]` removed, whitespace collapsed, case and
    punctuation kept."""
    return re.sub(r"\s+", " ", re.sub(r"\[[^\]]*\]", " ", str(text))).strip()


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    """Corpus WER and CER (jiwer) after `normalise`; utterances whose normalised reference is
    empty are left out (and counted)."""
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(references, hypotheses)]
    kept = [(r, h) for r, h in pairs if r]
    if not kept:
        return {"wer": float("nan"), "cer": float("nan"), "scored": 0}
    refs, hyps = [r for r, _ in kept], [h for _, h in kept]
    return {"wer": round(float(jiwer.wer(refs, hyps)), 6), "cer": round(float(jiwer.cer(refs, hyps)), 6), "scored": len(kept)}


def worst_utterances(names: list[str], references: list[str], hypotheses: list[str], n: int = 10) -> list[dict[str, Any]]:
    """The `n` utterances with the highest WER (normalised), worst first, for the report."""
    import jiwer

    rows = []
    for name, ref, hyp in zip(names, references, hypotheses):
        r, h = normalise(ref), normalise(hyp)
        if r:
            rows.append({"file": name, "wer": round(float(jiwer.wer(r, h)), 4), "reference": ref, "hypothesis": hyp})
    return sorted(rows, key=lambda row: -row["wer"])[:n]


def _shift_right(labels: torch.Tensor, start: int, pad: int) -> torch.Tensor:
    # decoder input = [start] + labels[:-1], with -100 (ignored positions) read as padding
    out = labels.new_full(labels.shape, pad)
    out[:, 0] = start
    out[:, 1:] = labels[:, :-1].masked_fill(labels[:, :-1] == IGNORE, pad)
    return out


class SpeechSeq2SeqModel(nn.Module):
    """A Whisper backbone trained end to end on transcripts. Keys: `backbone.*`.

    Input: `{"waveform": [B, S], "labels": [B, L]}` (teacher forcing); output: token logits
    `[B, L, V]`, aligned with the labels.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, dict) or "labels" not in inputs:
            raise ConfigError("an asr model scores transcripts given as labels; to transcribe, use graft predict or graftkit.load(run).predict")
        bb = self.backbone
        features = bb.input_features(inputs["waveform"])  # (B, n_mels, frames)
        decoder_input_ids = _shift_right(inputs["labels"], bb.prompt[0], bb.eos_token_id)
        return bb.model(input_features=features, decoder_input_ids=decoder_input_ids).logits  # (B, L, V)


def _decode_inputs(inputs: Sequence[Any], sample_rate: int) -> list[torch.Tensor]:
    """Paths, waveforms or `[S]` tensors → 1-D float32 waveforms at `sample_rate`."""
    from graftkit.data.audio import decode_audio

    out = []
    for x in inputs:
        if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
            out.append(torch.from_numpy(np.ascontiguousarray(decode_audio(x, sample_rate))))
        else:
            out.append(torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1))
    return out


@register_task
class ASRTask:
    """Whisper-style speech recognition: token cross-entropy, generated transcripts, WER / CER.

    Args:
        num_beams: Beam width for decoding (1 = greedy).
        max_new_tokens: The longest transcript, in tokens.
        zero_shot: WER / CER of the starting weights on validation (measured by `check_data`).
    """

    name = "asr"
    label_kind = LabelKind.SEQUENCE
    modalities = ("audio",)
    backbone_head = "seq2seq"
    default_strategy = "finetune"
    train_metric = "token_accuracy"
    metrics = {m.name: m for m in (Metric("loss", False), Metric("perplexity", False), Metric("token_accuracy", True))}
    default_monitor = "loss"
    headline = ("wer", "cer")
    classes: list[str] = []
    num_classes = 0

    def __init__(self, *, num_beams: int = 4, max_new_tokens: int = 64, zero_shot: dict[str, Any] | None = None) -> None:
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.zero_shot = zero_shot
        self._tokens = Seq2SeqTask(num_beams=num_beams, max_new_tokens=max_new_tokens)  # token loss and metrics: the same as seq2seq's

    # --- what it is, and its graft.json entry ---------------------------------------------------

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "ASRTask":
        return cls(num_beams=settings.num_beams, max_new_tokens=settings.max_new_tokens)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ASRTask":
        return cls(**d.get("generation", {}), zero_shot=d.get("zero_shot"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "generation": {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens},
                "decoding": "greedy" if self.num_beams == 1 else f"beam search, {self.num_beams} beams", "kv_cache": True,
                "normalisation": NORMALISATION, "targets": "the transcript with [notes] removed, after the decoder prompt, then end of text",
                "zero_shot": self.zero_shot}  # fmt: skip

    def check_strategy(self, kind: str) -> None:
        if kind == "linear-probe":
            raise ConfigError("--task asr trains Whisper's decoder (its own output layer): the linear probe caches pooled features and has no decoder to train; "
                              "use --strategy finetune (or partial:N, gradual, lora)")  # fmt: skip

    def check_data(self, dataset: Any, backbone: nn.Module) -> None:
        """Before training: every transcript and clip checked at once, then the zero-shot baseline.

        Problems (one `DataError`, every file named): an empty transcript (after removing
        `[notes]`), a clip longer than the model's window (30 s for Whisper), a transcript with
        more tokens than the decoder's positions or than `--max-new-tokens`. Then the starting
        weights transcribe up to `BASELINE_LIMIT` validation clips (not for `scratch:` weights),
        and their WER / CER becomes graft.json's `task.zero_shot` and metrics.json's
        `val.zero_shot`.

        Raises:
            ConfigError: The model is not an encoder-decoder speech model.
            DataError: Every problem above.
        """
        if not hasattr(backbone, "prompt") or not hasattr(backbone, "tokenizer"):
            raise ConfigError(f"--task asr needs a Whisper model (whisper_tiny_en or hf:<a Whisper folder>); {backbone.weights.model_id} "
                              "is an audio encoder without a decoder: use --task ctc for it")  # fmt: skip
        problems: list[str] = []
        window = backbone.window_seconds
        # clips above the model's own limit are reported by plan's clip-length check, unless
        # --max-seconds raised the limit above Whisper's window: then here
        over = backbone.preprocess.max_seconds > window + 1e-6
        if over:
            problems.append(f"--max-seconds {backbone.preprocess.max_seconds:g} is longer than Whisper's {window:g} s window: "
                            f"use at most {window:g} (or leave it unset)")  # fmt: skip
        room = backbone.max_target_tokens - len(backbone.prompt)  # positions left after the prompt (end of text included)
        for split, samples in dataset.splits():
            lengths = self._token_lengths(backbone, [s.label for s in samples])
            for s, n in zip(samples, lengths):
                seconds = dataset.seconds.get(s.path, 0.0)
                if not training_text(s.label):
                    problems.append(f"{split} {s.path}: the transcript is empty: write what is said, or remove the row")
                if over and seconds > window + 1e-6:
                    problems.append(f"{split} {s.path}: {seconds:.2f} s is longer than Whisper's {window:g} s window: cut it into clips of at most {window:g} s")
                if n + 1 > room:
                    problems.append(f"{split} {s.path}: the transcript is {n} tokens, more than the decoder's {room - 1}: split the clip and its transcript")
                elif n + 1 > self.max_new_tokens:
                    problems.append(f"{split} {s.path}: the transcript is {n} tokens and decoding stops after --max-new-tokens {self.max_new_tokens}: "
                                    f"raise --max-new-tokens to at least {n + 1}")  # fmt: skip
        if problems:
            more = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
            raise DataError(problems[:20] + more, str(dataset.root))
        if backbone.weights.source != "scratch" and dataset.val:
            rows = dataset.val[:BASELINE_LIMIT]
            hyps = self.transcribe(backbone, [s.path for s in rows])
            self.zero_shot = {**error_rates([s.label for s in rows], hyps), "n": len(rows), "split": "val"}

    def _token_lengths(self, backbone: nn.Module, texts: list[str]) -> list[int]:
        tok = backbone.tokenizer
        return [len(tok.encode(" " + training_text(t), add_special_tokens=False)) if training_text(t) else 0 for t in texts]

    # --- the model, its targets, loss and metrics -----------------------------------------------

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return SpeechSeq2SeqModel(backbone)  # the pretrained output layer (the vocabulary) stays

    def head_spec(self, num_features: int, dropout: float) -> None:
        return None  # no new head: the pretrained decoder and its tied output layer train

    def encode(self, labels: list[Any]) -> torch.Tensor:
        raise ConfigError("--task asr has token targets, made with the model's tokenizer (`audio_targets`); there are no labels to encode")

    def audio_targets(self, labels: list[Any], backbone: nn.Module) -> torch.Tensor:
        """Transcripts → decoder targets `[N, L]`: the prompt after its first token, the text's
        tokens (with Whisper's leading space), end of text; -100 after that.

        Example:
            >>> task.audio_targets(["Seven."], bb)[0].tolist()
            [50362, 13248, 13, 50256]
        """
        tok = backbone.tokenizer
        rows = [backbone.prompt[1:] + tok.encode(" " + training_text(t), add_special_tokens=False) + [backbone.eos_token_id] for t in labels]
        width = max((len(r) for r in rows), default=1)
        out = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def text_loader(self, samples, tokenizer, *, max_length, batch_size, shuffle, seed=0):
        raise ConfigError("--task asr needs a Whisper model (audio in), not a text model")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._tokens.loss(logits, targets)

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        return self._tokens.batch_score(logits, targets)

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._tokens.collect(logits, targets)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float()

    def epoch_metrics(self, stats: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return self._tokens.epoch_metrics(stats, targets)

    def full_metrics(self, stats: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        return self._tokens.full_metrics(stats, targets, loss)

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        """Token metrics, then each split transcribed with the best weights and scored (WER, CER
        after normalisation), with the worst utterances for the report; validation also carries
        the zero-shot figures measured before training."""
        final = {split: self.full_metrics(*out) for split, out in outputs.items()}
        for split in final:
            rows = samples.get(split, [])
            hyps = self.transcribe(backbone, [s.path for s in rows], batch_size=batch_size)
            refs = [str(s.label) for s in rows]
            final[split].update(error_rates(refs, hyps))
            final[split]["examples"] = worst_utterances([s.path.name for s in rows], refs, hyps)
            if split == "val" and self.zero_shot:
                final[split]["zero_shot"] = self.zero_shot
        return final

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> None:
        return None

    # --- decoding, predict, card, export --------------------------------------------------------

    def transcribe(self, backbone: nn.Module, inputs: Sequence[Any], *, batch_size: int = 8) -> list[str]:
        """Transcripts of audio files or 16 kHz waveforms, with the stored decoding settings."""
        from graftkit.backbones.whisper import transcribe_waveforms

        waves = _decode_inputs(inputs, backbone.preprocess.sample_rate)
        return transcribe_waveforms(backbone, waves, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens, batch_size=batch_size)

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        """The transcript is the label (as the model writes it; scoring normalises)."""
        texts = self.transcribe(source.backbone, inputs, batch_size=batch_size)
        return [Prediction(n, t, 1.0, [(t, 1.0)]) for n, t in zip(names, texts)]

    def card(self) -> dict[str, Any]:
        how = "greedy decoding" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)"
        return {"does": f"transcribes speech (up to Whisper's 30 s window per clip) into text, {how}",
                "caveats": [f"WER and CER are computed after normalisation ({NORMALISATION}).",
                            "Transcripts can be fluent and wrong, and the model may write words that were not said: check them before relying on them."]}  # fmt: skip

    def export_spec(self) -> dict[str, Any]:
        raise ConfigError(
            "graft export does not export asr runs: Whisper transcribes with a generation loop (encoder once, then the decoder token by token "
            "with a KV cache), not a single graph. Use `graft predict RUN file.wav`, `graft serve RUN` or graftkit.load(RUN).predict([...])."
        )

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        self.export_spec()
        return 0.0, "nothing"
