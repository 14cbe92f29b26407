"""The benchmarks' shared bookkeeping of timed comparisons (`benchmarks/_common.py`): sides
alternated round by round, "median [min, max]", and a verdict that says when a target sits inside
the round-to-round noise instead of calling it met."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _common  # noqa: E402
from _common import alternating, median_spread, within_noise  # noqa: E402


def test_alternating_reverses_the_order_of_the_sides_every_other_round():
    pairs = list(alternating(["plain", "graftkit"], 4))
    assert pairs == [(0, "plain"), (0, "graftkit"), (1, "graftkit"), (1, "plain"),
                     (2, "plain"), (2, "graftkit"), (3, "graftkit"), (3, "plain")]  # fmt: skip
    firsts = [pairs[2 * r][1] for r in range(4)]
    assert firsts.count("plain") == firsts.count("graftkit")  # neither side always goes first


def test_alternating_refuses_no_rounds_or_no_sides():
    with pytest.raises(ValueError, match="0 rounds"):
        list(alternating("AB", 0))
    with pytest.raises(ValueError, match="0 sides"):
        list(alternating([], 3))


def test_median_spread_quotes_the_median_and_the_range():
    assert median_spread([39.4, 28.5, 37.9], ".1f") == "37.9 [28.5, 39.4]"
    assert median_spread([1.08, 0.92], ".2f", "×") == "1.00× [0.92×, 1.08×]"


def test_within_noise_confirms_only_what_every_round_confirms():
    assert within_noise([0.98, 1.01, 0.99], 0.97).startswith("met:")
    assert within_noise([0.80, 0.95, 0.90], 0.97).startswith("not met:")
    # The old loop-overhead rounds (±25 % round to round) straddle a 3 % target: no verdict.
    noisy = [42.6 / 28.5, 36.2 / 37.9, 39.1 / 39.4]
    assert within_noise(noisy, 0.97).startswith("inside the noise:")
    assert within_noise([0.41, 0.45, 0.39], 0.6, higher_is_better=False).startswith("met:")
    assert within_noise([0.55, 0.65, 0.70], 0.6, higher_is_better=False).startswith("inside the noise:")


def test_within_noise_gives_no_verdict_on_fewer_than_three_rounds():
    assert within_noise([1.5, 1.4], 0.97).startswith("too few rounds to judge (2 < 3)")


def test_the_helpers_doctests_hold():
    result = doctest.testmod(_common)
    assert result.attempted >= 9 and result.failed == 0
