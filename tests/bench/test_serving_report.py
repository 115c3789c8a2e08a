"""The serving benchmark's verdicts: a target is met or missed only when the rounds
say so beyond their spread."""

from __future__ import annotations

import pytest

from bench.serving_report import _verdict, median_interval


@pytest.mark.parametrize(
    ("n", "low_rank", "high_rank"),
    [
        (4, 1, 4),  # too few for 90 %: the whole range
        (6, 1, 6),  # P(B < 1) = 1/64 <= 5 %; P(B < 2) = 7/64 > 5 %
        (8, 2, 7),  # P(B < 2) = 9/256
        (12, 3, 10),  # P(B < 3) = 79/4096; P(B < 4) = 299/4096 > 5 %
    ],
)
def test_median_interval_takes_the_order_statistics_of_the_binomial_tail(
    n: int, low_rank: int, high_rank: int
) -> None:
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    assert median_interval(values) == (float(low_rank), float(high_rank))


def test_verdict_is_undecided_when_the_interval_straddles_the_target() -> None:
    assert _verdict((1.02, 1.08), 1.10) == "yes"
    assert _verdict((1.12, 1.30), 1.10) == "NO"
    assert _verdict((1.05, 1.20), 1.10) == "?"
    assert _verdict(None, 1.10) == ""
