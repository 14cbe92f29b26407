"""Tokenized text batches: tokenize once up front, then batch with dynamic padding.

Every text is tokenized when the loader is made (fast tokenizers do a whole data set in one
call); a batch is padded only to its own longest sequence. Training loaders group texts of
similar length ("bucketing": a seeded shuffle, then a sort by length inside chunks of ~50
batches, then a shuffle of the batch order), which cuts padding without making batches
predictable; which batches an epoch yields is a function of `loader.generator`'s seed only, and
the training loop reseeds it every epoch. Evaluation loaders sort by length and record `order`,
so `restore_order` puts predictions back in sample order.

Labels for language-model losses use -100 where no loss is taken (padding; the prompt of a
prompt/response pair), as transformers' models expect.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "TextLoader",
    "make_text_loader",
    "make_seq2seq_loader",
    "make_causal_lm_loader",
    "restore_order",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100
"""Label value on which transformers' losses take no loss."""
_CHUNK_BATCHES = 50  # bucketing sorts by length inside chunks of this many batches

_Rows = TypeVar("_Rows", torch.Tensor, np.ndarray, list)


class TextLoader:
    """An iterable of `(inputs, targets)` batches over pre-tokenized examples.

    `inputs` is a dict of `[B, T]` int64 tensors (`input_ids`, `attention_mask`, and `labels` for
    language-model losses), padded to the batch's longest example; `targets` holds the rows of
    the targets tensor that belong to the batch (or the padded `labels`).

    Args:
        items: One dict of token-id lists per example (`input_ids`, `attention_mask`, ...).
        targets: `[N, ...]` targets, or None to use each batch's padded `labels` as targets.
        pad_values: Padding value per key (`input_ids`: the pad token, `attention_mask`: 0,
            `labels`: -100).
        batch_size: Examples per batch.
        shuffle: Reshuffle every epoch (training); else a fixed order (evaluation).
        seed: Seeds `generator`.
        bucket: Group examples of similar length.
        truncated: How many examples were cut at the maximum length.

    Example:
        >>> loader = make_text_loader(texts, labels, tokenizer, max_length=128, batch_size=32, shuffle=True)
        >>> for inputs, targets in loader:
        ...     logits = head(backbone.forward_features(inputs))
    """

    def __init__(self, items: list[dict[str, list[int]]], targets: torch.Tensor | None, *,
                 pad_values: dict[str, int], batch_size: int, shuffle: bool, seed: int = 0,
                 bucket: bool = True, truncated: int = 0) -> None:  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if targets is not None and len(targets) != len(items):
            raise ValueError(f"{len(items)} examples but {len(targets)} targets")
        self.items = items
        self.targets = targets
        self.pad_values = dict(pad_values)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket = bucket
        self.truncated = truncated
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.lengths = [len(item["input_ids"]) + len(item.get("labels", ())) for item in items]
        self.order: list[int] = [] if shuffle else self._eval_order()

    def __len__(self) -> int:
        """Number of batches."""
        return math.ceil(len(self.items) / self.batch_size)

    def _eval_order(self) -> list[int]:
        n = len(self.items)
        if not self.bucket:
            return list(range(n))
        return sorted(range(n), key=lambda i: (-self.lengths[i], i))  # longest first: memory peaks early

    def _train_batches(self) -> list[list[int]]:
        n, size = len(self.items), self.batch_size
        perm = torch.randperm(n, generator=self.generator).tolist()
        if self.bucket:
            chunk = size * _CHUNK_BATCHES
            perm = [i for start in range(0, n, chunk) for i in sorted(perm[start : start + chunk], key=self.lengths.__getitem__)]
        batches = [perm[i : i + size] for i in range(0, n, size)]
        if self.bucket:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=self.generator).tolist()]
        return batches

    def batches(self) -> list[list[int]]:
        """The example indices of each batch, in iteration order; training loaders draw a new plan
        from `generator` on every call (as iterating does)."""
        if self.shuffle:
            plan = self._train_batches()
            self.order = [i for b in plan for i in b]
            return plan
        return [self.order[i : i + self.batch_size] for i in range(0, len(self.order), self.batch_size)]

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for indices in self.batches():
            inputs = self.collate(indices)
            if self.targets is not None:
                targets = self.targets[torch.tensor(indices, dtype=torch.long)]
            else:
                targets = inputs["labels"]
            yield inputs, targets

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The padded `[B, T]` inputs of the examples at `indices` (in that order); contrastive
        pair batches (`training/contrastive.py`) draw both sides of each pair through it."""
        out: dict[str, torch.Tensor] = {}
        for key, pad in self.pad_values.items():
            rows = [self.items[i][key] for i in indices]
            width = max(len(r) for r in rows)
            batch = torch.full((len(rows), width), pad, dtype=torch.long)
            for j, r in enumerate(rows):
                batch[j, : len(r)] = torch.tensor(r, dtype=torch.long)
            out[key] = batch
        return out


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has no pad token (nor an end-of-sequence token to pad with)")
    return int(pad)


def untruncated_ids(tokenizer: Any, texts: list[str], **kwargs: Any) -> list[list[int]]:
    """Token ids of each text, not cut: to measure lengths. transformers' "sequence length is longer
    than the specified maximum" warning is silenced: graftkit truncates on purpose, and counts it."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True  # transformers warns once per key
    return list(tokenizer(list(texts), truncation=False, return_token_type_ids=False, return_attention_mask=False, **kwargs)["input_ids"])


