"""Window results as the monitor builds them, for tests of what reads them; and as a
monitor stored and exported them, for tests of what it did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.metrics import MonitorCollector
from monitoring.window_result import Check, WindowResult, parse_details
from watchkeeper.db.engine import create_engine
from watchkeeper.db.prediction_seq import prediction_seq
from watchkeeper.db.tables import window_results
from watchkeeper.settings import Settings
from watchkeeper.task import Task

AT = datetime(2026, 1, 1, tzinfo=UTC)

_DELAYS = {"label_delay_seconds_median": 0.0, "label_delay_seconds_max": 0.0}
_REQUIRED: dict[Check, dict[str, Any]] = {
    Check.DATA_QUALITY: {
        "features": {},
        "requests": {"requests": 0, "rejected": 0, "rate": 0.0},
    },
    Check.OOD: {"threshold": 0.0, "outliers": 0},
    Check.FEATURE_DRIFT: {"threshold": 0.05, "drifted": [], "p_values": {}},
    Check.OUTPUT_DRIFT: {"distance": 0.0},
    Check.MULTIVARIATE_DRIFT: {"distance": 0.0},
    Check.ESTIMATED_ACCURACY: {},
    Check.ACCURACY: {"mae": 0.0, "rmse": 0.0, "coverage": 0.0, **_DELAYS},
}
_CLASSIFIER_REQUIRED = {
    **dict.fromkeys(
        ("accuracy", "accuracy_lower_bound", "accuracy_upper_bound", "log_loss", "brier"), 0.0
    ),
    **dict.fromkeys(("set_coverage", "set_size", "ece"), 0.0),
    "recall": {},
    **_DELAYS,
}


def details_of(check: Check, n_rows: int, given: dict[str, Any]) -> Any:
    """The typed details of ``check`` holding the ``given`` figures, with placeholders
    for the figures a test does not name that the record requires."""
    if "error" in given:
        return parse_details(check, given)
    if check in (Check.ACCURACY, Check.ROLLING_ACCURACY):
        task = given.get("task")
        required = (
            _CLASSIFIER_REQUIRED if task == Task.CLASSIFICATION else _REQUIRED[Check.ACCURACY]
        )
        required = {"labels": n_rows, **required}
    else:
        required = _REQUIRED[check]
    if check is Check.ESTIMATED_ACCURACY:
        required = {"n_rows": n_rows}
    return parse_details(check, {**required, **given})


def window_result(
    check: str,
    *,
    window_id: str = "v1:1-500",
    model_version: str = "v1",
    n_rows: int = 500,
    is_drift: bool | None = None,
    score: float | None = None,
    details: dict[str, Any] | None = None,
    evaluated_at: datetime = AT,
) -> WindowResult:
    """A result of ``check``: of requests 1 to ``n_rows``, one prediction each; times
    are placeholders nothing reads."""
    return WindowResult(
        window_id=window_id,
        model_version=model_version,
        check=Check(check),
        first_seq=prediction_seq(1, 0),
        last_seq=prediction_seq(n_rows, 0),
        n_rows=n_rows,
        started_at=AT,
        ended_at=AT,
        evaluated_at=evaluated_at,
        is_drift=is_drift,
        score=score,
        details=details_of(Check(check), n_rows, details or {}),
    )


def stored_results(settings: Settings) -> list[dict[str, Any]]:
    """Every result row the monitor stored in the log of ``settings``."""
    engine = create_engine(settings.storage.database_url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(window_results))]
    engine.dispose()
    return rows


def scraped(status: Any, served: Callable[[], str | None] | None = None) -> str:
    """What the monitor's collector exports for ``status``, as a scrape reads it."""
    registry = CollectorRegistry()
    registry.register(MonitorCollector(status, served))
    return generate_latest(registry).decode()
