"""Out-of-memory back-off: a training step that runs out of GPU memory is retried in smaller chunks.

When a forward or backward pass raises the device's out-of-memory error, the step's micro-batch is
split in two (then four, ...) and each chunk runs forward and backward with its loss weighted by
its share of the batch, so the gradients add up to the whole batch's: the optimizer step still
sees `--batch-size` samples (gradient accumulation inside the step), and the chunk size stays for
the rest of the run. The run records the samples per forward pass it ended with
(`metrics.json`: `batch_size_used`).

Exact retry needs the gradients from before the failed micro-batch: they are all None at the
first micro-batch of an optimizer step (the loop zeroes them with `set_to_none`), which is every
micro-batch without `--accumulate`. A failure later inside an accumulated step, or in several
processes (where every process must take the same number of backward passes), is a clear error
naming the flags instead. BatchNorm computes its statistics per chunk, as under `--accumulate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from graftkit.errors import ConfigError

OutOfMemoryError: type[BaseException] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
"""What torch raises when a device allocation fails (CUDA; torch >= 2.5 also XPU and MPS)."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device out-of-memory error (not a CPU `RuntimeError` of another kind)."""
    return isinstance(error, (OutOfMemoryError, torch.cuda.OutOfMemoryError))


def split_batch(batch: Any, parts: int) -> list[Any]:
    """`batch` cut into `parts` chunks along the first dimension: tensors, and tuples, lists and
    dicts of them (tokenized text); other values are shared by every chunk.

    Raises:
        ValueError: Tensors in `batch` disagree on their first dimension.
    """
    n = batch_length(batch)
    size = math.ceil(n / parts)
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    return [_slice(batch, a, b) for a, b in bounds]


def batch_length(batch: Any) -> int:
    """The first dimension shared by the tensors of `batch`."""
    lengths = set()
    _lengths(batch, lengths)
    if len(lengths) != 1:
        raise ValueError(f"cannot split a batch whose tensors have first dimensions {sorted(lengths)}")
    return lengths.pop()


def _lengths(batch: Any, out: set[int]) -> None:
    if isinstance(batch, torch.Tensor) and batch.ndim > 0:
        out.add(len(batch))
    elif isinstance(batch, (list, tuple)):
        for b in batch:
            _lengths(b, out)
    elif isinstance(batch, dict):
        for b in batch.values():
            _lengths(b, out)


def _slice(batch: Any, a: int, b: int) -> Any:
    if isinstance(batch, torch.Tensor) and batch.ndim > 0:
        return batch[a:b]
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(x, a, b) for x in batch)
    if isinstance(batch, dict):
        return {k: _slice(v, a, b) for k, v in batch.items()}
    return batch


@dataclass
class OomBackoff:
    """Runs each training micro-batch in `parts` chunks, doubling `parts` when the device runs out
    of memory (see the module docstring).

    Args:
        enabled: False re-raises every out-of-memory error (several processes).
    """

    enabled: bool = True
    parts: int = 1
    """Chunks per micro-batch now (1 until the first out-of-memory error)."""
    used: int | None = None
    """Samples per forward pass of the last step (the chunk size), None before the first."""
    events: list[str] = field(default_factory=list)
    """One line per back-off, for the log."""

    def run(self, inputs: Any, targets: Any, step: Callable[[Any, Any, float], tuple[torch.Tensor, torch.Tensor]],
            *, reset: Callable[[], None] | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Forward and backward of one micro-batch, in chunks.

        Args:
            step: `step(inputs, targets, weight) -> (loss, logits)` runs one chunk's forward and
                backward with its loss multiplied by `weight` (its share of the micro-batch), and
                returns the chunk's unweighted loss and its outputs.
            reset: Undoes a failed attempt's partial backward: given when the gradients were all
                None before this micro-batch (it starts an optimizer step), e.g.
                `lambda: optimizer.zero_grad(set_to_none=True)`; None: a failure is not retried.

        Returns:
            The micro-batch's loss (the chunks' weighted mean) and outputs (concatenated).
        """
        n = len(targets)  # samples in the micro-batch (the loop counts them the same way)
        while True:
            try:
                return self._chunks(inputs, targets, n, step)
            except BaseException as e:
                if not is_out_of_memory(e):
                    raise
                chunk = math.ceil(n / self.parts)
                if not self.enabled or chunk <= 1 or reset is None or not _splittable(inputs, targets, n):
                    raise ConfigError(self._advice(chunk, reset is not None)) from e
                reset()  # undo the failed attempt's partial backward
                del e
                _free_cached_memory()
                self.parts *= 2
                self.used = None  # the largest chunk from now on
                smaller = math.ceil(n / self.parts)
                self.events.append(f"out of device memory at {chunk} samples per forward pass: retrying in chunks of {smaller} "
                                   f"(each optimizer step still sees the whole batch of {n})")  # fmt: skip
                from graftkit.engine.progress import warn

                warn(self.events[-1])

    def _chunks(self, inputs: Any, targets: Any, n: int, step) -> tuple[torch.Tensor, torch.Tensor]:
        if self.parts == 1:
            loss, logits = step(inputs, targets, 1.0)
        else:
            losses, outputs = [], []
            for ci, ct in zip(split_batch(inputs, self.parts), split_batch(targets, self.parts)):
                share = len(ct) / n
                loss, logits = step(ci, ct, share)
                losses.append(loss.detach() * share)
                outputs.append(logits.detach())
            loss = torch.stack(losses).sum()
            logits = torch.cat(outputs) if all(isinstance(o, torch.Tensor) for o in outputs) else [o for part in outputs for o in part]
        self.used = max(self.used or 0, math.ceil(n / self.parts))
        return loss, logits

    def _advice(self, chunk: int, restorable: bool) -> str:
        if chunk <= 1:
            return ("out of device memory with 1 sample per forward pass: the model does not fit this device at this input size; "
                    "add --grad-checkpointing, lower --image-size (or --max-length), or use a smaller model or a larger GPU")  # fmt: skip
        where = "" if restorable else " inside an accumulated step (--accumulate), where it cannot be retried exactly,"
        where = where if self.enabled else " in one of several processes (--devices), where every process must retry alike,"
        return (f"out of device memory at {chunk} samples per forward pass{where}: lower --batch-size and raise --accumulate "
                f"by the same factor (e.g. --batch-size {max(1, chunk // 2)} --accumulate 2 keeps the batch), "
                "or add --grad-checkpointing")  # fmt: skip


def _splittable(inputs: Any, targets: Any, n: int) -> bool:
    """Whether the batch's tensors all share its first dimension (detection's per-image box
    lists, for one, do not: such batches are not split)."""
    try:
        return batch_length(inputs) == n and batch_length(targets) == n
    except ValueError:
        return False


def _free_cached_memory() -> None:
    """Return the failed attempt's freed blocks to the device before retrying."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
