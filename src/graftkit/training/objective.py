"""The training objective of one batch: the task's loss plus extra terms.

Domain adaptation (a domain head on target features, CORAL, entropy), regularised fine-tuning
(L2-SP, BSS, DELTA) and multitask weighting all add terms to the same objective, through the loop's
one seam (`LoopOptions.objective`). A term sees the batch's pooled features and logits, so terms
that need features don't run the backbone twice; a term that needs other data (the target domain's
unlabelled batches) keeps its own iterator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class TermInput:
    """What a loss term sees of one training batch."""

    model: nn.Module
    inputs: Any
    targets: Any
    features: torch.Tensor  # the backbone's pooled features [B, D]
    logits: torch.Tensor
    step: int  # 0-based training batch index over the run (for schedules such as DANN's coefficient)


class LossTerm(Protocol):
    """One extra term of the training loss; `name` labels it in the logs (`train_<name>`)."""

    name: str

    def __call__(self, batch: TermInput) -> torch.Tensor: ...


@dataclass
class Objective:
    """`task.loss(head(features), targets) + Σ term(batch)`, as `LoopOptions.objective` wants it."""

    task: Any
    terms: list[LossTerm]
    step: int = 0
    last: dict[str, float] = field(default_factory=dict)
    """Each term's value on the last batch (plain floats, for logs and tests)."""

    def parameters(self) -> list[nn.Parameter]:
        """The terms' own trainable parameters (a domain head, loss weights): they join the optimizer."""
        return [p for term in self.terms if isinstance(term, nn.Module) for p in term.parameters() if p.requires_grad]

    def __call__(self, model: nn.Module, inputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
        inner = getattr(model, "module", model)  # a DDP / Accelerate wrapper keeps the model as .module
        features = inner.backbone.forward_features(inputs)
        logits = inner.head(features)
        loss = self.task.loss(logits.float(), targets)
        batch = TermInput(inner, inputs, targets, features, logits, self.step)
        for term in self.terms:
            value = term(batch)
            self.last[term.name] = float(value.detach())
            loss = loss + value
        self.step += 1
        return loss, logits


TermBuilder = Callable[..., list[LossTerm]]
"""`builder(cfg, model, inputs, task, engine) -> terms` for one family of terms (none when its
options are off)."""


def build_objective(cfg: Any, model: nn.Module, inputs: Any, task: Any, engine: Any, builders: list[TermBuilder]) -> Objective | None:
    """The batch objective from every family's terms, or None (the loop's plain task loss) when no
    family adds one."""
    terms = [term for builder in builders for term in builder(cfg, model, inputs, task, engine)]
    return Objective(task, terms) if terms else None
