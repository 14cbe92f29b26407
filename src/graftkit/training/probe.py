"""Linear probe: features computed once through the cache, then the head trains on them in the loop."""

from __future__ import annotations

import torch
from torch import nn

from graftkit.strategies import count_parameters, freeze_layer_groups
from graftkit.tasks import GraftModel
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.features import FeatureStats, extract_features, feature_cache_key
from graftkit.engine import LocalEngine
from graftkit.training.loop import LoopResult, predict_probs, train_loop
from graftkit.training.multitask import weighting_terms
from graftkit.training.objective import build_objective
from graftkit.training.solver import solvable_linear, solve_probe
from graftkit.tasks.base import task_member
from graftkit.errors import ConfigError
from graftkit.engine.progress import info


def probe_features(inputs, backbone, cfg, engine, splits=("train", "val", "test")) -> tuple[dict[str, torch.Tensor], FeatureStats]:
    """Frozen-backbone features `[N, D]` per split, through the on-disk feature cache."""
    freeze_layer_groups(backbone.layer_groups(), 0)
    if getattr(backbone, "layer_mix", None) is not None:  # --layer-pooling weighted: every layer's features, flat
        backbone = LayerFeatures(backbone)
    backbone = engine.setup(backbone)
    cache = None
    if cfg.feature_cache:
        from graftkit.data.cache import FeatureCache

        cache = FeatureCache(feature_cache_key(backbone, engine.precision, engine.channels_last))
    stats = FeatureStats()
    feats = {}
    for split in splits:
        items = inputs.items(split)
        if items:
            feats[split], s = extract_features(
                backbone, items, inputs.unlabelled_loader, engine, cache, description=f"{split} features", digests=inputs.digests
            )
            stats += s
    info(f"features: {stats.computed} computed, {stats.cached} from cache ({stats.seconds:.1f} s)")
    return feats, stats


def train_probe(inputs, backbone, head, task, cfg, engine, callbacks, resume_point, splits=("train", "val", "test"), phase="epoch"):
    """Linear probe: features once (cached across runs), then the head is solved on them
    (`training/solver.py`) or, for `--probe-solver sgd` and heads that are not linear, trained
    in the loop.

    Returns:
        (loop result, outputs per evaluated split, feature stats, the solver's record or None).
    """
    feats, stats = probe_features(inputs, backbone, cfg, engine, splits)
    head_engine = LocalEngine()
    labels = {split: inputs.targets(split, task) for split in feats}
    mix = getattr(backbone, "layer_mix", None)
    if mix is not None:
        return train_mixed_probe(feats, labels, backbone, mix, head, task, cfg, head_engine, callbacks, resume_point, stats, phase)
    linear = probe_solver_head(task, head, cfg.probe_solver)
    if linear is not None:
        result, outputs, record = solve_linear_probe(task, head, linear, feats, labels, cfg, head_engine)
        return result, outputs, stats, record
    trainable, frozen = count_parameters(nn.ModuleList([backbone, head]))
    info(f"parameters: {trainable:,} trainable (head), {frozen:,} frozen (backbone)")
    # The loop trains the head on cached features; state-dict keys stay `head.*` as in the full model.
    probe_model = GraftModel(PrecomputedFeatures(), head)
    result = train_head_in_loop(probe_model, [], feats, labels, task, cfg, head_engine, callbacks, resume_point, phase)
    return result, held_out_outputs(head, feats, labels, head_engine, task), stats, None


