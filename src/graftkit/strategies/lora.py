"""LoRA through PEFT: low-rank adapters injected into the backbone's attention projections.

The adapters are injected in place (`peft.inject_adapter_in_model`), so module names, layer
groups and the run directory's key layout stay those of the plain backbone plus `lora_A`/`lora_B`
tensors; only adapters and the new head train. `merge_lora` folds them into the base weights for
export.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from graftkit.errors import ConfigError

# Linear layers that are attention projections in common architectures (a fallback when neither
# the backbone nor PEFT's table names them): BERT query/value, GPT-2 c_attn, T5 q/v, BART/Llama
# q_proj/v_proj, DistilBERT q_lin/v_lin, timm ViT qkv.
_ATTENTION_NAMES = re.compile(r"(^|\.)(query|value|c_attn|q|v|q_proj|v_proj|q_lin|v_lin|qkv|query_proj|value_proj)$")


def lora_target_modules(backbone: nn.Module) -> list[str]:
    """Names (last component) of the Linear layers that get adapters, found per architecture."""
    if hasattr(backbone, "lora_target_modules"):
        targets = list(backbone.lora_target_modules())
        if targets:
            return targets
    found = sorted({name.rsplit(".", 1)[-1] for name, m in backbone.named_modules() if isinstance(m, nn.Linear) and _ATTENTION_NAMES.search(name)})
    if not found:
        arch = getattr(getattr(backbone, "weights", None), "arch", type(backbone).__name__)
        raise ConfigError(
            f"--strategy lora needs attention layers to adapt, and {arch} has none that graftkit recognises; "
            "use --strategy finetune or partial:N for this model"
        )
    return found


def apply_lora(backbone: nn.Module, *, r: int, alpha: int, dropout: float, targets: list[str] | None = None) -> dict[str, Any]:
    """Inject LoRA adapters into `backbone` in place; return the settings (for graft.json).

    Every parameter but the adapters is frozen; the caller trains adapters + head.
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets = targets or lora_target_modules(backbone)
    target = getattr(backbone, "model", backbone)  # HF backbones wrap the transformers model
    # GPT-2's projections are transformers' Conv1D (weights stored transposed): PEFT must know.
    fan_in_fan_out = any(type(m).__name__ == "Conv1D" and name.rsplit(".", 1)[-1] in targets for name, m in target.named_modules())
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none", fan_in_fan_out=fan_in_fan_out)
    inject_adapter_in_model(config, target)
    for name, p in backbone.named_parameters():
        p.requires_grad_("lora_" in name)
    return {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": targets}


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if "lora_" in name]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the plain layer back (for export)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model
