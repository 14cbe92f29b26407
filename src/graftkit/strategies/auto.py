"""`--strategy auto`: the rule that picks how to use the pretrained weights, and says why.

A pure function of a few measured facts (no torch, no I/O), so it is documented and tested as a
table. `training/auto.py` measures the facts (a quick probe on cached features, a timed
fine-tuning step) and `fit()` applies the choice, writing it and its reasons to `graft.json`.

The rule, first match wins (thresholds are the module constants below; chosen on the
Fashion-MNIST benchmark `benchmarks/auto_strategy.py`, see `benchmarks/RESULTS.md`):

1. **Few labels** — fewer than `FEW_PER_CLASS` examples per class: `contrastive` for text
   single-label classification (the body trained on pairs of the labelled texts, SetFit-style,
   then the probe: the pairs multiply the labels, so the body adapts without overfitting a new
   head), else `linear-probe`. With a handful of labels a linear head on frozen features is as
   good as it gets for the rest; updating millions of weights through a new head overfits and
   costs far more time.
2. **Probe saturated** — the quick probe already reaches `SATURATED_PROBE` validation accuracy:
   `linear-probe` (fine-tuning has almost nothing left to gain).
3. **Budget too small** — with `--time-budget`, fewer than `MIN_FINETUNE_EPOCHS` fine-tuning epochs
   fit in what is left of it: `linear-probe` (its cost is one feature pass).
4. **Large model** — at least `LORA_MIN_PARAMS` parameters and LoRA is available for the
   backbone: `lora` (adapters train ~1 % of the weights: less memory, less overfitting).
5. **Moderate data, features that fit** — fewer than `MANY_PER_CLASS` per class and the probe
   reaches at least `GOOD_PROBE`: `partial:N`, the top half of the layer groups train (the
   generic early features stay as they are).
6. Otherwise — plenty of data, or frozen features that fit the data poorly (a domain gap the top
   layers alone cannot close): `finetune`.

When the choice is the probe, `training/auto.py` also makes it train for at least 100 optimizer
steps (`MIN_PROBE_STEPS`): with a few dozen examples, the default epochs are a handful of steps.
"""

from __future__ import annotations

import math
import re

from graftkit.errors import ConfigError
from graftkit.strategies.spec import STRATEGY_NAMES, Strategy

FEW_PER_CLASS = 20
"""Below this many labelled examples per class, the probe."""
MANY_PER_CLASS = 100
"""From this many per class, full fine-tuning (unless a rule above applies)."""
SATURATED_PROBE = 0.98
"""A quick-probe validation accuracy at or above this keeps the probe."""
GOOD_PROBE = 0.75
"""Between `FEW_PER_CLASS` and `MANY_PER_CLASS` per class, a probe at least this good means the
features fit: partial fine-tuning; below it, full fine-tuning."""
MIN_FINETUNE_EPOCHS = 3
"""Fewer affordable fine-tuning epochs than this: the probe."""
LORA_MIN_PARAMS = 100_000_000
"""Backbones at least this large train LoRA adapters instead of every weight (where available)."""


