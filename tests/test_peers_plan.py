"""The peers benchmark's pure pieces (benchmarks/peers/plan.py): run order, verdicts, the table.

The benchmark itself (peer venvs, minutes of training) is not part of the suite; RESULTS.md
"Peers side by side" has its figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))
import plan  # noqa: E402


def test_each_group_alternates_its_order_every_round():
    order = plan.schedule(["fastai", "graftkit-finetune", "hf-trainer", "graftkit-text"], rounds=3)
    assert order == [
        (0, "fastai"), (0, "graftkit-finetune"), (0, "hf-trainer"), (0, "graftkit-text"),
        (1, "graftkit-finetune"), (1, "fastai"), (1, "graftkit-text"), (1, "hf-trainer"),
        (2, "fastai"), (2, "graftkit-finetune"), (2, "hf-trainer"), (2, "graftkit-text"),
    ]  # fmt: skip


def test_schedule_refuses_unknown_sides_and_no_rounds():
    with pytest.raises(ValueError, match="unknown side.*'fastia'"):
        plan.schedule(["fastia"], 3)
    with pytest.raises(ValueError, match="--rounds"):
        plan.schedule(["fastai"], 0)


def test_verdict_needs_both_speed_and_accuracy():
    assert plan.verdict(0.80, 130.0, 0.80, 100.0, 1.3) == (1.3, "met")  # equal accuracy counts
    ratio, word = plan.verdict(0.80, 120.0, 0.85, 100.0, 1.3)
    assert ratio == pytest.approx(1.2) and word == "not met (speed 1.20× < 1.3×)"
    assert plan.verdict(0.80, 500.0, 0.79, 100.0, 1.3)[1] == "not met (accuracy -1.0 pt)"


def test_table_reports_medians_ranges_and_the_frozen_phase_against_the_probe():
    rows = [
        {"side": "fastai", "accuracy": a, "wall_s": w, "frozen_accuracy": 0.7, "frozen_s": f}
        for a, w, f in ((0.80, 100.0, 50.0), (0.82, 120.0, 60.0), (0.81, 110.0, 55.0))
    ] + [
        {"side": "graftkit-finetune", "accuracy": 0.83, "wall_s": 80.0},
        {"side": "graftkit-finetune", "accuracy": 0.84, "wall_s": 70.0},
        {"side": "graftkit-probe", "accuracy": 0.79, "wall_s": 10.0},
        {"side": "graftkit-probe", "accuracy": 0.0, "wall_s": 1.0, "ok": False},  # a failed run is left out
    ]
    lines = plan.table(rows).splitlines()
    assert len(lines) == 5  # header, rule, and the three fastai rows: no Keras or text rows without data
    assert "| 0.810 (0.800–0.820) | 0.835 (0.830–0.840) | 110 (100–120) | 75 (70–80) | **1.47×** |" in lines[2]
    assert lines[2].endswith("| met |")
    assert "| 55 (50–60) | 10 (10–10) | **5.50×** |" in lines[3] and lines[3].endswith("| met |")
    # the whole fastai recipe against the probe: 11× faster, but 2 points less accurate
    assert "fastai `fine_tune` vs graftkit `linear-probe`" in lines[4] and "**11.00×**" in lines[4]
    assert lines[4].endswith("| not met (accuracy -2.0 pt) |")
