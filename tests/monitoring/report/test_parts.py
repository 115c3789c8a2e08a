"""The report's pure parts: reading --since/--until, binning two samples alike, and
the page's charts and words from records alone."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring.report import page
from monitoring.report.charts import (
    Point,
    Series,
    TimeAxis,
    accuracy_chart,
    line_chart,
    verdict_lanes,
)
from monitoring.report.distributions import categorical_histogram, numeric_histogram
from monitoring.report.period import parse_moment
from monitoring.report.records import (
    AccuracyKind,
    AccuracyPoint,
    Check,
    ClassAccuracyPoint,
    FeatureComparison,
    Histogram,
    Period,
    ReportData,
    RetrainRequest,
    RetrainRun,
    Thresholds,
    Verdict,
    WindowSummary,
)
from monitoring.report.svg import nice_ticks, time_ticks
from monitoring.report.wording import summary_line
from watchkeeper_cli.main import main

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


NORMAL = list(np.random.default_rng(5).normal(-93.6, 0.03, 1319))  # Longitude-like


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (NORMAL, [1.7e308, -1.7e308] * 20),  # accepted for Longitude: it has no bounds
        (NORMAL, [-1.7976931348623157e308, 1.7976931348623157e308] * 20),
        ([1.7976931348623157e308] * 30, [1.7976931348623157e308] * 40),
    ],
    ids=["both-signs", "the-largest-floats", "one-value-at-the-top"],
)
def test_numbers_at_the_ends_of_floats_range_get_finite_increasing_bins(
    reference: list[float], current: list[float]
) -> None:
    """The edges were ``linspace(low, high)``: ``high - low`` overflowed to infinity,
    the edges came out NaN and the whole report failed (``bins`` must increase); one
    value at the top, widened by 0.5 either side, stayed one value."""
    hist = numeric_histogram(pd.Series(reference), pd.Series(current), bins=10)

    edges = np.array(hist.edges)
    assert np.isfinite(edges).all() and (np.diff(edges) > 0).all()
    assert sum(hist.current) == len(current) and sum(hist.reference) == len(reference)


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


def test_a_line_chart_of_a_value_near_the_largest_float_keeps_its_axis() -> None:
    """``high * 1.1`` overflowed for a realised MAE over ~1.63e308 (a label of 1.8e308
    is valid): no ticks, and every point drawn on the zero line."""
    axis = TimeAxis(NOW, NOW + timedelta(hours=1))
    points = (
        Point(NOW, 1.7976931348623157e308, "realised"),
        Point(NOW + timedelta(hours=1), 16_934.0, "estimated"),
    )

    svg = line_chart("MAE", [Series("MAE", points)], axis)

    ticks = re.findall(r'<text class="tick"[^>]* text-anchor="end">([^<]+)</text>', svg)
    assert len(ticks) >= 3 and ticks[0] == "0"  # the value axis
    heights = [
        float(y) for y in re.findall(r'<circle class="dot[^"]*" cx="[0-9.]+" cy="([0-9.]+)"', svg)
    ]
    assert len(heights) == 2 and heights[0] < heights[1] - 100  # the huge one at the top


def test_the_command_refuses_an_unreadable_period_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "report.html"

    assert main(["report", "--since", "yesterday", "--output", str(output)]) == 1

    assert capsys.readouterr().err.startswith("error: 'yesterday' is neither an ISO 8601 time")
    assert not output.exists()


# -- the page's words, from records alone ----------------------------------------

THRESHOLDS = Thresholds(p_value=0.05, ood_fraction=0.1, mae_degradation=0.25, drift_windows=3)


def _window(n: int) -> WindowSummary:
    drift = Check(Verdict.DRIFT, 0.5)
    return WindowSummary(
        window_id=f"v1:{n}-{n}",
        model_version="v1",
        started_at=NOW + timedelta(minutes=n),
        ended_at=NOW + timedelta(minutes=n + 1),
        n_rows=1,
        first_seq=n,
        last_seq=n,
        dataset_drift=drift,
        output_drift=drift,
        multivariate_drift=drift,
        drifted_features=("exper",),
        ood_fraction=0.0,
        ood_threshold=3.0,
        quality=None,
    )


def _request(n: int) -> RetrainRequest:
    return RetrainRequest(n, NOW, "monitor", "drift", "v1", "done", n)


def _run(n: int, champion: dict[str, float], candidate: dict[str, float]) -> RetrainRun:
    return RetrainRun(
        id=n,
        started_at=NOW + timedelta(minutes=n),
        finished_at=NOW + timedelta(minutes=n, seconds=30),
        trigger="monitor",
        reason="drift",
        champion_version=f"v{n}",
        candidate_version=f"v{n + 1}",
        outcome="promoted",
        decision_reason="better",
        champion_mae=champion.get("mae"),
        candidate_mae=candidate.get("mae"),
        champion_log_loss=champion.get("log_loss"),
        candidate_log_loss=candidate.get("log_loss"),
        champion_accuracy=champion.get("accuracy"),
        candidate_accuracy=candidate.get("accuracy"),
    )


CLASSIFIER_RUN = ({"log_loss": 0.5323, "accuracy": 0.73}, {"log_loss": 0.5103, "accuracy": 0.767})
REGRESSION_RUN = ({"mae": 55_945.0}, {"mae": 29_511.0})


def _class_point(kind: AccuracyKind) -> ClassAccuracyPoint:
    return ClassAccuracyPoint(kind, "v1", "v1:1-1", NOW, NOW, 0.78, 1, 0.806)


def _mae_point() -> AccuracyPoint:
    return AccuracyPoint(AccuracyKind.REALISED, "v1", NOW, NOW, 36_629.0, 1, 19_949.0)


def _data(n: int, **records: Any) -> ReportData:
    return ReportData(
        period=Period(),
        generated_at=NOW,
        thresholds=THRESHOLDS,
        predictions=n,
        windows=tuple(_window(i) for i in range(n)),
        requests=tuple(_request(i) for i in range(n)),
        runs=tuple(_run(i, *REGRESSION_RUN) for i in range(n)),
        **records,
    )


def test_counts_of_one_are_singular_in_the_summary_line_and_the_cards() -> None:
    one, two = _data(1), _data(2)

    assert summary_line(one) == (
        "1 prediction, 1 window (1 with dataset drift), 1 retrain request, 1 run"
    )
    assert summary_line(two) == (
        "2 predictions, 2 windows (2 with dataset drift), 2 retrain requests, 2 runs"
    )
    cards = page.summary(one)
    for name in ("prediction", "window evaluated", "window with dataset drift"):
        assert f'<div class="name">{name}</div>' in cards
    assert '<div class="name">retrain request</div>' in cards
    assert '<div class="name">retraining run (promoted)</div>' in cards
    assert '<div class="name">retrain requests</div>' in page.summary(two)


def test_counts_of_one_are_singular_in_the_charts_titles() -> None:
    data = _data(1, accuracy=(_mae_point(),), class_accuracy=(_class_point(AccuracyKind.REALISED),))
    timeline = page.timeline(data)

    assert "window v1:0-0, 1 row\n" in timeline
    assert "0.0% of 1 row out of distribution" in timeline
    assert "on 1 label\n" in timeline and "1 labels" not in timeline


def test_a_feature_that_drifted_in_its_versions_only_window_says_so() -> None:
    histogram = Histogram(("a", "b"), (), (1, 2), (2, 1), 0, 0)
    comparison = FeatureComparison(
        "exper",
        False,
        "chi2",
        9.0,
        0.001,
        0.01,
        f"v1:{1 << 20}-{(3 << 20) + 7}",
        "v1",
        1,
        1,
        histogram,
    )

    section = page.drifted_features(_data(1, drifted_features=(comparison,)))

    # named by its requests and items, not by its stored positions
    assert "in window v1:1-3.7, the only window of v1." in section
    assert "1 of 1 windows" not in section
    assert "<title>a: 1 row (33.3%)</title>" in section


def _thresholds(data: ReportData) -> str:
    """The timeline's sentence on the retrain thresholds."""
    return page.timeline(data).split('<p class="figures">', 1)[1].split("</p>", 1)[0]


