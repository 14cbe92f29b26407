"""CTC speech recognition: a linear CTC head on the frames of any audio encoder.

The vocabulary is the characters of the (normalised) training transcripts, with id 0 the CTC
blank; targets are padded with -1, which is never a vocabulary id (no blank/pad mix-up).
Decoding is greedy: the best id per frame, repeats merged, blanks dropped. Word and character
error rates come from jiwer; the report lists the worst utterances with reference and hypothesis.

Before training, `check_data` looks for the usual causes of "WER stays at 1.0": transcripts that
need more output frames than the encoder gives for their clip, validation characters the
vocabulary cannot write, and clips recorded at a lower rate than the encoder's (upsampled).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError, DataError
from graftkit.tasks.base import Metric, Prediction, TaskSettings, register_task

BLANK = 0
PAD = -1
NORMALISATION = "lowercase, runs of whitespace collapsed to one space, ends stripped"


def normalise(text: str) -> str:
    """The text normalisation applied to every transcript and hypothesis (recorded in the run)."""
    return re.sub(r"\s+", " ", text.lower()).strip()


class CTCModel(nn.Module):
    """`head(backbone.forward_frames(x))`: per-frame logits `[B, T, V]`. Keys `backbone.*`, `head.*`."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Any) -> torch.Tensor:
        return self.head(self.backbone.forward_frames(x))  # (B, T, D) -> (B, T, V)


def _frames_needed(text: str) -> int:
    # CTC needs a blank between repeated characters: len + number of adjacent repeats
    return len(text) + sum(1 for a, b in zip(text, text[1:]) if a == b)


