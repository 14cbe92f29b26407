"""`--time-budget`: a loop callback that ends training before an epoch would overrun the budget."""

from __future__ import annotations

import time

from graftkit.training.loop import Decision, LoopState


class TimeBudget:
    """Stop after the epoch whose successor would end past the deadline.

    The next epoch is assumed to take as long as the last one (`history[-1]["seconds"]`), so a
    run stops *before* overrunning rather than after.

    Args:
        seconds: The budget.
        start: `time.perf_counter()` value the budget counts from (default: now).

    Example:
        >>> graftkit.fit("data/", strategy="finetune", epochs=50, callbacks=[TimeBudget(600)])
    """

    def __init__(self, seconds: float, *, start: float | None = None) -> None:
        self.seconds = seconds
        self.deadline = (time.perf_counter() if start is None else start) + seconds

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.deadline - time.perf_counter()

    def on_epoch_end(self, state: LoopState) -> Decision | None:
        last = float(state.history[-1].get("seconds", 0.0)) if state.history else 0.0
        if state.epoch + 1 < state.epochs and last > self.remaining():
            return Decision(stop=True, reason=f"time budget: another epoch (~{last:.0f} s) would end past the {self.seconds:.0f} s budget")
        return None
