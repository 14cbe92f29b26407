"""Text generation tasks: sequence-to-sequence (translation, summarisation) and causal LM.

Here the pretrained model keeps its own output layer (the vocabulary); the task supplies the
token-level loss, the metrics and generation. The training loop is the same as for every task:
`model(inputs) -> logits`, `task.loss(logits, targets)`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

IGNORE = -100  # label value that the loss skips (padding, prompt tokens)


class GenerativeModel(nn.Module):
    """A pretrained encoder-decoder or decoder with its language-model head. Keys: `backbone.*`."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        model = self.backbone.model
        if self.backbone.head_kind == "seq2seq":
            labels = inputs["labels"]
            if hasattr(model, "prepare_decoder_input_ids_from_labels"):
                decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_input_ids)
            else:
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels)
        else:
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return out.logits  # (B, T, V)


class Seq2SeqTask:
    """Teacher-forced token cross-entropy; BLEU and chrF on generated validation outputs.

    Args:
        num_beams: beam width for generation (1 = greedy).
        max_new_tokens: generation length limit.
    """

    name = "seq2seq"
    train_metric = "token_accuracy"
    default_monitor = "loss"
    metric_names = ("loss", "perplexity", "token_accuracy")
    classes: list[str] = []
    num_classes = 0
    _shift = False  # seq2seq logits already align with labels

    def __init__(self, *, num_beams: int = 4, max_new_tokens: int = 64) -> None:
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "generation": {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens}}

    def _align(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._shift:  # causal LM: position t predicts token t + 1
            return logits[:, :-1], labels[:, 1:]
        return logits, labels

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, labels = self._align(logits, targets)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)

    def batch_score(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(correct next tokens, scored tokens)."""
        logits, labels = self._align(logits, targets)
        mask = labels != IGNORE
        return ((logits.argmax(-1) == labels) & mask).sum(), int(mask.sum())

    def collect(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sequence: (summed negative log-likelihood, correct tokens, scored tokens) `[B, 3]`."""
        logits, labels = self._align(logits.float(), targets)
        mask = labels != IGNORE
        nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none") * mask  # (B, T)
        correct = (logits.argmax(-1) == labels) & mask
        stats = torch.stack([nll.sum(1), correct.sum(1).float(), mask.sum(1).float()], dim=1)
        return stats, torch.zeros(len(stats))

    def epoch_metrics(self, stats: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        tokens = max(float(stats[:, 2].sum()), 1.0) if len(stats) else 1.0
        nll = float(stats[:, 0].sum()) / tokens if len(stats) else float("nan")
        return {"perplexity": float(math.exp(min(nll, 50.0))), "token_accuracy": float(stats[:, 1].sum()) / tokens if len(stats) else 0.0}

    def full_metrics(self, stats: np.ndarray, targets: np.ndarray, loss: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {k: round(v, 6) for k, v in self.epoch_metrics(stats, targets).items()}
        if loss is not None:
            out["loss"] = round(float(loss), 6)
        out["n"] = int(len(stats))
        return out

    def generate(self, backbone: nn.Module, texts: list[str], *, batch_size: int = 16, max_length: int | None = None) -> list[str]:
        """Generate one output per input text with the stored settings (beam or greedy)."""
        return generate(backbone, texts, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens, batch_size=batch_size, max_length=max_length)

    def text_metrics(self, hypotheses: list[str], references: list[str]) -> dict[str, float]:
        """Corpus BLEU and chrF (sacrebleu's defaults, so figures compare with published ones)."""
        import sacrebleu

        return {
            "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 4),
            "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 4),
        }


class CausalLMTask(Seq2SeqTask):
    """Next-token cross-entropy on plain text (or on the response of prompt/response pairs)."""

    name = "causal-lm"
    _shift = True

    def text_metrics(self, hypotheses: list[str], references: list[str]) -> dict[str, float]:
        return {}  # perplexity is the measure; generations are shown in the report


@torch.inference_mode()
def generate(
    backbone: nn.Module,
    texts: list[str],
    *,
    num_beams: int = 4,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    max_length: int | None = None,
) -> list[str]:
    """Generate text for each input with a seq2seq or causal-LM backbone.

    Decoders see their prompt left-padded (generation continues from the last real token), and
    only the new tokens are decoded.
    """
    model, tok = backbone.model, backbone.tokenizer
    max_length = max_length or backbone.preprocess.max_length
    decoder = backbone.head_kind == "causal-lm"
    was_training = model.training
    model.eval()
    side = tok.padding_side
    out: list[str] = []
    try:
        tok.padding_side = "left" if decoder else side
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            ids = model.generate(
                **enc,
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            if decoder:
                ids = ids[:, enc["input_ids"].shape[1] :]
            out.extend(t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True))
    finally:
        tok.padding_side = side
        model.train(was_training)
    return out
