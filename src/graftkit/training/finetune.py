"""Fine-tuning (`finetune`, `partial:N`, `gradual`): images through the whole model every step."""

from __future__ import annotations

import torch

from graftkit.strategies import (
    count_parameters,
    freeze_layer_groups,
    layerwise_lr_groups,
    set_frozen_norms_eval,
    trainable_group_count,
)
from graftkit.tasks import GraftModel
from graftkit.training._build import build_optimizer, loop_options, num_workers
from graftkit.training.loop import predict_probs, train_loop
from graftkit.training.progress import info


def train_finetune(images, backbone, head, task, cfg, engine, infer_engine, callbacks, resume_point):
    """Fine-tuning (`finetune`, `partial:N`, `gradual`): images through the whole model every step."""
    from graftkit.data import ImageFileDataset, build_batch_mix, build_transform, make_loader

    strat = cfg.parsed_strategy
    model = GraftModel(backbone, head)
    if resume_point is not None:
        model.load_state_dict(resume_point.model)
    model = engine.setup(model)
    groups = backbone.layer_groups()
    class_to_idx = {c: i for i, c in enumerate(task.classes)}
    train_ds = ImageFileDataset(images.train, class_to_idx, build_transform(backbone.preprocess, cfg.augment, train=True))
    eval_tf = build_transform(backbone.preprocess, "none", train=False)
    workers = num_workers(cfg)
    drop_last = len(images.train) % cfg.batch_size == 1  # a batch of 1 breaks BatchNorm in train mode
    train_loader = make_loader(train_ds, batch_size=cfg.batch_size, shuffle=True, num_workers=workers, seed=cfg.seed, drop_last=drop_last)
    val_loader = make_loader(ImageFileDataset(images.val, class_to_idx, eval_tf), batch_size=cfg.batch_size, shuffle=False, num_workers=workers, seed=cfg.seed)

    param_groups = layerwise_lr_groups(
        groups, head, lr=cfg.peak_lr, backbone_lr_scale=cfg.backbone_lr_scale, decay=cfg.lr_decay, weight_decay=cfg.weight_decay
    )
    optimizer, scheduler = build_optimizer(param_groups, cfg, cfg.epochs * len(train_loader), resume_point)
    last_logged = [-1]

    def prepare_epoch(epoch: int) -> None:
        n = trainable_group_count(strat, len(groups), epoch)
        freeze_layer_groups(groups, n)
        set_frozen_norms_eval(groups, n)
        if n != last_logged[0]:
            trainable, frozen = count_parameters(model)
            info(f"parameters: {trainable:,} trainable, {frozen:,} frozen ({n}/{len(groups)} backbone groups train)")
            last_logged[0] = n

    result = train_loop(
        model,
        train_loader,
        val_loader,
        task=task,
        optimizer=optimizer,
        scheduler=scheduler,
        engine=engine,
        options=loop_options(cfg, resume_point, prepare_epoch=prepare_epoch, batch_transform=build_batch_mix(cfg.mix, task.num_classes)),
        callbacks=callbacks,
    )
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    model = model.to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    final = {}
    for split in ("val", "test"):
        samples = getattr(images, split)
        if samples:
            loader = make_loader(ImageFileDataset(samples, class_to_idx, eval_tf), batch_size=cfg.batch_size, shuffle=False, num_workers=workers, seed=cfg.seed)
            probs, y, loss = predict_probs(infer_engine.setup(model), loader, infer_engine, task)
            final[split] = task.full_metrics(probs, y, loss=loss)
    model.to(memory_format=torch.contiguous_format)
    return result, final