def test_a_classifiers_accuracy_drop_is_in_points_and_a_mae_rise_in_percent() -> None:
    estimate = _class_point(AccuracyKind.ESTIMATED)
    classifier = _thresholds(_data(1, class_accuracy=(estimate,)))
    regression = _thresholds(_data(1, accuracy=(_mae_point(),)))
    both = _thresholds(_data(1, accuracy=(_mae_point(),), class_accuracy=(estimate,)))

    assert "accuracy 5.0 points below validation" in classifier
    assert "%" not in classifier.split("accuracy", 1)[1].split("validation", 1)[0]
    assert "MAE" not in classifier  # no regression threshold for a classifier's report
    assert "MAE 25% above validation)" in regression and "points" not in regression
    assert "MAE 25% above validation" in both
    assert "a classifier's accuracy 5.0 points below validation" in both


def test_small_errors_are_written_by_their_scale_in_the_charts() -> None:
    """A 0/1-scale target's MAE of 0.0157 read `0`, its limit `retrain above 0` and a
    run's figures `candidate MAE 0, champion 0`."""
    point = AccuracyPoint(AccuracyKind.REALISED, "v1", NOW, NOW, 0.0157, 40, 0.0236)
    data = replace(_data(1, accuracy=(point,)), runs=(_run(1, {"mae": 0.0236}, {"mae": 0.0157}),))
    axis = TimeAxis(NOW - timedelta(hours=1), NOW + timedelta(hours=1))

    mae = accuracy_chart(data, axis)
    lanes = verdict_lanes(data, axis)

    assert "realised MAE of v1: 0.0157 on 40 labels" in mae
    assert f"v1: retrain above {0.0236 * (1 + THRESHOLDS.mae_degradation):.3g}" in mae
    assert "candidate MAE 0.0157, champion 0.0236" in lanes


