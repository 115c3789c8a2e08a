"""The monitor over a real prediction log written by the prediction server:
windows, stored results equal to the exported metrics, accuracy from feedback, and
incremental reads that survive a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor
from serving.app import create_app
from tests.processes import metric
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import predictions, window_results
from watchkeeper.settings import Settings


def _results(settings: Settings) -> list[dict[str, Any]]:
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(window_results))]
    engine.dispose()
    return rows


def test_windows_are_evaluated_stored_and_exported_with_accuracy_from_feedback(
    settings: Settings,
    server: Flask,
    replay_records: list[dict[str, Any]],
    ames: Any,
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    ids = send_predictions(server, replay_records, 1200)
    actual = ames.between(200901, None).frame["Sale_Price"].tolist()
    items = [
        {"id": pid, "actual": float(actual[i % len(actual)])} for i, pid in enumerate(ids[:300])
    ]
    assert server.test_client().post("/feedback", json={"items": items}).status_code == 200
    monitor = make_monitor()

    assert monitor.run_once() == 2  # 1,200 rows: two full windows of 500, 200 wait

    results = _results(settings)
    by_detector: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        by_detector.setdefault(row["detector"], []).append(row)
    assert {d: len(rows) for d, rows in by_detector.items()} == {
        "data_quality": 2,
        "ood": 2,
        "feature_drift": 2,
        "output_drift": 2,
        "multivariate_drift": 2,
        "accuracy": 1,
    }
    assert all(row["n_rows"] == 500 for row in by_detector["feature_drift"])
    # 2009–2010 sales against a 2006–2007 model: the drift is real
    assert all(row["is_drift"] for row in by_detector["feature_drift"])
    accuracy = by_detector["accuracy"][0]["details"]
    assert accuracy["labels"] == 300
    assert 5_000 < accuracy["mae"] < 60_000
    assert 0.6 < accuracy["coverage"] <= 1.0
    assert accuracy["label_delay_seconds_median"] >= 0

    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor.status))
    text = generate_latest(registry).decode()
    last_drift = max(by_detector["feature_drift"], key=lambda r: r["last_seq"])
    assert metric(text, "watchkeeper_monitor_dataset_drift", model_version="v1") == 1.0
    assert metric(
        text, "watchkeeper_monitor_drifted_features_ratio", model_version="v1"
    ) == pytest.approx(last_drift["score"])
    assert metric(
        text,
        "watchkeeper_monitor_feature_drift_p_value",
        model_version="v1",
        feature="Neighborhood",
    ) == pytest.approx(last_drift["details"]["p_values"]["Neighborhood"])
    assert metric(text, "watchkeeper_monitor_mae", model_version="v1") == pytest.approx(
        accuracy["mae"]
    )
    assert metric(text, "watchkeeper_monitor_window_size", model_version="v1") == 500
    assert metric(text, "watchkeeper_monitor_windows_evaluated_total") == 2

    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        scored = connection.execute(
            sa.select(sa.func.count())
            .select_from(predictions)
            .where(predictions.c.ood_score.is_not(None))
        ).scalar()
    engine.dispose()
    assert scored == 1000


def test_reads_are_incremental_and_a_restart_neither_rereads_nor_skips(
    settings: Settings,
    server: Flask,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    send_predictions(server, replay_records, 10_000, batch=1000)
    first = make_monitor(monitor_window_size=2000, drift_multivariate=False)

    assert first.run_once() == 5
    assert first.reader.watermark() == 10_000
    assert first.reader.rows_read == 10_000

    restarted = make_monitor(monitor_window_size=2000, drift_multivariate=False)
    exported = ("window_id", "model_version", "is_drift", "score", "n_rows", "details")
    before, after = first.status.latest["feature_drift"], restarted.status.latest["feature_drift"]
    assert {k: after[k] for k in exported} == {k: before[k] for k in exported}
    assert restarted.run_once() == 0
    assert restarted.reader.rows_read == 0

    more = create_app(settings, registry=CollectorRegistry())
    send_predictions(more, replay_records, 2000, batch=1000)
    more.extensions["watchkeeper.model_store"].stop()
    more.extensions["watchkeeper.engine"].dispose()
    assert restarted.run_once() == 1
    assert restarted.reader.rows_read == 2000
    assert restarted.reader.watermark() == 12_000
    windows = {r["window_id"] for r in _results(settings) if r["detector"] == "feature_drift"}
    assert len(windows) == 6