def _encode(tokenizer: Any, texts: list[str], max_length: int, **kwargs: Any) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each text, cut at `max_length`, and whether each was cut."""
    if not texts:
        return [], []
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_token_type_ids=False,
                    return_attention_mask=False, **kwargs)  # fmt: skip
    ids = [list(x) for x in enc["input_ids"]]
    encodings = getattr(enc, "encodings", None)
    if encodings:  # fast tokenizers keep what truncation cut off
        cut = [bool(e.overflowing) for e in encodings]
    else:  # slow tokenizers: compare with the untruncated length
        cut = [len(a) > len(b) for a, b in zip(untruncated_ids(tokenizer, texts, **kwargs), ids)]
    return ids, cut


def make_text_loader(
    texts: list[str],
    targets: torch.Tensor | None,
    tokenizer: Any,
    *,
    max_length: int,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    bucket: bool = True,
) -> TextLoader:
    """Batches of `({"input_ids", "attention_mask"}, targets)` for classification/regression heads.

    Args:
        texts: The texts.
        targets: `[N]` class ids, `[N, C]` multi-label targets, `[N]` floats, ...; None for
            unlabelled texts (targets of -1).
        tokenizer: A (fast) transformers tokenizer with a pad token.
        max_length: Texts are cut at this many tokens (special tokens included).
        batch_size: Examples per batch.
        shuffle: Training order (reshuffled per epoch) or evaluation order (sorted by length,
            recorded in `order`).
        seed: Seeds the loader's generator.
        bucket: Group texts of similar length to reduce padding.

    Returns:
        The loader; `loader.truncated` counts the texts that were cut.

    Example:
        >>> loader = make_text_loader(["good", "bad film"], torch.tensor([1, 0]), tok,
        ...                           max_length=128, batch_size=2, shuffle=False)
        >>> inputs, y = next(iter(loader)); inputs["input_ids"].shape
        torch.Size([2, 4])
    """
    ids, cut = _encode(tokenizer, texts, max_length)
    items = [{"input_ids": x, "attention_mask": [1] * len(x)} for x in ids]
    if targets is None:
        targets = torch.full((len(items),), -1, dtype=torch.long)
    return TextLoader(items, targets, pad_values={"input_ids": _pad_id(tokenizer), "attention_mask": 0},
                      batch_size=batch_size, shuffle=shuffle, seed=seed, bucket=bucket,
                      truncated=sum(cut))  # fmt: skip


def make_seq2seq_loader(
    sources: list[str],
    targets: list[str],
    tokenizer: Any,
    *,
    max_source_length: int,
    max_target_length: int,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
) -> TextLoader:
    """Batches for encoder-decoder training: `({"input_ids", "attention_mask", "labels"}, labels)`.

    `labels` are the target token ids (as the tokenizer's `text_target` mode encodes them,
    end-of-sequence included) padded with -100; the model builds its decoder inputs from them.

    Args:
        sources: Input texts.
        targets: Target texts, one per source.
        tokenizer: The seq2seq model's tokenizer.
        max_source_length: Sources are cut at this many tokens.
        max_target_length: Targets are cut at this many tokens.
        batch_size: Pairs per batch.
        shuffle: Training (bucketed, reshuffled per epoch) or evaluation order (sorted by length).
        seed: Seeds the loader's generator.

    Returns:
        The loader; `loader.truncated` counts pairs whose source or target was cut.
    """
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    src, src_cut = _encode(tokenizer, sources, max_source_length)
    if targets:
        enc = tokenizer(text_target=list(targets), truncation=True, max_length=max_target_length,
                        return_token_type_ids=False, return_attention_mask=False)  # fmt: skip
        tgt = [list(x) for x in enc["input_ids"]]
        tgt_cut = [bool(e.overflowing) for e in enc.encodings] if getattr(enc, "encodings", None) else [False] * len(tgt)
    else:
        tgt, tgt_cut = [], []
    items = [{"input_ids": s, "attention_mask": [1] * len(s), "labels": t} for s, t in zip(src, tgt)]
    pads = {"input_ids": _pad_id(tokenizer), "attention_mask": 0, "labels": IGNORE_INDEX}
    truncated = sum(a or b for a, b in zip(src_cut, tgt_cut))
    return TextLoader(items, None, pad_values=pads, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      truncated=truncated)  # fmt: skip


def make_causal_lm_loader(
    texts: list[str],
    tokenizer: Any,
    *,
    max_length: int,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    responses: list[str] | None = None,
) -> TextLoader:
    """Batches for causal language modelling: `({"input_ids", "attention_mask", "labels"}, labels)`.

    Each text ends with the end-of-sequence token (so the model learns to stop). `labels` are
    the input ids with padding set to -100 (transformers shifts them inside the model). With
    `responses`, each text is a prompt and the response is appended: only response tokens (and
    the final end-of-sequence) carry a loss. A pair longer than `max_length` keeps the start of
    the response (at least half the length) and the end of the prompt.

    Args:
        texts: Texts, or prompts when `responses` is given.
        tokenizer: The decoder's tokenizer.
        max_length: Examples are cut at this many tokens.
        batch_size: Examples per batch.
        shuffle: Training (bucketed, reshuffled per epoch) or evaluation order (sorted by length).
        seed: Seeds the loader's generator.
        responses: One response per prompt, or None.

    Returns:
        The loader; `loader.truncated` counts the examples that were cut.
    """
    if responses is not None and len(responses) != len(texts):
        raise ValueError(f"{len(texts)} prompts but {len(responses)} responses")
    eos = tokenizer.eos_token_id
    tail = [eos] if eos is not None else []
    items: list[dict[str, list[int]]] = []
    truncated = 0
    if responses is None:
        ids, cut = _encode(tokenizer, texts, max(1, max_length - len(tail)))
        for x, was_cut in zip(ids, cut):
            seq = x + tail if not (x and tail and x[-1] == eos) else x
            items.append({"input_ids": seq, "attention_mask": [1] * len(seq), "labels": list(seq)})
            truncated += was_cut
    else:
        prompts = tokenizer(list(texts), return_token_type_ids=False, return_attention_mask=False)["input_ids"]
        answers = tokenizer(list(responses), add_special_tokens=False, return_token_type_ids=False,
                            return_attention_mask=False)["input_ids"] if responses else []  # fmt: skip
        for p, r in zip(prompts, answers):
            p, r = list(p), list(r) + tail
            if len(p) + len(r) > max_length:
                truncated += 1
                keep_r = min(len(r), max(max_length - len(p), max_length // 2))
                r = r[:keep_r]
                p = p[len(p) - (max_length - keep_r) :] if max_length - keep_r > 0 else []
            seq = p + r
            items.append({"input_ids": seq, "attention_mask": [1] * len(seq),
                          "labels": [IGNORE_INDEX] * len(p) + r})  # fmt: skip
    pads = {"input_ids": _pad_id(tokenizer), "attention_mask": 0, "labels": IGNORE_INDEX}
    return TextLoader(items, None, pad_values=pads, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      truncated=truncated)  # fmt: skip


def restore_order(rows: _Rows, order: list[int]) -> _Rows:
    """Undo an evaluation loader's length sort: `result[order[i]] = rows[i]`.

    Args:
        rows: Per-example outputs concatenated in iteration order (tensor, array or list).
        order: `loader.order`.

    Returns:
        The same rows in sample order, same type.

    Example:
        >>> logits = torch.cat([model(x) for x, _ in loader])
        >>> logits = restore_order(logits, loader.order)
    """
    if len(rows) != len(order):
        raise ValueError(f"{len(rows)} rows but the order has {len(order)} entries")
    if isinstance(rows, torch.Tensor):
        out = torch.empty_like(rows)
        out[torch.as_tensor(order, dtype=torch.long, device=rows.device)] = rows
        return out
    if isinstance(rows, np.ndarray):
        arr = np.empty_like(rows)
        arr[np.asarray(order, dtype=np.int64)] = rows
        return arr
    result: list[Any] = [None] * len(order)
    for i, j in enumerate(order):
        result[j] = rows[i]
    return result  # type: ignore[return-value]