def choose_strategy(
    *,
    n_train: int,
    n_classes: int,
    modality: str = "image",
    probe_accuracy: float | None = None,
    param_count: int | None = None,
    time_budget_s: float | None = None,
    seconds_per_epoch_estimate: float | None = None,
    n_groups: int | None = None,
    lora_available: bool = False,
    contrastive_available: bool = False,
) -> tuple[Strategy, list[str]]:
    """Pick a strategy from the data size, a quick probe, the model size and the time budget.

    Args:
        n_train: Labelled training examples.
        n_classes: Classes (1 for regression).
        modality: `image` or `text` (named in the reasons).
        probe_accuracy: Validation accuracy of a quick linear probe on frozen features, if measured.
        param_count: Backbone parameters.
        time_budget_s: Seconds left for training (after the measurements), or None for no limit.
        seconds_per_epoch_estimate: Measured seconds of one fine-tuning epoch (training + validation).
        n_groups: The backbone's layer groups; `partial:N` trains the top `ceil(n_groups / 2)`.
        lora_available: Whether `lora` works for this backbone.
        contrastive_available: Whether `contrastive` fits the run (a text model and single-label
            classes: `training/contrastive.py: check_contrastive`).

    Returns:
        `(strategy, reasons)`: the reasons are full sentences, the deciding one last.

    Raises:
        ConfigError: `n_train` or `n_classes` is not positive.

    Example:
        >>> choose_strategy(n_train=80, n_classes=10, probe_accuracy=0.7)
        (Strategy(kind='linear-probe', n=None), ['80 labelled image examples, 8.0 per class.', ...])
    """
    if n_train < 1 or n_classes < 1:
        raise ConfigError(f"auto strategy needs training examples and classes; got {n_train} examples, {n_classes} classes")
    per_class = n_train / n_classes
    reasons = [f"{n_train} labelled {modality} examples, {per_class:.1f} per class."]
    if probe_accuracy is not None:
        reasons.append(f"A quick linear probe on frozen features reaches {probe_accuracy:.3f} validation accuracy.")
    epochs = affordable_epochs(time_budget_s, seconds_per_epoch_estimate)
    if epochs is not None:
        reasons.append(
            f"One fine-tuning epoch takes about {seconds_per_epoch_estimate:.0f} s; "
            f"{epochs} fit in the {time_budget_s:.0f} s left of the time budget."
        )
    probe = Strategy("linear-probe")
    if per_class < FEW_PER_CLASS and contrastive_available:
        return Strategy("contrastive"), reasons + [
            f"Fewer than {FEW_PER_CLASS} examples per class of text: contrastive pair training (each text paired with texts of its own "
            "and of other classes, the body trained on their cosine similarity, then the linear probe) adapts the sentence encoder "
            "from many pairs where fine-tuning through a new head overfits the few labels."
        ]
    if per_class < FEW_PER_CLASS:
        return probe, reasons + [
            f"Fewer than {FEW_PER_CLASS} examples per class: a linear probe on frozen features is hard to beat, "
            "and fine-tuning millions of weights on so few labels overfits."
        ]
    if probe_accuracy is not None and probe_accuracy >= SATURATED_PROBE:
        return probe, reasons + [f"The probe is already at {probe_accuracy:.3f} (≥ {SATURATED_PROBE}): fine-tuning has little left to gain."]
    if epochs is not None and epochs < MIN_FINETUNE_EPOCHS:
        return probe, reasons + [
            f"Fewer than {MIN_FINETUNE_EPOCHS} fine-tuning epochs fit in the budget: the probe (one feature pass) makes the most of it."
        ]
    if lora_available and param_count is not None and param_count >= LORA_MIN_PARAMS:
        return Strategy("lora"), reasons + [
            f"{param_count / 1e6:.0f}M parameters (≥ {LORA_MIN_PARAMS / 1e6:.0f}M): LoRA adapters train a small fraction "
            "of them, with less memory and less overfitting than full fine-tuning."
        ]
    if per_class < MANY_PER_CLASS and (probe_accuracy is None or probe_accuracy >= GOOD_PROBE):
        n = max(1, math.ceil((n_groups or 2) / 2))
        why = f"the probe reaches {probe_accuracy:.3f} (≥ {GOOD_PROBE}), so the features fit" if probe_accuracy is not None else "no probe result"
        return Strategy("partial", n), reasons + [
            f"Between {FEW_PER_CLASS} and {MANY_PER_CLASS} examples per class and {why}: the top {n} of "
            f"{n_groups or '?'} layer groups train and the generic early layers stay frozen."
        ]
    if per_class < MANY_PER_CLASS:
        return Strategy("finetune"), reasons + [
            f"The probe reaches only {probe_accuracy:.3f} (< {GOOD_PROBE}): the frozen features fit this data poorly, "
            "so every layer adapts (full fine-tuning)."
        ]
    return Strategy("finetune"), reasons + [
        f"At least {MANY_PER_CLASS} examples per class: enough labels to adapt every layer (full fine-tuning)."
    ]


def affordable_epochs(time_budget_s: float | None, seconds_per_epoch: float | None) -> int | None:
    """Whole epochs that fit in `time_budget_s`, or None when either is unknown.

    Example:
        >>> affordable_epochs(100, 30)
        3
    """
    if time_budget_s is None or not seconds_per_epoch:
        return None
    return max(0, int(time_budget_s // seconds_per_epoch))


_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str | float | int) -> float:
    """`--time-budget` values: `90`, `90s`, `10m`, `1.5h`, `1h30m` → seconds.

    Raises:
        ConfigError: Not a positive duration.

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|m|sec|s|)", text.strip().lower())
        joined = "".join(f"{n}{u}" for n, u in parts)
        if not parts or joined != re.sub(r"\s+", "", text.strip().lower()):
            raise ConfigError(f"--time-budget {text!r} is not a duration: use e.g. 90s, 10m, 1.5h or 1h30m")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0:
        raise ConfigError(f"--time-budget must be positive, got {text!r}")
    return seconds


__all__ = ["choose_strategy", "affordable_epochs", "parse_duration", "STRATEGY_NAMES"]
