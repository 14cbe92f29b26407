"""How the pretrained weights are used: which layer groups train, when, and at what learning rate.

`Strategy` and `parse_strategy` import no torch (the CLI and config use them); the rest loads torch
on first use.
"""

from graftkit.strategies.spec import STRATEGY_NAMES, Strategy, parse_strategy

_LAZY = {
    "count_parameters": "freezing",
    "freeze_layer_groups": "freezing",
    "set_frozen_norms_eval": "freezing",
    "trainable_group_count": "freezing",
    "layerwise_lr_groups": "lr",
    "apply_lora": "lora",
    "lora_parameters": "lora",
    "lora_target_modules": "lora",
    "merge_lora": "lora",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"graftkit.strategies.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'graftkit.strategies' has no attribute {name!r}")


__all__ = ["STRATEGY_NAMES", "Strategy", "parse_strategy", *_LAZY]
