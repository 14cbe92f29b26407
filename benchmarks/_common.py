"""Shared pieces of the benchmarks: real data sets written as image folders, timing, machine facts,
and the bookkeeping of timed comparisons (sides alternated, rounds, median and spread, a verdict
that says when a target sits inside the noise)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
sys.path.insert(0, str(ROOT / "scripts"))


def fashion_mnist_folder(name: str, split: str, per_class: int, *, fmt: str = "jpg", size: int | None = 256, seed: int = 0) -> Path:
    """`per_class` seeded Fashion-MNIST images per class as an image folder (made once, reused)."""
    from fashion_mnist import pick_per_class, read_split, write_folder

    out = WORK / name
    if (out / ".complete").is_file():
        return out
    images, labels = read_split(split)
    write_folder(out, images, labels, pick_per_class(labels, per_class, seed=seed), fmt=fmt, size=size)
    (out / ".complete").write_text("ok")
    return out


def machine() -> str:
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    from graftkit.engine import cpu_has_native_bf16

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}"


@contextmanager
def timer(results: dict, key: str):
    t0 = time.perf_counter()
    yield
    results[key] = time.perf_counter() - t0


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and the core count, for the line that goes beside a figure.

    >>> load_average().startswith("load average ")
    True
    """
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


# --- Timed comparisons: alternate the sides, repeat the rounds, quote median and spread ---------

T = TypeVar("T")


def alternating(sides: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """`(round, side)` pairs for `rounds` rounds, the order of the sides reversed every other round.

    A B, B A, A B, ...: no side always runs first (straight after the other's warm-up, or in the
    same minute of a machine whose speed drifts), so drift falls on both sides alike.

    Args:
        sides: what is compared, in the order of the first round.
        rounds: how many times each side runs; the benchmarks' rule is at least 3.

    Raises:
        ValueError: `rounds` below 1 or no sides.

    Example:
        >>> [f"{r}{side}" for r, side in alternating("AB", 3)]
        ['0A', '0B', '1B', '1A', '2A', '2B']
        >>> [side for _, side in alternating(["x", "y", "z"], 2)]
        ['x', 'y', 'z', 'z', 'y', 'x']
    """
    sides = list(sides)
    if rounds < 1 or not sides:
        raise ValueError(f"alternating needs at least one side and one round, got {len(sides)} sides and {rounds} rounds")
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            yield r, side


def median_spread(values: Sequence[float], fmt: str = ".2f", unit: str = "") -> str:
    """`"median [min, max]"` of per-round figures: the median to quote, the range to judge it by.

    Example:
        >>> median_spread([3.0, 1.0, 2.0])
        '2.00 [1.00, 3.00]'
        >>> median_spread([0.9, 1.1], fmt=".3f", unit="×")
        '1.000× [0.900×, 1.100×]'
    """
    import statistics

    if not values:
        raise ValueError("median_spread of no values")
    return f"{statistics.median(values):{fmt}}{unit} [{min(values):{fmt}}{unit}, {max(values):{fmt}}{unit}]"


def within_noise(values: Sequence[float], target: float, *, higher_is_better: bool = True, fmt: str = ".3f") -> str:
    """Whether per-round figures (best: paired ratios, one per round) confirm a target, reject it, or cannot tell.

    `met` only when every round is on the target's good side, `not met` only when every round is
    on its bad side; otherwise the target sits inside the round-to-round spread and this many
    rounds on this machine cannot say (make the rounds longer or more, or use a quieter machine).
    Fewer than 3 rounds get no verdict at all. Read `met` / `not met` as a sign test: if the true
    figure sat exactly at the target and the noise were symmetric, all n rounds would land on one
    side by chance with probability 2^-n (3 rounds 1/8, 5 rounds 1/32, 7 rounds 1/128), so a claim
    wants 5 or more rounds.

    Args:
        values: one figure per round, e.g. graftkit's img/s over the baseline's in the same round.
        target: the bound, e.g. 0.97 for "at most 3 % slower".
        higher_is_better: False for bounds like "latency ratio ≤ 0.6".

    Example:
        >>> within_noise([1.01, 0.99, 1.02], 0.97)
        'met: every round ≥ 0.970 (median 1.010 [0.990, 1.020], 3 rounds)'
        >>> within_noise([0.90, 1.10, 1.00], 0.97)
        'inside the noise: the rounds span 0.900–1.100 around the 0.970 target (median 1.000, 3 rounds): neither confirmed nor rejected'
        >>> within_noise([0.7, 0.8, 0.75], 0.6, higher_is_better=False)
        'not met: every round > 0.600 (median 0.750 [0.700, 0.800], 3 rounds)'
        >>> within_noise([1.2, 1.3], 0.97)
        'too few rounds to judge (2 < 3): median 1.250 [1.200, 1.300]'
    """
    import statistics

    if not values:
        raise ValueError("within_noise of no values")
    n, med, lo, hi = len(values), statistics.median(values), min(values), max(values)
    if n < 3:
        return f"too few rounds to judge ({n} < 3): median {med:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"
    good, bad = ("≥", "<") if higher_is_better else ("≤", ">")
    ok = [v >= target if higher_is_better else v <= target for v in values]
    if all(ok):
        return f"met: every round {good} {target:{fmt}} (median {med:{fmt}} [{lo:{fmt}}, {hi:{fmt}}], {n} rounds)"
    if not any(ok):
        return f"not met: every round {bad} {target:{fmt}} (median {med:{fmt}} [{lo:{fmt}}, {hi:{fmt}}], {n} rounds)"
    return (f"inside the noise: the rounds span {lo:{fmt}}–{hi:{fmt}} around the {target:{fmt}} target "
            f"(median {med:{fmt}}, {n} rounds): neither confirmed nor rejected")  # fmt: skip


def fresh_cache(name: str) -> Path:
    """Point graftkit's cache at an empty folder."""
    import shutil

    path = WORK / "cache" / name
    shutil.rmtree(path, ignore_errors=True)
    os.environ["GRAFTKIT_CACHE"] = str(path)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A RESULTS.md table: the header, the separator, one line per row (cells as `str`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(x) for x in r) + " |" for r in rows])


