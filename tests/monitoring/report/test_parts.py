"""The report's pure parts: reading --since/--until, binning two samples alike, and
the page's charts from records alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.report.distributions import categorical_histogram, numeric_histogram
from monitoring.report.period import parse_moment
from monitoring.report.svg import nice_ticks, time_ticks
from watchkeeper.cli import main

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T08:30+02:00", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_since_and_until_read_times_dates_and_spans(text: str, moment: datetime) -> None:
    assert parse_moment(text, now=NOW) == moment


def test_an_unreadable_time_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="ISO 8601 .* span back from now"):
        parse_moment("yesterday", now=NOW)


def test_numeric_samples_share_bins_and_extremes_land_in_the_outer_ones() -> None:
    rng = np.random.default_rng(3)
    reference = pd.Series(np.append(rng.normal(0, 1, 999), np.nan))
    current = pd.Series(np.append(rng.normal(1, 1, 500), [1e9, np.nan, np.nan]))

    hist = numeric_histogram(reference, current, bins=10)

    assert len(hist.edges) == 11 and len(hist.reference) == len(hist.current) == 10
    assert (hist.reference_total, hist.current_total) == (1000, 503)
    assert (hist.reference_missing, hist.current_missing) == (1, 2)
    assert hist.current[-1] >= 1  # the 1e9 is counted, at the top
    assert hist.edges[-1] < 10  # and does not stretch the bins


def test_categories_are_ordered_by_share_and_the_rarest_pooled() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20 + [None] * 5)
    current = pd.Series(["d"] * 60 + ["a"] * 40)

    hist = categorical_histogram(reference, current, top=2)

    assert hist.labels == ("d", "a", "other")
    assert hist.reference == (0, 50, 50)
    assert hist.current == (60, 40, 0)
    assert (hist.reference_missing, hist.current_missing) == (5, 0)


def test_axis_ticks_are_round() -> None:
    assert nice_ticks(0, 23_000, 4) == [0, 10_000, 20_000]
    assert nice_ticks(0, 0.13, 4) == [0, 0.05, 0.1]
    ticks = time_ticks(NOW, NOW + timedelta(seconds=50))
    assert [label for _, label in ticks] == [
        "12:00:00",
        "12:00:10",
        "12:00:20",
        "12:00:30",
        "12:00:40",
        "12:00:50",
    ]
    days = time_ticks(NOW, NOW + timedelta(days=10))
    assert all(len(label) == 10 for _, label in days)  # dates, not times


def test_the_command_refuses_an_unreadable_period_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "report.html"

    assert main(["report", "--since", "yesterday", "--output", str(output)]) == 1

    assert capsys.readouterr().err.startswith("error: 'yesterday' is neither an ISO 8601 time")
    assert not output.exists()
