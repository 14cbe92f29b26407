"""The regularised fine-tuning family of loss terms (`--regularize`), for `finetune.TERM_BUILDERS`."""

from __future__ import annotations

from typing import Any

from torch import nn

from graftkit.engine.progress import info
from graftkit.errors import ConfigError
from graftkit.strategies.regularize import regularizer
from graftkit.tasks.model import GraftModel


def regularizer_terms(cfg: Any, model: nn.Module, inputs: Any, task: Any, engine: Any) -> list[Any]:
    """`[term]` for `--regularize METHOD` (built from the model's weights now, before any step), or [].

    Raises:
        ConfigError: The task's model is not a backbone with a new head (generation, detection).
    """
    method = getattr(cfg, "regularize", None)
    if method is None:
        return []
    inner = getattr(model, "module", model)  # a DDP / Accelerate wrapper keeps the model as .module
    if type(inner) is not GraftModel:
        raise ConfigError(f"--regularize {method} needs a backbone with a new head; --task {task.name} keeps its own model: drop --regularize")
    strength = cfg.regularize_strength
    info(f"regularize: {method}, strength {strength:g}")
    return [regularizer(method, inner.backbone, strength)]


def no_backbone_decay(param_groups: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
    """L2-SP replaces the backbone's weight decay (a pull towards zero) by its pull towards the
    pretrained weights: the backbone groups get weight decay 0; the head keeps its own (L2-SP's beta)."""
    if getattr(cfg, "regularize", None) != "l2sp":
        return param_groups
    return [{**g, "weight_decay": 0.0} if not str(g.get("name", "")).startswith("head") else g for g in param_groups]