def report(title: str, rows: list[tuple], header: tuple, extra: dict | None = None) -> None:
    print(f"\n### {title}\n")
    print(markdown_table(header, rows))
    if extra:
        print("\n```json\n" + json.dumps(extra, indent=1) + "\n```")


# --- Text: the VADER movie-review snippets (scripts/vader.py) ------------------------------------


def vader_movie_snippets(cache_dir: Path | None = None) -> list[tuple[str, float]]:
    """All 10,605 VADER movie-review snippets as (text, mean human rating -4 .. +4), in file order.

    The `vadersentiment` sdist is fetched with pip into `cache_dir` (default benchmarks/_work/vader) once.
    """
    from vader import download_sdist, read_movie_snippets

    rows = read_movie_snippets(download_sdist(Path(cache_dir) if cache_dir else WORK / "vader"))
    return [(text, score) for _, score, text in rows]


def vader_split(seed: int = 0, n_train: int = 8000, n_test: int = 2000) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Seeded stratified train/test split of the snippets as (text, `positive`|`negative`).

    Snippets rated exactly 0 (37) and repeats of an earlier text (2) are dropped, leaving 10,566
    (5,241 positive, 5,325 negative); each class is shuffled with `seed` and split in proportion,
    so both parts keep the overall class balance and never share a text.
    """
    import random

    rows, seen, dropped_zero, dropped_dup = vader_movie_snippets(), set(), 0, 0
    by_label: dict[str, list[str]] = {"negative": [], "positive": []}
    for text, score in rows:
        if score == 0:
            dropped_zero += 1
        elif text in seen:
            dropped_dup += 1
        else:
            seen.add(text)
            by_label["positive" if score > 0 else "negative"].append(text)
    total = sum(len(v) for v in by_label.values())
    if n_train + n_test > total:
        raise ValueError(f"n_train + n_test = {n_train + n_test} but only {total} snippets are usable")
    rng = random.Random(seed)
    train, test = [], []
    n_pos_test = round(n_test * len(by_label["positive"]) / total)
    n_pos_train = round(n_train * len(by_label["positive"]) / total)
    for label, n_te, n_tr in (("positive", n_pos_test, n_pos_train), ("negative", n_test - n_pos_test, n_train - n_pos_train)):
        texts = sorted(by_label[label])
        rng.shuffle(texts)
        test += [(t, label) for t in texts[:n_te]]
        train += [(t, label) for t in texts[n_te : n_te + n_tr]]
    rng.shuffle(train)
    rng.shuffle(test)
    print(
        f"VADER movie snippets: {len(rows)} rows, dropped {dropped_zero} rated 0 and {dropped_dup} repeated texts; "
        f"{total} usable → {len(train)} train ({n_pos_train} positive) / {len(test)} test ({n_pos_test} positive), seed {seed}",
        flush=True,
    )
    return train, test


def few_shot(rows: list[tuple[str, str]], per_class: int, seed: int) -> list[tuple[str, str]]:
    """`per_class` seeded-random rows of each label (in a seeded-random order)."""
    import random

    rng = random.Random(seed)
    picked = []
    for label in sorted({lab for _, lab in rows}):
        picked += rng.sample([r for r in rows if r[1] == label], per_class)
    rng.shuffle(picked)
    return picked


def write_text_csv(rows: list[tuple[str, str]], path: Path) -> Path:
    """Write (text, label) rows as a UTF-8 `text,label` CSV that `graft train` reads."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def vader_split_csvs(seed: int = 0, n_train: int = 8000, n_test: int = 2000, limit: int | None = None) -> tuple[Path, Path]:
    """`vader_split` written to benchmarks/_work/vader-split/{train,test}-...csv; `limit` keeps the first N of each."""
    train, test = vader_split(seed, n_train, n_test)
    if limit:
        train, test = train[:limit], test[:limit]
    tag = f"s{seed}-{len(train)}-{len(test)}"
    folder = WORK / "vader-split"
    return write_text_csv(train, folder / f"train-{tag}.csv"), write_text_csv(test, folder / f"test-{tag}.csv")


def parse_setting(text: str) -> tuple[str, object]:
    """`KEY=VALUE` from a `--…-setting` flag; the value is JSON when it parses (numbers, booleans)."""
    import json

    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
