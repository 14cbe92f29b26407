"""`--strategy contrastive`: the body trained on pairs of labelled texts, then the probe (SetFit-style).

With a handful of labels per class a linear head on frozen sentence embeddings is limited by the
embeddings, and fine-tuning millions of weights through a new head overfits. SetFit (Tunstall et
al. 2022) instead multiplies the labels into pairs: every training text gets
`--contrastive-iterations` same-class partners (similarity 1) and as many other-class partners
(similarity 0), and the body learns to put the pooled, L2-normalised embeddings of a pair at that
cosine similarity (mean squared error, sentence-transformers' `CosineSimilarityLoss`). The
probe solver (`training/solver.py`) then fits the linear head on the new body's features.

Two stages, no second loop:
1. **pairs** (`pair_stage`): `sample_pairs` draws the pairs (seeded); `PairLoader` batches them
   as `((inputs_a, inputs_b), similarity [B])` over the texts tokenized once; `PairSimilarity` is
   the model (`cos(f(a), f(b))`, `[B]`) and `CosinePairLoss` what the loop reads of a task (loss,
   batch score). They run through `train_loop` like any training, without validation (the pairs'
   loss says nothing about the held-out classes; the probe after it is what is validated).
2. **probe** (`training/probe.py: train_probe`) on the trained body, with the feature cache off:
   the cache key names the source weights, which the pairs have moved.

The saved run is an ordinary one (`GraftModel`: the trained body + the linear head), so predict,
export and serve do not know how it was trained. Text single-label classification only; the
plan stage calls `check_contrastive` to refuse everything else with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from graftkit.engine.progress import info
from graftkit.errors import ConfigError
from graftkit.strategies import count_parameters
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.loop import LoopResult, train_loop


@dataclass(frozen=True)
class Pair:
    """Two training examples (indices) and their target cosine similarity."""

    a: int
    b: int
    similarity: float  # 1.0 same class, 0.0 different classes


def sample_pairs(labels: list[int], *, iterations: int, seed: int) -> list[Pair]:
    """SetFit-style pairs: per iteration, each example with one random same-class partner and one
    random other-class partner, in a seeded-random order.

    An example that is alone in its class is paired with itself as its positive (the loss then
    only pulls its other-class pairs apart).

    Args:
        labels: Class index per training example.
        iterations: Positive and negative pairs per example (`--contrastive-iterations`).
        seed: Seeds the draw.

    Returns:
        `2 × iterations × len(labels)` pairs, half of them positive.

    Raises:
        ConfigError: Fewer than two classes (there are no negative pairs).

    Example:
        >>> len(sample_pairs([0, 0, 1, 1], iterations=2, seed=0))
        16
    """
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    if len(by_class) < 2:
        raise ConfigError(f"--strategy contrastive needs at least two classes in the training data (negative pairs); got {len(by_class)}")
    others = {c: [j for d, members in by_class.items() if d != c for j in members] for c in by_class}
    rng = random.Random(seed)
    pairs = []
    for _ in range(iterations):
        for i, y in enumerate(labels):
            same = [j for j in by_class[int(y)] if j != i] or [i]
            pairs.append(Pair(i, rng.choice(same), 1.0))
            pairs.append(Pair(i, rng.choice(others[int(y)]), 0.0))
    rng.shuffle(pairs)
    return pairs


class PairLoader:
    """Batches `((inputs_a, inputs_b), similarity [B])` of pairs over tokenized texts.

    `texts` is any loader with `collate(indices) -> dict of [B, T]` (the text loader: each side is
    padded to its own longest text). The order of the pairs is reshuffled on every pass from
    `generator`, which the training loop reseeds per epoch.
    """

    def __init__(self, texts: Any, pairs: list[Pair], *, batch_size: int, seed: int = 0) -> None:
        self.texts, self.pairs, self.batch_size = texts, pairs, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.pairs) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor]]:
        order = torch.randperm(len(self.pairs), generator=self.generator).tolist()
        for start in range(0, len(order), self.batch_size):
            batch = [self.pairs[i] for i in order[start : start + self.batch_size]]
            a = self.texts.collate([p.a for p in batch])
            b = self.texts.collate([p.b for p in batch])
            yield (a, b), torch.tensor([p.similarity for p in batch], dtype=torch.float32)


class PairSimilarity(nn.Module):
    """Cosine similarity `[B]` of the pooled, L2-normalised features of both sides of each pair."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, pair: tuple[Any, Any]) -> torch.Tensor:
        a, b = pair
        u = F.normalize(self.backbone.forward_features(a).float(), dim=-1)  # (B, D)
        v = F.normalize(self.backbone.forward_features(b).float(), dim=-1)
        return (u * v).sum(-1)  # (B,)


