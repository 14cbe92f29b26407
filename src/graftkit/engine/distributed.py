"""Several processes through Hugging Face Accelerate: `AccelerateEngine` behind the loop's `Engine` seam.

`graft train --devices N` starts N processes (`launch`, through `torch.distributed.run`, the
launcher `accelerate launch` uses); `accelerate launch -m graftkit train ...` does the same across
machines. Each process builds the same plan, then:

- the model is wrapped in DDP by `Accelerator.prepare` (gradients all-reduced before each optimizer
  step only: `accumulate` is Accelerate's `no_sync`);
- every loader is sharded by Accelerate with `split_batches=True`: `--batch-size` stays the global
  batch, each of N processes draws a disjoint 1/N of it, so N processes train as one does;
- outputs of evaluation and feature extraction are gathered with `gather_for_metrics`, which drops
  the samples Accelerate repeats to even out the last batch: every sample counts once;
- mixed precision (bf16, fp16 with loss scaling on CUDA) is Accelerate's.

Only the main process (rank 0) writes the run directory, checkpoints, report and tracking
(`is_main`); the others train and evaluate, and wait at `wait()`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Sequence

import torch
from torch import nn

from graftkit.engine.device import move_to_device
from graftkit.errors import ConfigError

_ACCELERATOR: Any = None


def world_size() -> int:
    """Processes of this run: `WORLD_SIZE` set by the launcher, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_distributed() -> bool:
    """This process is one of several started by a launcher (`--devices N`, `accelerate launch`)."""
    return world_size() > 1


