"""Gradient (activation) checkpointing: recompute activations in the backward pass instead of
keeping them, trading about a third more compute for much less activation memory when fine-tuning
large models on a GPU (`graft train --grad-checkpointing`).

Through each library's own switch: transformers' `activation_checkpointing_enable()` (called
`gradient_checkpointing_enable()` before transformers 5) and timm's `set_grad_checkpointing()`.
A backbone that has neither is refused, never trained without it silently.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graftkit.errors import ConfigError


def enable_grad_checkpointing(backbone: nn.Module) -> str:
    """Turn on gradient checkpointing in `backbone`'s underlying model.

    Args:
        backbone: A graftkit backbone; its library model is `.model` (timm, transformers,
            torchvision) or `.encoder` (audio), or the backbone itself.

    Returns:
        Which switch was used, for the log and graft.json.

    Raises:
        ConfigError: The model supports neither switch; the message names the model and the fix.

    Example:
        >>> enable_grad_checkpointing(load_backbone("hf:bert-base-uncased"))
        'transformers activation_checkpointing_enable(use_reentrant=False)'
    """
    for module in _candidates(backbone):
        if callable(getattr(module, "activation_checkpointing_enable", None)) or callable(getattr(module, "gradient_checkpointing_enable", None)):
            if not getattr(module, "supports_gradient_checkpointing", False):
                break
            switch = "activation_checkpointing_enable" if hasattr(module, "activation_checkpointing_enable") else "gradient_checkpointing_enable"
            kwargs_name = "activation_checkpointing_kwargs" if switch == "activation_checkpointing_enable" else "gradient_checkpointing_kwargs"
            # Non-reentrant checkpointing: gradients reach LoRA adapters and partly frozen models
            # without `enable_input_require_grads`.
            getattr(module, switch)(**{kwargs_name: {"use_reentrant": False}})
            return f"transformers {switch}(use_reentrant=False)"
        if callable(getattr(module, "set_grad_checkpointing", None)):
            try:
                module.set_grad_checkpointing(True)
            except (AssertionError, NotImplementedError):  # timm models without support assert on enable=True
                break
            return "timm set_grad_checkpointing()"
    arch = getattr(getattr(backbone, "weights", None), "arch", type(backbone).__name__)
    raise ConfigError(
        f"--grad-checkpointing: {arch} supports neither transformers' activation/gradient checkpointing nor timm's "
        "set_grad_checkpointing(); drop --grad-checkpointing, or lower memory with a smaller --batch-size and --accumulate"
    )


def _candidates(backbone: nn.Module) -> list[Any]:
    """The backbone's library model(s), outermost first (a PEFT-wrapped model: the wrapper, then its base)."""
    out = []
    for name in ("model", "encoder"):
        inner = getattr(backbone, name, None)
        if isinstance(inner, nn.Module):
            out.append(inner)
            base = getattr(inner, "base_model", None)
            base = getattr(base, "model", base)
            if isinstance(base, nn.Module) and base is not inner:
                out.append(base)
    out.append(backbone)
    return out
