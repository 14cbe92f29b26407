"""The batch objective: the task's loss plus the extra terms that adaptation and regularisers add."""

from __future__ import annotations

import torch
from torch import nn

from graftkit.tasks import ClassificationTask
from graftkit.tasks.model import GraftModel
from graftkit.training.objective import Objective, build_objective


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _FeatureNorm(nn.Module):
    name = "feature_norm"

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, batch) -> torch.Tensor:
        return self.scale * batch.features.pow(2).mean()


def test_terms_add_to_the_task_loss_and_their_parameters_are_exposed():
    torch.manual_seed(0)
    task = ClassificationTask(["a", "b"])
    model = GraftModel(_Backbone(), nn.Linear(3, 2))
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1])
    term = _FeatureNorm()
    objective = Objective(task, [term])
    loss, logits = objective(model, x, y)
    features = model.backbone.forward_features(x)
    expected = task.loss(model.head(features), y) + 2.0 * features.pow(2).mean()
    assert torch.allclose(loss, expected) and logits.shape == (5, 2)
    assert objective.last["feature_norm"] == float(2.0 * features.detach().pow(2).mean()) and objective.step == 1
    assert objective.parameters() == [term.scale]


def test_no_family_adds_a_term_so_the_loop_keeps_the_plain_task_loss():
    assert build_objective(None, None, None, ClassificationTask(["a", "b"]), None, [lambda *a: []]) is None
