"""Text generation tasks: sequence-to-sequence (translation, summarisation) and causal LM.

Here the pretrained model keeps its own output layer (the vocabulary); the task supplies the
token-level loss, the metrics and generation. The training loop is the same as for every task:
`model(inputs) -> logits`, `task.loss(logits, targets)`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graftkit.data.labels import LabelKind
from graftkit.errors import ConfigError
from graftkit.tasks.base import Metric, Prediction, TaskSettings, register_task

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


@register_task
class Seq2SeqTask:
    """Teacher-forced token cross-entropy; BLEU and chrF on generated validation outputs.

    Args:
        num_beams: beam width for generation (1 = greedy).
        max_new_tokens: generation length limit.
    """

    name = "seq2seq"
    label_kind = LabelKind.SEQUENCE
    modalities = ("text",)
    backbone_head = "seq2seq"
    default_strategy = "finetune"
    train_metric = "token_accuracy"
    metrics = {m.name: m for m in (Metric("loss", False), Metric("perplexity", False), Metric("token_accuracy", True))}
    default_monitor = "loss"
    headline = ("bleu", "chrf", "perplexity")
    classes: list[str] = []
    num_classes = 0
    _shift = False  # seq2seq logits already align with labels

    def __init__(self, *, num_beams: int = 4, max_new_tokens: int = 64) -> None:
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_data(cls, classes: list[str], train_labels: list[Any], settings: TaskSettings) -> "Seq2SeqTask":
        return cls(num_beams=settings.num_beams, max_new_tokens=settings.max_new_tokens)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Seq2SeqTask":
        return cls(**d.get("generation", {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [], "generation": {"num_beams": self.num_beams, "max_new_tokens": self.max_new_tokens}}

    def check_strategy(self, kind: str) -> None:
        if kind == "linear-probe":
            raise ConfigError(f"--task {self.name} trains the model's own output layer: use --strategy finetune, lora, partial:N or gradual, not linear-probe")

    def build_model(self, backbone: nn.Module, dropout: float = 0.0) -> nn.Module:
        return GenerativeModel(backbone)  # the pretrained output layer (the vocabulary) stays

    def head_spec(self, num_features: int, dropout: float) -> None:
        return None

    def encode(self, labels: list[Any]) -> torch.Tensor:
        raise ConfigError(f"--task {self.name} has token targets, made by its text loader; there are no labels to encode")

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        """Source → target pairs: the targets are the target's tokens (`-100` on padding)."""
        from graftkit.data.text_loader import make_seq2seq_loader

        return make_seq2seq_loader(
            [s.text for s in samples], [s.target for s in samples], tokenizer,
            max_source_length=max_length, max_target_length=max_length, batch_size=batch_size, shuffle=shuffle, seed=seed,
        )  # fmt: skip

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

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Token logits `[B, T, V]` as they are (generation decodes them, not a head)."""
        return logits.float()

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

    def finish(self, outputs: dict[str, tuple], backbone: nn.Module, samples: dict[str, list[Any]], batch_size: int) -> dict[str, dict[str, Any]]:
        """Token metrics, then generated outputs per split scored against the references (with
        ten examples for the report)."""
        final = {split: self.full_metrics(*out) for split, out in outputs.items()}
        for split in final:
            rows = samples.get(split, [])
            hyps = self.generate(backbone, [s.text for s in rows], batch_size=batch_size)
            refs = [s.target or "" for s in rows]
            final[split].update(self.text_metrics(hyps, refs) if any(refs) else {})
            final[split]["examples"] = [{"input": s.text, "reference": r, "generated": h} for s, r, h in list(zip(rows, refs, hyps))[:10]]
        return final

    def calibrate(self, outputs: dict[str, Any], final: dict[str, dict[str, Any]], out_dir: Any) -> None:
        return None

    def predict(self, source: Any, inputs: Sequence[Any], names: list[str], top_k: int, batch_size: int) -> list[Prediction]:
        """The generated text is the label."""
        texts = self.generate(source.backbone, [str(x) for x in inputs], batch_size=batch_size)
        return [Prediction(n, t, 1.0, [(t, 1.0)]) for n, t in zip(names, texts)]

    def card(self) -> dict[str, Any]:
        return {"does": "generates text for each input",
                "caveats": ["Generated text can be fluent and wrong: check outputs before relying on them."]}  # fmt: skip

    def export_spec(self) -> dict[str, Any]:
        raise ConfigError(
            f"export supports runs with a new output layer; this is a {self.name} run, whose generation loop "
            "is not a single graph. Use `graft predict` or graftkit.load() for it."
        )

    def export_agreement(self, reference: torch.Tensor, exported: torch.Tensor, precision: str) -> tuple[float, str]:
        self.export_spec()
        return 0.0, "nothing"

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


@register_task
class CausalLMTask(Seq2SeqTask):
    """Next-token cross-entropy on plain text (or on the response of prompt/response pairs)."""

    name = "causal-lm"
    label_kind = LabelKind.CONTINUATION
    backbone_head = "causal-lm"
    headline = ("perplexity",)
    _shift = True

    def text_loader(self, samples: list[Any], tokenizer: Any, *, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> Any:
        """Plain texts, or prompt + response with the loss on the response only."""
        from graftkit.data.text_loader import make_causal_lm_loader

        responses = [s.target for s in samples] if any(s.target is not None for s in samples) else None
        return make_causal_lm_loader([s.text for s in samples], tokenizer, max_length=max_length, responses=responses, batch_size=batch_size, shuffle=shuffle, seed=seed)

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
