"""Strict state-dict loading with errors that name the keys at fault."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from graftkit.errors import WeightsMismatchError

_SHOW = 5  # how many keys an error message lists of each kind


def _few(keys: list[str]) -> str:
    more = f" (and {len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str, hint: str) -> None:
    """Load every key of `module` from `state_dict`, and nothing else, or explain what is wrong.

    Args:
        module: The network to fill.
        state_dict: Tensors by name, matching `module.state_dict()` exactly.
        what: Names the weights in the message (a file, a package, a model id).
        hint: The fix to suggest, e.g. "check that --arch names the architecture of the file".

    Raises:
        WeightsMismatchError: Keys are missing or unexpected, or shapes differ.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    # Files may store keys in any order (safetensors sorts by dtype); BatchNorm counters are noise.
    unexpected = sorted(
        (k for k in state_dict if k not in own), key=lambda k: k.endswith("num_batches_tracked")
    )
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatch(es) (file vs model): {_few(wrong_shape)}")
    if problems:
        raise WeightsMismatchError(
            f"Weights from {what} do not fit the architecture: " + "; ".join(problems) + f". {hint}"
        )
    module.load_state_dict(dict(state_dict), strict=True)