def train_head_in_loop(probe_model: GraftModel, extra: list[nn.Parameter], feats, labels, task, cfg, engine, callbacks,
                       resume_point, phase) -> LoopResult:  # fmt: skip
    """SGD in the loop for `probe_model` (cached features in, its head out) on the train split,
    validated on val; the head's weight matrices decay, its biases and `extra` (e.g. layer-mix
    logits) do not. Loads the best state back into `probe_model` (keys as in the full model)."""
    from torch.utils.data import DataLoader, TensorDataset

    if resume_point is not None:
        probe_model.load_state_dict(resume_point.model)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(TensorDataset(feats["train"], labels["train"]), batch_size=cfg.batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(TensorDataset(feats["val"], labels["val"]), batch_size=1024)
    head = probe_model.head
    groups = [{"params": [p for p in head.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in head.parameters() if p.ndim <= 1] + extra, "weight_decay": 0.0}]  # fmt: skip
    optimizer, scheduler = build_optimizer(groups, cfg, cfg.epochs * len(train_loader), resume_point)
    objective = build_objective(cfg, probe_model, None, task, engine, [weighting_terms])  # multitask --task-weighting uncertainty
    result = train_loop(probe_model, train_loader, val_loader, task=task, optimizer=optimizer, scheduler=scheduler, engine=engine,
                        options=loop_options(cfg, resume_point, unit="feat", phase=phase, objective=objective), callbacks=callbacks)  # fmt: skip
    if result.best_state is not None:
        probe_model.load_state_dict(result.best_state)
    return result


def held_out_outputs(head: nn.Module, feats, labels, engine, task) -> dict:
    """The head's outputs on the val and test features there are."""
    from torch.utils.data import DataLoader, TensorDataset

    return {split: predict_probs(head, DataLoader(TensorDataset(feats[split], labels[split]), batch_size=1024), engine, task)
            for split in ("val", "test") if split in feats}  # fmt: skip


def probe_solver_head(task, head: nn.Module, solver: str) -> nn.Linear | None:
    """The head's linear layer when the probe solves it (`--probe-solver lbfgs`, or `auto` and the
    task allows it), None when it trains with SGD in the loop.

    Raises:
        ConfigError: `lbfgs` asked for, but the task's loss or the head does not allow it.
    """
    if solver == "sgd":
        return None
    linear = solvable_linear(head)
    if task_member(task, "linear_solver") == "lbfgs" and linear is not None:
        return linear
    if solver == "lbfgs":
        why = "its head is not a single linear layer" if linear is None else "it declares no convex linear solver (Task.linear_solver)"
        raise ConfigError(f"--probe-solver lbfgs cannot fit task {task.name!r}: {why}; use --probe-solver sgd (or auto)")
    return None


def solve_linear_probe(task, head: nn.Module, linear: nn.Linear, feats, labels, cfg, engine) -> tuple[LoopResult, dict, dict]:
    """Solve the head (strength on held-out rows, then the refit), write it into `linear`, and
    return a loop-shaped result, the held-out val / test outputs and the solver's record."""
    from torch.utils.data import DataLoader, TensorDataset

    solution = solve_probe(task, feats, labels, out_features=linear.out_features, monitor=cfg.monitor or task.default_monitor,
                           refit=cfg.refit, seed=cfg.seed)  # fmt: skip
    with torch.no_grad():
        linear.weight.copy_(solution.weight)
        linear.bias.copy_(solution.bias)
    outputs = {}
    if solution.val_logits is not None:  # held-out: the train-only fit, or out-of-fold
        with torch.no_grad():
            loss = float(task.loss(solution.val_logits, labels["val"]))
            rows, kept = task.collect(solution.val_logits, labels["val"])
        outputs["val"] = (rows.numpy(), kept.numpy(), loss)
    if "test" in feats:
        outputs["test"] = predict_probs(head, DataLoader(TensorDataset(feats["test"], labels["test"]), batch_size=1024), engine, task)
    record = solution.record(cfg.monitor or task.default_monitor)
    info(f"probe: {record['note']} ({solution.seconds:.2f} s)")
    best = solution.grid[[g["strength"] for g in solution.grid].index(solution.strength)]["score"] if solution.grid else None
    return LoopResult([], None, best, None, None, solution.seconds), outputs, record


class PrecomputedFeatures(nn.Module):
    """Stands in for a frozen backbone whose features are already computed (the probe's input)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, D) features pass straight to the head


class LayerFeatures(nn.Module):
    """A backbone under `--layer-pooling weighted` as the probe's feature extractor: every layer's
    pooled features, flattened to `[B, L * D]` (the feature cache stores rows)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.weights, self.preprocess = backbone.weights, backbone.preprocess  # the cache key: weights, preprocess (layer_pooling)
        self.num_features = backbone.layer_mix.logits.numel() * backbone.num_features

    def forward_features(self, x):
        return self.backbone.forward_layer_features(x).flatten(1)


class PrecomputedLayers(nn.Module):
    """Cached per-layer features `[B, L * D]` mixed by the backbone's `LayerMix` into `[B, D]`; as
    `backbone.layer_mix` here, the state-dict keys are the full model's."""

    def __init__(self, layer_mix: nn.Module, width: int) -> None:
        super().__init__()
        self.layer_mix, self.width = layer_mix, width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_mix(x.view(x.shape[0], -1, self.width))


def train_mixed_probe(feats, labels, backbone, mix, head, task, cfg, engine, callbacks, resume_point, stats, phase):
    """`--layer-pooling weighted` probe: the layer mix and the head train together on cached
    per-layer features (SGD in the loop); then, where the task has a convex solver, the head is
    solved again on the learned mix's features. Returns what `train_probe` does."""
    mix.logits.requires_grad_(True)  # frozen with the backbone's groups; here it trains
    probe_model = GraftModel(PrecomputedLayers(mix, backbone.num_features), head)
    info(f"parameters: {sum(p.numel() for p in head.parameters()):,} trainable (head) + {mix.logits.numel()} layer weights")
    result = train_head_in_loop(probe_model, [mix.logits], feats, labels, task, cfg, engine, callbacks, resume_point, phase)
    mix.logits.requires_grad_(False)
    info(f"layer weights (input → output): {', '.join(f'{w:.3f}' for w in mix.weights())}")
    with torch.no_grad():
        mixed = {split: probe_model.backbone.forward_features(f) for split, f in feats.items()}
    record = {"layer_weights": mix.weights()}
    linear = probe_solver_head(task, head, cfg.probe_solver)
    if linear is not None:  # the convex head on the learned mix
        _, outputs, solver_record = solve_linear_probe(task, head, linear, mixed, labels, cfg, engine)
        return result, outputs, stats, {**solver_record, **record}
    return result, held_out_outputs(head, mixed, labels, engine, task), stats, record
