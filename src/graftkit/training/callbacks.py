"""Loop callbacks that decide when training ends (checkpointing is in `checkpoint.py`, the time
budget in `budget.py`)."""

from __future__ import annotations

from graftkit.training.loop import Decision, LoopState


class EarlyStopping:
    """Stop when the monitored validation metric has not improved for `patience` epochs."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, state: LoopState) -> Decision | None:
        if state.best_epoch is not None and state.epoch - state.best_epoch >= self.patience:
            return Decision(stop=True, reason=f"no improvement for {self.patience} epochs (early stopping)")
        return None
