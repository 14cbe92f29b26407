"""Multitask loss weighting (`--task-weighting`), as loss terms of the training objective.

The objective's task loss of a multitask run is the sum of the tasks' masked losses (`equal`). The
other weightings are terms that turn that sum into their own loss:

- `uncertainty` (Kendall, Gal & Cipolla, CVPR 2018), in LibMTL's form: the loss becomes
  `sum_t L_t / (2 exp(s_t)) + s_t / 2` with one learnable log-variance `s_t` per task. The `s_t`
  live in the head (`MultiHead.log_vars`), so they train with it and are saved in
  model.safetensors; the term adds `that - sum_t L_t`.
- `pcgrad` (Yu et al., NeurIPS 2020, "Gradient surgery for multi-task learning"): each task's
  gradient on the shared backbone's trainable weights is projected off the normal plane of every
  other task's gradient it conflicts with (negative dot product; the others in a random order,
  seeded by the step), and the projected gradients are summed. It is a surrogate term
  `sum_p <p, (g_pcgrad - g_sum)_p>` with the correction held constant, whose gradient added to the
  equal sum's is exactly the projected gradient on the backbone; the heads keep their own tasks'
  gradients. It costs one extra backward pass through the backbone per task.
- `pcgrad-rep`: the same projection on the gradients with respect to the shared representation
  (the backbone's pooled features of the batch, flattened `[B * D]`) instead of the backbone's
  weights: LibMTL's `rep_grad=True` form, as in MGDA-UB (Sener & Koltun, NeurIPS 2018). The
  surrogate term is `<z, g_pcgrad - g_sum>` with the correction held constant, so one ordinary
  backward carries `J^T g_pcgrad` into the backbone. The per-task gradients only run back through
  the heads, so it costs about what `equal` costs; it is an approximation of `pcgrad` (conflicts are
  judged on the features, not on the weights).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graftkit.tasks.multitask import MultiTask


class UncertaintyWeighting:
    """`sum_t L_t / (2 exp(s_t)) + s_t / 2 - sum_t L_t`, with `s_t = model.head.log_vars[t]`."""

    name = "uncertainty"

    def __init__(self, task: MultiTask) -> None:
        self.task = task

    def __call__(self, batch: Any) -> torch.Tensor:
        losses = torch.stack(self.task.task_losses(batch.logits.float(), batch.targets))  # (T,)
        s = batch.model.head.log_vars  # (T,) learnable log-variances
        return (losses / (2 * s.exp()) + s / 2).sum() - losses.sum()


class PCGrad:
    """The surrogate term whose gradient turns the equal sum's backbone gradient into PCGrad's."""

    name = "pcgrad"

    def __init__(self, task: MultiTask, seed: int = 0) -> None:
        self.task = task
        self.seed = seed

    def __call__(self, batch: Any) -> torch.Tensor:
        shared = [p for p in batch.model.backbone.parameters() if p.requires_grad]
        losses = self.task.task_losses(batch.logits.float(), batch.targets)
        if not shared or len(losses) < 2:
            return batch.logits.sum() * 0.0
        grads = [self._flat(torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True), shared) for loss in losses]
        corrected = project_conflicting(grads, torch.Generator().manual_seed(self.seed + batch.step))
        delta = corrected - torch.stack(grads).sum(0)  # (P,) held constant: the term's gradient is exactly this
        term, start = torch.zeros((), device=delta.device), 0
        for p in shared:
            n = p.numel()
            term = term + (p * delta[start : start + n].view_as(p).to(p.dtype)).sum()
            start += n
        return term

    @staticmethod
    def _flat(grads: tuple[torch.Tensor | None, ...], params: list[nn.Parameter]) -> torch.Tensor:
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params)])


class PCGradRep:
    """PCGrad on the shared representation: the surrogate `<z, (g_pcgrad - g_sum)>` on the pooled
    features `z`, whose gradient through the backbone is `J^T (g_pcgrad - g_sum)`."""

    name = "pcgrad-rep"

    def __init__(self, task: MultiTask, seed: int = 0) -> None:
        self.task = task
        self.seed = seed

    def __call__(self, batch: Any) -> torch.Tensor:
        z = batch.features
        losses = self.task.task_losses(batch.logits.float(), batch.targets)
        if not z.requires_grad or len(losses) < 2:  # a frozen backbone: nothing shared trains
            return batch.logits.sum() * 0.0
        grads = [g.reshape(-1).float() for g in (torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses)]
        corrected = project_conflicting(grads, torch.Generator().manual_seed(self.seed + batch.step))
        delta = (corrected - torch.stack(grads).sum(0)).view_as(z).to(z.dtype)  # held constant
        return (z * delta).sum()


def project_conflicting(grads: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """PCGrad (Yu et al. 2020, Algorithm 1): each gradient minus its projections on the others it
    conflicts with, taken in a random order; the sum of the projected gradients.

    Args:
        grads: One flat gradient `[P]` per task.
        generator: Draws each task's order of the others.

    Example:
        >>> project_conflicting([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])], torch.Generator())
        tensor([0.5000, 1.5000])
    """
    out = []
    for i, g in enumerate(grads):
        g = g.clone()
        others = [j for j in torch.randperm(len(grads), generator=generator).tolist() if j != i]
        for j in others:
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g = g - dot / grads[j].pow(2).sum().clamp_min(1e-20) * grads[j]
        out.append(g)
    return torch.stack(out).sum(0)


def weighting_terms(cfg: Any, model: nn.Module, inputs: Any, task: Any, engine: Any) -> list[Any]:
    """`[term]` for `--task-weighting uncertainty | pcgrad` on a multitask run, else []."""
    weighting = getattr(cfg, "task_weighting", "equal")
    if weighting == "equal" or not isinstance(task, MultiTask):
        return []
    if weighting == "uncertainty":
        return [UncertaintyWeighting(task)]
    return [PCGradRep(task, seed=cfg.seed) if weighting == "pcgrad-rep" else PCGrad(task, seed=cfg.seed)]
