"""Fine-tuning (`finetune`, `partial:N`, `gradual`, `lora`): inputs through the whole model every step."""

from __future__ import annotations

from torch import nn

from graftkit.strategies import (
    count_parameters,
    freeze_layer_groups,
    layerwise_lr_groups,
    set_frozen_norms_eval,
    trainable_group_count,
)
from graftkit.training._build import build_optimizer, loop_options
from graftkit.training.loop import predict_probs, train_loop
from graftkit.training.objective import TermBuilder, build_objective
from graftkit.training.multitask import weighting_terms
from graftkit.training.regularize import no_backbone_decay, regularizer_terms
from graftkit.engine.progress import info


TERM_BUILDERS: list[TermBuilder] = [regularizer_terms, weighting_terms]
"""The families of extra loss terms (domain adaptation, regularisers): each builds none unless its
options are on."""


def train_finetune(inputs, model, task, cfg, engine, infer_engine, callbacks, resume_point):
    """Train `model` (a `GraftModel`, or a `GenerativeModel` without a new head) with the strategy.

    Returns:
        The loop result and, per evaluated split, `(outputs, targets, loss)` of the best weights.
    """
    import torch

    strat = cfg.parsed_strategy
    backbone = model.backbone
    head = getattr(model, "head", None) or nn.Identity()  # generative models keep their own output layer
    if resume_point is not None:
        model.load_state_dict(resume_point.model)
    model = engine.setup(model)
    groups = backbone.layer_groups()
    train_loader = engine.shard(inputs.labelled_loader("train", task, train=True))  # several processes: 1/N of each batch
    val_loader = engine.shard(inputs.labelled_loader("val", task, train=False))

    if strat.kind == "lora":
        from graftkit.strategies import lora_parameters

        adapters = lora_parameters(backbone)
        param_groups = [
            {"params": [p for p in head.parameters() if p.ndim > 1] + adapters, "weight_decay": cfg.weight_decay, "lr": cfg.peak_lr, "name": "head+lora"},
            {"params": [p for p in head.parameters() if p.ndim <= 1], "weight_decay": 0.0, "lr": cfg.peak_lr, "name": "head.no_decay"},
        ]
        param_groups = [g for g in param_groups if g["params"]]
    else:
        param_groups = layerwise_lr_groups(
            groups, head, lr=cfg.peak_lr, backbone_lr_scale=cfg.backbone_lr_scale, decay=cfg.lr_decay, weight_decay=cfg.weight_decay
        )
        param_groups = no_backbone_decay(param_groups, cfg)  # --regularize l2sp: its pull replaces the backbone's decay
    objective = build_objective(cfg, model, inputs, task, engine, TERM_BUILDERS)
    if objective is not None and objective.parameters():
        param_groups.append({"params": objective.parameters(), "weight_decay": cfg.weight_decay, "lr": cfg.peak_lr, "name": "objective"})
    optimizer, scheduler = build_optimizer(param_groups, cfg, cfg.epochs * len(train_loader), resume_point)
    optimizer = getattr(engine, "setup_optimizer", lambda o: o)(optimizer)  # Accelerate's fp16 steps through its loss scaler
    last_logged = [-1]

    def prepare_epoch(epoch: int) -> None:
        n = trainable_group_count(strat, len(groups), epoch)
        freeze_layer_groups(groups, n)
        set_frozen_norms_eval(groups, n)
        if strat.kind == "lora":
            for name, p in backbone.named_parameters():
                p.requires_grad_("lora_" in name)
        if n != last_logged[0]:
            trainable, frozen = count_parameters(model)
            what = "LoRA adapters + head" if strat.kind == "lora" else f"{n}/{len(groups)} backbone groups train"
            info(f"parameters: {trainable:,} trainable, {frozen:,} frozen ({what})")
            last_logged[0] = n

    result = train_loop(
        model,
        train_loader,
        val_loader,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        engine=engine,
        options=loop_options(cfg, resume_point, prepare_epoch=prepare_epoch, batch_transform=inputs.batch_transform(task), unit=inputs.unit,
                             objective=objective),  # fmt: skip
        callbacks=callbacks,
    )
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    model = getattr(model, "module", model) if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    model = model.to(memory_format=torch.contiguous_format)
    outputs = {}
    for split in ("val", "test"):
        if inputs.samples(split):
            loader = val_loader if split == "val" else infer_engine.shard(inputs.labelled_loader(split, task, train=False))
            outputs[split] = predict_probs(infer_engine.setup(model), loader, infer_engine, task)
    model.to(memory_format=torch.contiguous_format)
    return result, outputs
