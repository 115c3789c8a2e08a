"""The window result record: its row form round-trips through either database, and a
stored row that is not shaped as the monitor writes them is one error naming the column."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring.check_details import (
    CheckError,
    DataQualityDetails,
    FeatureDriftDetails,
    RejectedRequests,
)
from monitoring.monitor import Monitor
from monitoring.window_result import Check, StoredResultError, WindowResult
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import window_results
from watchkeeper.settings import Settings

STARTED = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def _result(**changes: Any) -> WindowResult:
    fields: dict[str, Any] = {
        "window_id": "v1:1-500",
        "model_version": "v1",
        "check": Check.DATA_QUALITY,
        "first_seq": 1,
        "last_seq": 500,
        "n_rows": 500,
        "started_at": STARTED,
        "ended_at": STARTED.replace(minute=5),
        "evaluated_at": STARTED.replace(minute=6),
        "is_drift": None,
        "score": 0.02,
        "details": DataQualityDetails(
            rows_evaluated=500,
            rows_held=500,
            features={"Lot_Area": {"missing_rate": 0.0, "out_of_range_rate": 0.01}},
            requests=RejectedRequests(requests=500, rejected=10, rate=0.02),
        ),
    }
    return WindowResult(**{**fields, **changes})


def _insert(url: str, row: dict[str, Any]) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(window_results.insert().values(**row))
    engine.dispose()


def _read_back(url: str) -> list[WindowResult]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(window_results).order_by(window_results.c.id)).all()
    engine.dispose()
    return [WindowResult.from_row(row._mapping) for row in rows]


def test_a_result_round_trips_through_the_table(database_url: str) -> None:
    quality = _result()
    drift = _result(
        check=Check.FEATURE_DRIFT,
        is_drift=True,
        score=0.25,
        details=FeatureDriftDetails(
            threshold=0.05,
            drifted=["Lot_Area"],
            p_values={"Lot_Area": 0.001, "Year_Built": 0.4},
        ),
    )
    failed = _result(check=Check.OOD, score=None, details=CheckError(error="ValueError: broken"))
    for result in (quality, drift, failed):
        _insert(database_url, result.to_row())

    assert _read_back(database_url) == [quality, drift, failed]
    stored_quality, stored_drift, stored_failed = _read_back(database_url)
    assert stored_quality.rejected_rate == 0.02
    assert stored_quality.feature_rates["Lot_Area"]["out_of_range_rate"] == 0.01
    assert stored_drift.check is Check.FEATURE_DRIFT and stored_drift.drifted == ["Lot_Area"]
    assert stored_failed.failed and stored_failed.error == "ValueError: broken"


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("details", ["not", "a", "mapping"], "'details' is list"),
        ("n_rows", "500", "'n_rows' is str"),
        ("is_drift", 1, "'is_drift' is int"),
        ("score", "0.5", "'score' is str"),
        ("detector", "drift", "'detector' 'drift' is not a check"),
        ("started_at", "2026-03-01", "'started_at' is str"),
    ],
)
def test_a_malformed_stored_row_is_one_error_naming_its_column(
    column: str, value: Any, says: str
) -> None:
    row = {"id": 7, **_result().to_row(), column: value}

    with pytest.raises(StoredResultError, match=says) as raised:
        WindowResult.from_row(row)

    assert "'v1:1-500'" in str(raised.value)  # the row is named too


def test_a_stored_row_without_a_column_names_it() -> None:
    row = _result().to_row()
    del row["evaluated_at"]

    with pytest.raises(StoredResultError, match="no 'evaluated_at'"):
        WindowResult.from_row(row)


def test_a_restarted_monitor_validates_what_it_reads_back(
    settings: Settings, make_monitor: Callable[..., Monitor]
) -> None:
    """The newest stored result of each check is what a restarted monitor exports: a
    malformed one fails its start with the column named, not a later scrape."""
    _insert(settings.storage.database_url, _result().to_row())
    assert make_monitor().status.latest[Check.DATA_QUALITY] == _result()

    _insert(
        settings.storage.database_url,
        {**_result(window_id="v1:501-1000").to_row(), "details": ["not", "a", "mapping"]},
    )
    with pytest.raises(StoredResultError, match="'v1:501-1000'.*'details' is list"):
        make_monitor()