def _runs_table(data: ReportData) -> str:
    section = page.retraining(data)
    return section[section.index("<h3>Runs</h3>") :]


def test_a_classifiers_runs_show_its_gate_figures_and_no_empty_mae() -> None:
    data = replace(_data(1), runs=(_run(1, *CLASSIFIER_RUN),))

    table = _runs_table(data)

    assert "MAE" not in table
    for header in ("champion log-loss", "candidate log-loss"):
        assert f">{header}</th>" in table
    for header in ("champion accuracy", "candidate accuracy"):
        assert f">{header}</th>" in table
    for cell in ("0.5323", "0.5103", "73.0%", "76.7%"):
        assert f">{cell}</td>" in table
    assert ">—</td>" not in table


def test_regression_runs_keep_their_mae_columns() -> None:
    table = _runs_table(replace(_data(1), runs=(_run(1, *REGRESSION_RUN),)))

    assert ">champion MAE</th>" in table and ">55,945</td>" in table
    assert "log-loss" not in table and "accuracy" not in table


def test_a_report_with_both_tasks_shows_each_runs_own_figures() -> None:
    data = replace(_data(1), runs=(_run(1, *REGRESSION_RUN), _run(2, *CLASSIFIER_RUN)))

    rows = _runs_table(data).split("<tr>")[2:]

    regression, classifier = rows
    assert "MAE 55,945" in regression and "MAE 29,511" in regression
    assert "log-loss" not in regression
    assert "log-loss 0.5323, accuracy 73.0%" in classifier
    assert "log-loss 0.5103, accuracy 76.7%" in classifier
    assert "MAE" not in classifier
