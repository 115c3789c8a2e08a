"""Feature values the server accepts (any finite number where the schema sets no
bounds) but no house has: ±1.7e308. The monitor must read them and judge every window
without an error or a NumPy warning (warnings are errors in these tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring.monitor import Monitor
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import window_results
from watchkeeper.settings import Settings

HUGE = 1.7e308


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(
        database_url=database_url,
        monitor_window_size=500,
        monitor_min_samples=200,
        monitor_settle_seconds=0,
        log_flush_interval=0.02,
        log_write_interval=0.02,
    )


def test_features_near_the_largest_float_are_judged_without_an_error(
    server: Any,
    settings: Settings,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    records = [dict(replay_records[i % len(replay_records)]) for i in range(500)]
    for i in range(0, 500, 2):
        records[i]["Longitude"] = HUGE if i % 4 else -HUGE
        records[i]["Latitude"] = HUGE
    assert len(send_predictions(server, records, 500)) == 500

    monitor = make_monitor()
    assert monitor.run_once() == 1
    engine = create_engine(settings.storage.database_url)
    try:
        with engine.connect() as connection:
            results = [r._mapping for r in connection.execute(sa.select(window_results))]
    finally:
        engine.dispose()
    assert results
    assert not [(r["detector"], r["details"]["error"]) for r in results if "error" in r["details"]]
