"""A monitor window's verdict as the one line the monitor logs for it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monitoring.verdict import window_verdict
from monitoring.window_result import WindowResult
from tests.monitoring.results import window_result
from watchkeeper.db.prediction_seq import prediction_seq


def result(
    check: str, is_drift: bool | None, score: float | None, n_rows: int = 500, **details: Any
) -> WindowResult:
    return window_result(check, n_rows=n_rows, is_drift=is_drift, score=score, details=details)


def test_a_drifted_window_says_how() -> None:
    results = [
        result("data_quality", None, 0.0),
        result("ood", None, 0.034),
        result("estimated_accuracy", None, 16210.4),
        result(
            "feature_drift",
            True,
            7 / 31,
            drifted=[f"f{i}" for i in range(7)],
            p_values={f"f{i}": 0.5 for i in range(31)},
        ),
        result("output_drift", True, 0.001),
        result("multivariate_drift", False, 0.4),
    ]
    assert window_verdict(results, 200) == (
        "window v1:1-500 (500 rows): DRIFT: 7 of 31 features drifted, output drift, "
        "no multivariate drift; OOD 3.4 %, rejected 0.0 %, estimated MAE 16,210"
    )


def test_a_small_window_has_no_drift_verdict_and_failures_are_named() -> None:
    results = [
        result("data_quality", None, 0.01, n_rows=120),
        result("ood", None, None, n_rows=120, error="ValueError: broken"),
    ]
    assert window_verdict(results, 200) == (
        "window v1:1-120 (120 rows): no drift verdict (fewer than 200 rows); "
        "rejected 1.0 %; failed: ood"
    )


def test_a_quiet_window() -> None:
    results = [
        result("feature_drift", False, 0.0, drifted=[], p_values={"a": 0.9, "b": 0.8}),
        result("ood", None, 0.0),
    ]
    assert window_verdict(results, 200) == (
        "window v1:1-500 (500 rows): no drift: 0 of 2 features drifted; OOD 0.0 %"
    )


def test_a_window_is_named_by_its_requests_and_items_not_its_stored_positions() -> None:
    """Positions are stored as request seq × 2**20 + item: the line read
    ``window v1:1048576-524288000`` for requests 1 to 500."""
    batch = replace(
        window_result("ood", score=0.0, n_rows=90),
        first_seq=prediction_seq(37, 12),
        last_seq=prediction_seq(39, 0),
    )

    assert window_verdict([batch], 200).startswith("window v1:37.12-39 (90 rows): ")


def test_a_small_estimated_error_is_written_by_its_scale_not_as_zero() -> None:
    """A 0/1-scale target's estimated MAE of 0.24 read `estimated MAE 0`."""
    line = window_verdict([result("estimated_accuracy", None, 0.2412)], 200)

    assert line.endswith("; estimated MAE 0.241")
