"""Values a client may send, through the server's log into the monitor, on both
databases. Text in a category: a NUL character (which PostgreSQL's text type cannot
hold), a line separator, a backslash and quotes, an astral-plane character; each must
be answered, logged as sent and counted as an unseen category. Numbers near the largest
float where the schema sets no bounds. No window may fail on any of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from monitoring.monitor import Monitor
from watchkeeper.db.engine import create_engine
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import predictions, window_results
from watchkeeper.settings import Settings

HOSTILE = ["nul\x00inside", "line\u2028sep", 'back\\slash "quoted"', "astral \U0001f3e0"]


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


def test_hostile_category_text_is_logged_as_sent_and_read_by_the_monitor(
    server: Flask,
    settings: Settings,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    records = [dict(replay_records[i % len(replay_records)]) for i in range(500)]
    for i, text in enumerate(HOSTILE):
        records[10 * i]["Neighborhood"] = text
    ids = send_predictions(server, records, 500)
    assert len(ids) == 500

    monitor = make_monitor()
    assert monitor.run_once() == 1
    engine = create_engine(settings.storage.database_url)
    try:
        with engine.connect() as connection:
            results = [r._mapping for r in connection.execute(sa.select(window_results))]
            rows = connection.execute(
                sa.select(predictions).where(predictions.c.prediction_id.in_(ids[:40]))
            ).all()
            features = feature_records(connection, rows)
            by_id = {r.prediction_id: f for r, f in zip(rows, features, strict=True)}
    finally:
        engine.dispose()
    assert not [r for r in results if "error" in r["details"]]
    quality = next(r for r in results if r["detector"] == "data_quality")
    unseen = quality["details"]["features"]["Neighborhood"]["unseen_category_rate"]
    assert unseen >= len(HOSTILE) / 500
    assert [by_id[ids[10 * i]]["Neighborhood"] for i in range(len(HOSTILE))] == HOSTILE


def test_features_near_the_largest_float_are_judged_without_an_error(
    server: Flask,
    settings: Settings,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    """±1.7e308 is accepted for a feature without bounds (Longitude): every check must
    judge the window without an error or a NumPy warning (warnings are errors here)."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(500)]
    for i in range(0, 500, 2):
        records[i]["Longitude"] = 1.7e308 if i % 4 else -1.7e308
        records[i]["Latitude"] = 1.7e308
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
