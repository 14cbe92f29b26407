"""Pure pieces of the peers benchmark: which sides run in which order, the venv recipes, the summary table.

Nothing here imports torch or starts a process, so tests/test_peers_plan.py checks it in milliseconds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# glibc's equivalents of graftkit's `tune_malloc()` (engine/memory.py: mallopt M_MMAP_MAX = 0,
# M_TRIM_THRESHOLD = 1 GiB), read by glibc when a process starts, so a peer gets the same allocator
# without importing graftkit.
GRAFTKIT_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


@dataclass(frozen=True)
class Venv:
    """One peer's virtual environment: its folder name and what `pip install` gets inside it."""

    name: str
    """Folder name under the cache dir: `peers-<name>`."""
    packages: tuple[str, ...]
    """Requirements passed to `pip install` (torch is not among them: it comes from the base)."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for install and run (Keras: the torch backend)."""


VENVS: dict[str, Venv] = {
    "fastai": Venv("fastai", ("fastai",)),
    "keras": Venv("keras", ("keras",), (("KERAS_BACKEND", "torch"),)),
    "hf": Venv("hf", ("transformers", "accelerate", "datasets")),
}


@dataclass(frozen=True)
class Side:
    """One contestant: the script it runs, in which venv (None: graftkit's own), in which group."""

    name: str
    group: str
    """`images` or `text`: sides of a group alternate with each other within a round."""
    script: str
    venv: str | None


SIDES: dict[str, Side] = {
    s.name: s
    for s in (
        Side("fastai", "images", "side_fastai.py", "fastai"),
        Side("keras", "images", "side_keras.py", "keras"),
        Side("graftkit-finetune", "images", "side_graftkit.py", None),
        Side("graftkit-probe", "images", "side_graftkit.py", None),
        Side("hf-trainer", "text", "side_hf_trainer.py", "hf"),
        Side("graftkit-text", "text", "side_graftkit.py", None),
    )
}


@dataclass(frozen=True)
class Comparison:
    """One row of the table: a peer measurement against a graftkit one, with the speed target."""

    label: str
    peer: str
    peer_metric: str
    """`full` (whole run) or `frozen` (the peer's frozen-backbone phase)."""
    graftkit: str
    target_speedup: float


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("fastai `fine_tune` vs graftkit `finetune`", "fastai", "full", "graftkit-finetune", 1.3),
    Comparison("fastai frozen phase vs graftkit `linear-probe`", "fastai", "frozen", "graftkit-probe", 5.0),
    Comparison("Keras 3 frozen → unfrozen vs graftkit `finetune`", "keras", "full", "graftkit-finetune", 1.3),
    Comparison("Keras 3 frozen phase vs graftkit `linear-probe`", "keras", "frozen", "graftkit-probe", 5.0),
    Comparison("HF `Trainer` (group_by_length) vs graftkit `finetune` (text)", "hf-trainer", "full", "graftkit-text", 1.3),
    # What a user picking a tool asks: the best accuracy soonest, whatever the strategy.
    Comparison("fastai `fine_tune` vs graftkit `linear-probe`", "fastai", "full", "graftkit-probe", 1.3),
    Comparison("Keras 3 frozen → unfrozen vs graftkit `linear-probe`", "keras", "full", "graftkit-probe", 1.3),
)


def round_order(sides: list[str], round_index: int) -> list[str]:
    """The order of `sides` in round `round_index`: as given in even rounds, reversed in odd ones.

    Over two rounds every side has run both early and late, so a load that drifts during a round
    does not always favour the same side.

    Example:
        >>> round_order(["a", "b", "c"], 1)
        ['c', 'b', 'a']
    """
    return list(sides) if round_index % 2 == 0 else list(reversed(sides))


def schedule(sides: list[str], rounds: int) -> list[tuple[int, str]]:
    """Every (round, side) to run, in running order: each group alternates within each round.

    Raises:
        ValueError: an unknown side or fewer than one round.
    """
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        raise ValueError(f"unknown side(s) {unknown}; known: {sorted(SIDES)}")
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}")
    groups: dict[str, list[str]] = {}
    for s in sides:
        groups.setdefault(SIDES[s].group, []).append(s)
    return [(r, s) for r in range(rounds) for g in groups.values() for s in round_order(g, r)]


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of `values`."""
    return statistics.median(values), min(values), max(values)


def measurement(rows: list[dict], side: str, metric: str) -> tuple[list[float], list[float]]:
    """Accuracies and wall seconds of `side` over its rounds; `metric` `frozen` reads the frozen phase."""
    mine = [r for r in rows if r["side"] == side and r.get("ok", True)]
    if metric == "frozen":
        return [r["frozen_accuracy"] for r in mine], [r["frozen_s"] for r in mine]
    return [r["accuracy"] for r in mine], [r["wall_s"] for r in mine]


def verdict(peer_acc: float, peer_s: float, gk_acc: float, gk_s: float, target: float) -> tuple[float, str]:
    """(time ratio peer / graftkit, `met` or why not) for medians; equal accuracy counts as met."""
    ratio = peer_s / gk_s
    missing = []
    if ratio < target:
        missing.append(f"speed {ratio:.2f}× < {target:g}×")
    if gk_acc < peer_acc:
        missing.append(f"accuracy {100 * (gk_acc - peer_acc):+.1f} pt")
    return ratio, "met" if not missing else "not met (" + "; ".join(missing) + ")"


def _fmt(values: list[float], digits: int) -> str:
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def table(rows: list[dict]) -> str:
    """The markdown table of every comparison whose two sides both have rows."""
    out = [
        "| comparison | peer accuracy | graftkit accuracy | peer s | graftkit s | peer / graftkit time | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in COMPARISONS:
        pa, ps = measurement(rows, c.peer, c.peer_metric)
        ga, gs = measurement(rows, c.graftkit, "full")
        if not (pa and ga):
            continue
        ratio, word = verdict(spread(pa)[0], spread(ps)[0], spread(ga)[0], spread(gs)[0], c.target_speedup)
        out.append(
            f"| {c.label} (n = {len(pa)}, {len(ga)}) | {_fmt(pa, 3)} | {_fmt(ga, 3)} | {_fmt(ps, 0)} | {_fmt(gs, 0)} "
            f"| **{ratio:.2f}×** | ≥ {c.target_speedup:g}× at ≥ equal accuracy | {word} |"
        )
    return "\n".join(out)
