"""How the pretrained weights are used: which layer groups train, when, and at what learning rate."""

from graftkit.strategies.freezing import (
    Strategy,
    count_parameters,
    freeze_layer_groups,
    parse_strategy,
    set_frozen_norms_eval,
    trainable_group_count,
)
from graftkit.strategies.lr import layerwise_lr_groups

__all__ = [
    "Strategy",
    "parse_strategy",
    "freeze_layer_groups",
    "set_frozen_norms_eval",
    "trainable_group_count",
    "count_parameters",
    "layerwise_lr_groups",
]