class CosinePairLoss:
    """What the training loop reads of a task, for pairs: the loss (mean squared error between
    the cosine and the pair's target, sentence-transformers' `CosineSimilarityLoss`) and a running
    score (pairs on the right side of 0.5)."""

    name = "contrastive pairs"
    train_metric = "pair_accuracy"
    metrics: dict[str, Any] = {}  # no validation of the pairs: the probe after them is validated

    def loss(self, cosine: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(cosine.float(), similarity.float())

    def batch_score(self, cosine: torch.Tensor, similarity: torch.Tensor) -> tuple[torch.Tensor, int]:
        return ((cosine > 0.5) == (similarity > 0.5)).sum(), len(similarity)


def check_contrastive(task: Any, modality: str, n_classes: int) -> None:
    """Refuse `--strategy contrastive` where pairs of labelled examples make no sense.

    Raises:
        ConfigError: Not a text model, not single-label classification (regression, multi-label,
            seq2seq, causal-lm, detection, multitask), or fewer than two classes.
    """
    from graftkit.data.labels import LabelKind

    if modality != "text":
        raise ConfigError(f"--strategy contrastive trains text sentence encoders on pairs of labelled texts; this is a {modality} model: "
                          "use --strategy finetune (or linear-probe)")  # fmt: skip
    if task.label_kind is not LabelKind.CLASS or task.backbone_head != "features":
        raise ConfigError(f"--strategy contrastive pairs texts of the same class against texts of other classes, so it needs single-label "
                          f"classification; --task {task.name} has {task.label_kind.value} labels: use --strategy finetune (or lora)")  # fmt: skip
    if n_classes < 2:
        raise ConfigError(f"--strategy contrastive needs at least two classes (negative pairs); the data has {n_classes}")


def pair_stage(inputs: Any, backbone: nn.Module, task: Any, cfg: Any, engine: Any, callbacks: list) -> tuple[LoopResult, dict[str, Any]]:
    """Train the whole body on the training texts' pairs through `train_loop`.

    Returns:
        The loop's result and the stage's record (pairs, steps, settings, per-epoch rows) for
        `metrics.json["probe"]["contrastive"]`.
    """
    from graftkit.data.text_loader import make_text_loader

    labels = inputs.targets("train", task).tolist()
    pairs = sample_pairs(labels, iterations=cfg.contrastive_iterations, seed=cfg.seed)
    texts = make_text_loader(inputs.items("train"), None, backbone.tokenizer, max_length=inputs.max_length, batch_size=cfg.batch_size,
                             shuffle=False, seed=cfg.seed)  # fmt: skip
    loader = PairLoader(texts, pairs, batch_size=cfg.batch_size, seed=cfg.seed)
    model = engine.setup(PairSimilarity(backbone))
    # The pair stage's own epochs and rate; the schedule, warm-up, decay and clipping are the run's.
    pair_cfg = dataclasses.replace(cfg, epochs=cfg.contrastive_epochs, lr=cfg.contrastive_lr)
    params = [p for p in backbone.parameters()]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay, "name": "body"},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "name": "body.no_decay"}]  # fmt: skip
    optimizer, scheduler = build_optimizer(groups, pair_cfg, pair_cfg.epochs * len(loader), None)

    def prepare_epoch(epoch: int) -> None:
        for p in params:  # the whole body trains on the pairs (a quick probe may have frozen it)
            p.requires_grad_(True)
        if epoch == 0:
            trainable, frozen = count_parameters(backbone)
            info(f"contrastive: {len(pairs):,} pairs ({cfg.contrastive_iterations} same-class + {cfg.contrastive_iterations} other-class "
                 f"per text), {len(loader)} steps per epoch; parameters: {trainable:,} trainable, {frozen:,} frozen (the body)")  # fmt: skip

    result = train_loop(model, loader, None, task=CosinePairLoss(), optimizer=optimizer, scheduler=scheduler, engine=engine,
                        options=loop_options(pair_cfg, None, prepare_epoch=prepare_epoch, unit="pair", phase="contrastive"),
                        callbacks=callbacks)  # fmt: skip
    if result.stopped_early:
        info(f"contrastive: stopped: {result.stopped_early}")
    record = {
        "pairs": len(pairs),
        "positive_pairs": sum(p.similarity == 1.0 for p in pairs),
        "iterations": cfg.contrastive_iterations,
        "epochs": cfg.contrastive_epochs,
        "lr": cfg.contrastive_lr,
        "batch_size": cfg.batch_size,
        "steps": len(result.history) * math.ceil(len(loader) / cfg.accumulate),
        "loss": "cosine-similarity MSE on pooled, L2-normalised features",
        "seconds": round(result.seconds, 2),
        "history": result.history,
    }
    return result, record


def train_contrastive(inputs, backbone, head, task, cfg, train_engine, infer_engine, callbacks):
    """`--strategy contrastive`: the pair stage on the body, then the probe on its features.

    Returns:
        Like `train_probe`: (loop result, outputs per evaluated split, feature stats, the probe's
        record with the pair stage's under `contrastive`).
    """
    from graftkit.training.budget import TimeBudget
    from graftkit.training.probe import train_probe

    budget = [cb for cb in callbacks if isinstance(cb, TimeBudget)]  # checkpoints and early stopping belong to the probe
    _, record = pair_stage(inputs, backbone, task, cfg, train_engine, budget)
    # The cache key names the source weights, which the pairs have moved: the probe's features are computed afresh.
    probe_cfg = dataclasses.replace(cfg, feature_cache=False)
    result, outputs, stats, probe = train_probe(inputs, backbone, head, task, probe_cfg, infer_engine, callbacks, None)
    probe = dict(probe or {"solver": "sgd"})
    probe["contrastive"] = record
    return result, outputs, stats, probe
