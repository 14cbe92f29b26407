"""Small builders shared by the probe and fine-tuning paths: optimizer, loaders, loop options."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graftkit.training.config import TrainConfig
from graftkit.training.loop import LoopOptions
from graftkit.training.schedule import build_scheduler, optimizer_steps


def loop_options(cfg: TrainConfig, resume_point, **kw: Any) -> LoopOptions:
    options = LoopOptions(epochs=cfg.epochs, monitor=cfg.monitor, grad_clip=cfg.grad_clip, accumulate=cfg.accumulate, seed=cfg.seed, **kw)
    if resume_point is not None:
        options.start_epoch = resume_point.epoch
        options.history = resume_point.history
        options.best_epoch, options.best_score = resume_point.best_epoch, resume_point.best_score
        options.best_state = resume_point.best_state
    return options


def build_optimizer(param_groups: list[dict[str, Any]], cfg: TrainConfig, batches: int, resume_point):
    """AdamW and the learning-rate schedule of a run.

    Args:
        batches: Training batches the loop draws over the whole run (`cfg.epochs × len(train_loader)`);
            the schedule counts optimizer steps, one per `cfg.accumulate` batches of each epoch.
    """
    assert batches % cfg.epochs == 0, "batches must be epochs × batches per epoch"
    total = optimizer_steps(batches // cfg.epochs, epochs=cfg.epochs, accumulate=cfg.accumulate)
    optimizer = torch.optim.AdamW(param_groups, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, total, schedule=cfg.schedule, warmup_fraction=cfg.warmup_fraction)
    if resume_point is not None:
        optimizer.load_state_dict(resume_point.optimizer)
        scheduler.load_state_dict(resume_point.scheduler)
    return optimizer, scheduler


def eval_loader_factory(backbone: nn.Module, cfg: TrainConfig):
    from graftkit.data import ImageFileDataset, Sample, build_transform, make_loader

    transform = build_transform(backbone.preprocess, "none", train=False)

    def make(paths):
        pre = backbone.preprocess
        dataset = ImageFileDataset([Sample(p, None) for p in paths], targets=None, transform=transform, channels=pre.in_chans, window=pre.window)  # unlabelled: -1
        return make_loader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=num_workers(cfg), seed=cfg.seed)

    return make


def num_workers(cfg: TrainConfig) -> int:
    from graftkit.data import default_num_workers

    return default_num_workers() if cfg.num_workers is None else cfg.num_workers
