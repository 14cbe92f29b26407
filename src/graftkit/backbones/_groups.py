"""Turn a per-parameter group assignment into `layer_groups()`: ordered lists of modules.

Both adapters describe their groups the way timm does, as a function from a parameter name to a
group ordinal; this module collapses that into the largest modules whose parameters all fall in
one group, so a ResNet reads `[[conv1, bn1], [layer1], [layer2], [layer3], [layer4]]`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable

from torch import nn


class ParameterView(nn.Module):
    """A detached module holding references to parameters that live directly on a parent module.

    Some parameters are owned by a module whose children belong to other groups (a ViT's
    `cls_token` sits on the root next to every block). Such parameters are exposed through a view:
    the *same* `nn.Parameter` objects, so `requires_grad_` and optimizers act on the real
    weights, but the view is not registered in the backbone, so state-dict keys do not change.
    """

    def __init__(self, owner_name: str, params: dict[str, nn.Parameter]) -> None:
        super().__init__()
        self.owner_name = owner_name
        for name, param in params.items():
            self.register_parameter(name, param)

    def extra_repr(self) -> str:
        prefix = f"{self.owner_name}." if self.owner_name else ""
        return ", ".join(prefix + n for n in self._parameters)


def collapse_groups(model: nn.Module, group_of: Callable[[str], Hashable]) -> list[list[nn.Module]]:
    """Group a model's modules by the group of their parameters, largest modules first.

    Args:
        model: The network whose parameters are grouped.
        group_of: Maps a parameter name (as in `model.named_parameters()`) to a sortable group
            ordinal; groups are returned in ascending ordinal order (input -> output).

    Returns:
        One list of modules per group. Every parameter of `model` appears in exactly one group.

    Example:
        >>> collapse_groups(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), lambda n: int(n[0]))
        [[Linear(...)], [Linear(...)]]
    """
    # Keyed by identity: a tied parameter has one name in `model` but another inside a child.
    gid = {id(param): group_of(name) for name, param in model.named_parameters()}
    out: dict[Hashable, list[nn.Module]] = defaultdict(list)

    def visit(module: nn.Module, prefix: str) -> None:
        groups = {gid[id(p)] for p in module.parameters()}
        if not groups:
            return
        if len(groups) == 1:
            out[groups.pop()].append(module)
            return
        direct: dict[Hashable, dict[str, nn.Parameter]] = defaultdict(dict)
        for name, param in module.named_parameters(recurse=False):
            direct[gid[id(param)]][name] = param
        for g, params in direct.items():
            out[g].append(ParameterView(prefix.rstrip("."), params))
        for name, child in module.named_children():
            visit(child, f"{prefix}{name}.")

    visit(model, "")
    return [out[g] for g in sorted(out)]


def top_level_group_of(model: nn.Module) -> Callable[[str], int]:
    """A fallback grouping: one group per top-level child, in definition order.

    Parameters owned directly by `model` (position embeddings, class tokens) join the first group.

    Args:
        model: The network to group.

    Returns:
        A `group_of` function for `collapse_groups`.
    """
    order = {name: i for i, (name, _) in enumerate(model.named_children())}
    return lambda param_name: order.get(param_name.split(".")[0], 0)
