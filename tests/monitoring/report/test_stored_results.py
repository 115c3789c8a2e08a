"""The report reads each stored result's details into the check's typed record, leniently:
a row whose details fit no record leaves its figures out of the page, and the rest of
the window, and of the period, is still drawn."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitoring.report import stored_results
from monitoring.report.records import AccuracyKind, Period, Verdict
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import window_results

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _row(detector: str, details: Any, *, score: float | None = 0.1, **more: Any) -> dict:
    return {
        "window_id": "v1:1-500",
        "model_version": "v1",
        "detector": detector,
        "first_seq": 1,
        "last_seq": 500,
        "n_rows": 500,
        "started_at": AT,
        "ended_at": AT,
        "evaluated_at": AT,
        "is_drift": None,
        "score": score,
        "details": details,
        **more,
    }


def test_details_that_fit_no_record_leave_only_their_figures_out(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    rows = [
        _row(
            "data_quality",
            {
                "features": {"Lot_Area": {"missing_rate": 0.2, "out_of_range_rate": 0.0}},
                "requests": {"requests": 10, "rejected": 1, "rate": 0.1},
            },
        ),
        _row("ood", {"threshold": "high", "outliers": 3}, score=0.3),  # fits no record
        _row("feature_drift", {"error": "ValueError: broken"}, score=None),
        _row(
            "accuracy",
            {
                "labels": 40,
                "mae": 12.0,
                "rmse": 15.0,
                "mape": None,
                "coverage": 0.9,
                "label_delay_seconds_median": 60.0,
                "label_delay_seconds_max": 90.0,
                "labelled_share": 0.08,
                "validation_mae": 11.0,
            },
            score=12.0,
        ),
        _row("accuracy_rolling", {"labels": "forty"}, score=13.0, window_id="v1:rolling-1"),
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(window_results), rows)

    stored = stored_results.read(engine, Period())
    engine.dispose()

    (window,) = stored.windows
    assert window.quality is not None and window.quality.missing.feature == "Lot_Area"
    assert window.quality.missing.rate == 0.2
    assert window.ood_fraction == 0.3 and window.ood_threshold is None  # a column, a detail
    assert window.dataset_drift.verdict is Verdict.ERROR
    realised, rolling = sorted(stored.accuracy, key=lambda p: p.kind is AccuracyKind.ROLLING)
    assert (realised.mae, realised.labels, realised.validation_mae) == (12.0, 40, 11.0)
    # the score column is still drawn; the figures its details would add are left out
    assert rolling.kind is AccuracyKind.ROLLING
    assert (rolling.mae, rolling.labels, rolling.validation_mae) == (13.0, None, None)