@register_task
class CTCTask:
    """Character CTC on an audio encoder's frames.

    Args:
        vocabulary: The characters, in id order (id = index + 1; 0 is the blank).
    """

    name = "ctc"
    label_kind = LabelKind.SEQUENCE
    modalities = ("audio",)
    backbone_head = "features"
    default_strategy = "finetune"
    train_metric = "cer"
    metrics = {m.name: m for m in (Metric("cer", False), Metric("wer", False), Metric("loss", False))}
    default_monitor = "cer"
    headline = ("wer", "cer")
    classes: list[str] = []

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = list(vocabulary)
        self.num_classes = len(self.vocabulary) + 1
        self._ids = {c: i + 1 for i, c in enumerate(self.vocabulary)}

    # --- what it is, and its graft.json entry ---------------------------------------------------

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "CTCTask":
        chars = sorted({c for t in train_labels for c in normalise(str(t))})
        if not chars:
            raise DataError(["the training transcripts are empty: a CTC vocabulary needs characters"])
        return cls(chars)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CTCTask":
        return cls(d["vocabulary"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "vocabulary": self.vocabulary, "blank": BLANK, "normalisation": NORMALISATION, "decoding": "greedy"}

    def check_strategy(self, kind: str) -> None:
        if kind == "linear-probe":
            raise ConfigError("--task ctc reads every frame of the encoder, and the linear probe caches pooled features: use --strategy finetune, partial:N or gradual")
        if kind == "lora":
            raise ConfigError("--task ctc does not take --strategy lora yet: use finetune, partial:N or gradual")

    def check_data(self, dataset: Any, backbone: nn.Module) -> None:
        """The pre-flight check: every problem that would keep WER at 1.0, at once.

        Raises:
            DataError: Transcripts too long for their clip's frames; val/test characters outside
                the vocabulary.
        """
        problems: list[str] = []
        rate = backbone.frame_rate
        for split, samples in dataset.splits():
            for s in samples:
                text = normalise(s.label)
                seconds = min(dataset.seconds.get(s.path, 0.0), backbone.preprocess.max_seconds)
                frames = int(seconds * rate)
                if _frames_needed(text) > frames:
                    problems.append(
                        f"{s.path}: the transcript needs {_frames_needed(text)} output frames and {backbone.weights.model_id} gives "
                        f"{frames} for this {seconds:.2f} s clip ({rate:g} frames/s): use an encoder with more frames per second or shorter transcripts"
                    )  # fmt: skip
                unknown = sorted({c for c in text if c not in self._ids})
                if unknown and split != "train":
                    problems.append(f"{split} {s.path.name}: characters {''.join(unknown)!r} are not in the vocabulary of the training transcripts: add them to train or remove them")
        if problems:
            raise DataError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []), str(dataset.root))
        low = getattr(dataset, "native_rates", {})
        slow = [r for r in low if r < backbone.preprocess.sample_rate]
        if slow:
            from graftkit.engine.progress import info

            info(f"note: clips recorded at {', '.join(map(str, sorted(slow)))} Hz are upsampled to {backbone.preprocess.sample_rate} Hz; the encoder sees no content above {min(slow) // 2} Hz")

    # --- the model, its loss and metrics --------------------------------------------------------

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        linear = nn.Linear(num_features, self.num_classes)
        return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else nn.Sequential(linear)

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return CTCModel(backbone, self.build_head(backbone.num_features, dropout))

    def head_spec(self, num_features: int, dropout: float) -> dict[str, Any]:
        return {"type": "ctc-linear", "in_features": num_features, "out_features": self.num_classes, "dropout": dropout, "blank": BLANK}

    def text_loader(self, samples, tokenizer, *, max_length, batch_size, shuffle, seed=0):
        raise ConfigError("--task ctc needs an audio model")

    def encode(self, labels: list[Any]) -> torch.Tensor:
        """Transcripts → ids `[N, L]` (L: the longest), padded with -1; characters outside the vocabulary are dropped
        (`check_data` reports them before training)."""
        rows = [[self._ids[c] for c in normalise(str(t)) if c in self._ids] for t in labels]
        width = max((len(r) for r in rows), default=0) or 1
        out = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V)
        lengths = (targets != PAD).sum(1)
        input_lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
        return F.ctc_loss(log_probs, targets.clamp_min(0), input_lengths, lengths, blank=BLANK, reduction="mean", zero_infinity=True)

    def greedy(self, ids: torch.Tensor | np.ndarray) -> list[str]:
        """Best-path ids `[N, T]` → texts: repeats merged, blanks dropped."""
        out = []
        for row in np.asarray(ids):
            keep = [int(c) for i, c in enumerate(row) if c != BLANK and (i == 0 or c != row[i - 1])]
            out.append("".join(self.vocabulary[c - 1] for c in keep if 0 < c <= len(self.vocabulary)))
        return out

    def texts(self, targets: torch.Tensor | np.ndarray) -> list[str]:
        return ["".join(self.vocabulary[c - 1] for c in row if c > 0) for row in np.asarray(targets)]

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum of per-utterance CER, count): the running training CER."""
        from jiwer import cer

        hyps, refs = self.greedy(logits.argmax(-1).cpu()), self.texts(targets.cpu())
        return torch.tensor(sum(cer(r, h) if r else float(bool(h)) for r, h in zip(refs, hyps))), len(refs)

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.argmax(-1), targets  # best path per frame (B, T), ids (B, L)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)  # (B, T, V)

    def _scores(self, refs: list[str], hyps: list[str]) -> dict[str, float]:
        import jiwer

        pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
        if not pairs:
            return {"wer": float("nan"), "cer": float("nan")}
        r, h = [p[0] for p in pairs], [p[1] for p in pairs]
        return {"wer": float(jiwer.wer(r, h)), "cer": float(jiwer.cer(r, h))}

    def epoch_metrics(self, rows: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return self._scores(self.texts(targets), self.greedy(rows))

    def full_metrics(self, rows: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        import jiwer

        refs, hyps = self.texts(targets), self.greedy(rows)
        m: dict[str, Any] = {**self._scores(refs, hyps), "n": len(refs)}
        if loss is not None:
            m["loss"] = loss
        per = sorted(((jiwer.cer(r, h) if r else 1.0, r, h) for r, h in zip(refs, hyps)), key=lambda t: -t[0])
        m["worst"] = [{"cer": round(c, 4), "reference": r, "hypothesis": h} for c, r, h in per[:5]]
        return m

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        return {split: self.full_metrics(*out) for split, out in outputs.items()}

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> dict[str, Any] | None:
        return None

    # --- predict, card, export ------------------------------------------------------------------

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        probs = source.outputs(inputs, batch_size)  # (N, T, V)
        best, ids = probs.max(-1)
        texts = self.greedy(ids)
        out = []
        for name, text, conf, row in zip(names, texts, best, ids):
            spoken = conf[row != BLANK]
            score = float(spoken.mean()) if len(spoken) else float(conf.mean())
            out.append(Prediction(name, text, score, [(text, score)]))
        return out

    def card(self) -> dict[str, Any]:
        return {"does": f"transcribes speech into text, character by character ({len(self.vocabulary)} characters, greedy CTC decoding)",
                "caveats": [f"Transcripts are normalised ({NORMALISATION}); characters never seen in training cannot be written."]}  # fmt: skip

    def export_spec(self) -> dict[str, Any]:
        return {"activation": "softmax over the last axis of logits [batch, frames, vocabulary]; greedy CTC: argmax per frame, merge repeats, drop id 0 (blank)",
                "vocabulary": ["<blank>", *self.vocabulary]}  # fmt: skip

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        if len(reference) == 0:
            return 1.0, "nothing"
        same = [a == b for a, b in zip(self.greedy(reference.argmax(-1)), self.greedy(exported.argmax(-1)))]
        return float(np.mean(same)), "greedy transcript"