def is_main_process() -> bool:
    """Rank 0 of a launched run, or the only process."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def accelerator(device: str = "cpu", precision: str = "fp32") -> Any:
    """The process's one `accelerate.Accelerator` (its state is process-wide), created on first use.

    Args:
        device: `cpu` runs the processes on CPU (gloo); `cuda` one GPU per process (nccl).
        precision: Training precision: `fp32`, `bf16` or `fp16` (Accelerate's mixed precision).
    """
    global _ACCELERATOR
    if _ACCELERATOR is None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

        loaders = DataLoaderConfiguration(split_batches=True, even_batches=True, use_seedable_sampler=False)
        mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
        _ACCELERATOR = Accelerator(cpu=not device.startswith("cuda"), mixed_precision=mixed, dataloader_config=loaders,
                                   step_scheduler_with_optimizer=False,
                                   # strategies freeze and unfreeze layer groups between epochs: DDP must allow parameters without gradients
                                   kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])  # fmt: skip
        import atexit

        atexit.register(_close_process_group)
    return _ACCELERATOR


def _close_process_group() -> None:
    """Destroy the process group before the interpreter exits. Left to the C++ destructors at
    shutdown, gloo's threads abort the process ("terminate called without an active exception",
    SIGABRT) after the work is done, and the launcher reports the run as failed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class AccelerateEngine:
    """The `Engine` of one process among several (or of an fp16 run on one GPU), through Accelerate.

    The training and the inference engine of a run share one `Accelerator`; an inference engine
    whose precision differs from the accelerator's uses its own autocast.
    """

    def __init__(self, device: str = "cpu", precision: str = "fp32", channels_last: bool = False, *, training: bool = True) -> None:
        self.accelerator = accelerator(device, precision)
        self.training = training
        """False: an inference engine (features, validation after training): models are placed, not wrapped in DDP."""
        self.device = self.accelerator.device
        self.precision = precision
        self.channels_last = channels_last
        self.is_main = self.accelerator.is_main_process
        self.processes = self.accelerator.num_processes

    def setup(self, model: nn.Module) -> nn.Module:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            return model  # already prepared (the inference engine after training)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if not self.training:  # inference (features, validation after training): no DDP
            return model.to(self.device)
        # DDP syncs only the parameters that require gradients when it wraps the model, but strategies
        # freeze and unfreeze layer groups between epochs (and LP-FT's warm-up left the backbone
        # frozen): register them all; those without a gradient in a step are DDP's "unused" ones.
        trains = {p: p.requires_grad for p in model.parameters()}
        for p in trains:
            p.requires_grad_(True)
        try:
            prepared = self.accelerator.prepare_model(model)
        finally:
            for p, flag in trains.items():
                p.requires_grad_(flag)
        if isinstance(prepared, nn.parallel.DistributedDataParallel):
            prepared.__class__ = _TransparentDDP  # state dicts without `module.`: checkpoints match one process's
        return prepared

    def setup_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """fp16 needs the optimizer to step through the loss scaler; others are returned as they are."""
        if self.accelerator.mixed_precision == "fp16":
            return self.accelerator.prepare_optimizer(optimizer, device_placement=False)
        return optimizer

    def shard(self, loader: Any) -> Any:
        """This process's share of `loader`: a disjoint 1/N of every (global) batch."""
        from torch.utils.data import DataLoader

        if not isinstance(loader, DataLoader):
            raise ConfigError(f"--devices > 1 supports image and audio data (a torch DataLoader); this run's {type(loader).__name__} "
                              "cannot be sharded yet: train it in one process (drop --devices)")  # fmt: skip
        if loader.batch_size is not None and loader.batch_size % self.processes:
            raise ConfigError(f"--batch-size {loader.batch_size} is the global batch and must divide evenly over {self.processes} processes "
                              f"(--devices {self.processes}): use a multiple of {self.processes}")  # fmt: skip
        generator = loader.generator
        sharded = self.accelerator.prepare_data_loader(loader, device_placement=False)
        sharded.generator = generator  # the loop reseeds it every epoch: the same order as one process
        return sharded

    def to_device(self, batch: Any) -> Any:
        return move_to_device(batch, self.device, channels_last=self.channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        mixed = {"no": "fp32"}.get(self.accelerator.mixed_precision, self.accelerator.mixed_precision)
        if self.precision == mixed:
            return self.accelerator.autocast()
        if self.precision in ("bf16", "fp16"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
        return contextlib.nullcontext()

    def accumulate(self, model: nn.Module, *, step: bool) -> contextlib.AbstractContextManager:
        if step or not isinstance(model, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)  # micro-batches before a step: no all-reduce

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)  # fp16: scaled

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> torch.Tensor:
        params = [p for p in model.parameters() if p.grad is not None]
        return self.accelerator.clip_grad_norm_(params, max_norm)  # fp16: unscales first

    def reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(value.to(self.device), "sum").cpu()

    def gather(self, value: torch.Tensor) -> torch.Tensor:
        """Every process's rows of this batch, in the loader's order, each sample once."""
        value = value.to(self.device).contiguous()
        if value.ndim >= 2:  # token dimensions differ between processes' batches: pad them alike
            pad = -100 if not value.is_floating_point() else 0
            value = self.accelerator.pad_across_processes(value, dim=1, pad_index=pad)
        return self.accelerator.gather_for_metrics(value).cpu()

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()


class _TransparentDDP(nn.parallel.DistributedDataParallel):
    """DDP whose `state_dict` / `load_state_dict` are the wrapped model's: checkpoints, best weights
    and model.safetensors carry the same keys as a one-process run's (no `module.` prefix)."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)  # `model.backbone`, `model.head`, as on the wrapped model


def launch(processes: int, argv: Sequence[str]) -> int:
    """Run `python -m graftkit.cli ARGV` in `processes` processes on this machine (`torch.distributed.run`,
    standalone rendezvous on loopback) and return the exit code (the first failure's).

    Raises:
        ConfigError: `processes` < 1, or more CUDA processes asked for than GPUs.
    """
    if processes < 1:
        raise ConfigError(f"--devices must be >= 1, got {processes}")
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", "--nnodes", "1", "--nproc-per-node", str(processes), "--module", "graftkit.cli", *argv])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    try:
        run(args)
    except Exception as e:  # torch's ChildFailedError: the child already printed its own error
        failures = getattr(e, "failures", None) or {}
        codes = [f.exitcode for f in failures.values()] if failures else [1]
        print(f"graft: {len(codes)} of {processes} processes failed", file=sys.stderr)
        return next((c for c in codes if c), 1)
    return 0


def make_engine(device: str, precision: str = "fp32", channels_last: bool = False, *, training: bool = True) -> Any:
    """The engine of this process: `AccelerateEngine` when a launcher started several or when fp16
    trains (Accelerate's loss scaler: fp16 gradients underflow without it), else `LocalEngine`.

    Args:
        training: False for the inference engine (features, validation after training).
    """
    if is_distributed() or (training and precision == "fp16"):
        return AccelerateEngine(device, precision, channels_last, training=training)
    from graftkit.engine.device import LocalEngine

    return LocalEngine(device, precision=precision, channels_last=channels_last)
