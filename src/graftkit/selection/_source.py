"""A backbone's original (source) classifier, for NCE and LEEP.

The built-in and timm image backbones are headless: the classifier they were pretrained with
(ImageNet, 1,000 classes) was dropped when they were loaded. For NCE/LEEP it is read back from the
same weights file, as a `Linear` on the pooled features — so source probabilities come from the
cached features with one matrix product, no second pass over the images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def source_classifier(backbone: nn.Module) -> tuple[nn.Linear | None, str]:
    """The classifier the backbone's weights were trained with, or None and the reason.

    Args:
        backbone: A loaded backbone (`weights.source` says where its weights came from).

    Returns:
        `(linear, "")` where `linear(features)` gives the source logits `[B, Z]`, or
        `(None, reason)` for random weights, text encoders without a classification head, or a
        classifier that is not one linear layer on the pooled features.
    """
    w = backbone.weights
    if w.source == "scratch":
        return None, "random weights have no source classifier"
    if getattr(backbone, "modality", "image") != "image":
        return None, f"{w.model_id} has no source classifier (a {backbone.modality} encoder)"
    try:
        state = _classifier_state(backbone)
    except Exception as e:  # an unreadable or unusual file only costs the two source scores
        return None, f"source classifier unreadable ({type(e).__name__}: {str(e)[:100]})"
    if state is None:
        return None, f"{w.model_id}'s weights file has no classifier"
    weight, bias = state
    if weight.ndim != 2 or weight.shape[1] != backbone.num_features:
        return None, f"{w.model_id}'s classifier is not one linear layer on its {backbone.num_features} pooled features"
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear.eval(), ""


def _classifier_state(backbone: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    w = backbone.weights
    if w.source == "builtin":
        from graftkit.sources.builtin import BUILTINS, load_builtin_state_dict

        name = next(n for n, m in BUILTINS.items() if f"timm:{m.timm_name}" == w.arch)
        stage_sizes = [len(s) for s in backbone.model.blocks]  # type: ignore[attr-defined]
        sd, _, _ = load_builtin_state_dict(BUILTINS[name], stage_sizes)
        return sd["classifier.weight"], sd.get("classifier.bias")
    path = w.extra.get("path")
    if not path:
        return None
    from graftkit.sources.files import read_state_dict, weights_file
    from graftkit.sources.loading import classifier_keys

    sd = read_state_dict(weights_file(Path(path)))
    keys = classifier_keys(w.arch, backbone.model)  # type: ignore[attr-defined]
    for prefix in ("", "module.", "model."):
        found = {k: sd[prefix + k] for k in keys if prefix + k in sd}
        weights = [k for k in found if k.endswith("weight") and found[k].ndim == 2]
        if len(found) == len(keys) and len(weights) == 1 and len(keys) <= 2:
            bias = weights[0][: -len("weight")] + "bias"
            return found[weights[0]], found.get(bias)
    return None
