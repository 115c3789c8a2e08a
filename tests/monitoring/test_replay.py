"""End to end on real processes: ``watchkeeper serve`` (gunicorn) and
``watchkeeper monitor``, driven by the replay of 2008–2010 sales with late feedback.
The monitor's /metrics reports windows and accuracy, and what it exports equals what
it stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from monitoring.replay import Replayer, json_records
from tests.processes import Process, metric, wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.db.tables import window_results

pytestmark = pytest.mark.integration

WINDOW = 150
SALES = 600


def test_replay_drives_the_monitor_and_exported_metrics_match_stored_results(
    start_watchkeeper: Callable[..., Process], ames: Dataset, tmp_path: Path
) -> None:
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="2")
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE=str(WINDOW),
        WATCHKEEPER_MONITOR_MIN_SAMPLES="100",
        WATCHKEEPER_MONITOR_MIN_LABELS="50",
    )

    report = Replayer(server.url, feedback_delay=0.5).run(ames.between(200801, 201012), limit=SALES)

    assert (report.accepted, report.rejected, report.feedback_posted) == (SALES, 0, SALES)

    def settled() -> bool:
        text = monitor.get("/metrics").text
        windows = metric(text, "watchkeeper_monitor_windows_evaluated_total")
        labels = metric(text, "watchkeeper_monitor_labels", model_version="v1")
        return windows == SALES // WINDOW and labels == SALES  # every label in: stable

    assert wait_for(settled, timeout=120, interval=0.5), monitor.log_path.read_text()[-3000:]
    text = monitor.get("/metrics").text
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'watchkeeper.db'}")
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(window_results))]
    engine.dispose()

    def latest(detector: str) -> dict[str, Any]:
        mine = [r for r in rows if r["detector"] == detector]
        return max(mine, key=lambda r: (r["last_seq"], r["evaluated_at"]))

    assert (
        len({r["window_id"] for r in rows if r["detector"] == "feature_drift"}) == SALES // WINDOW
    )
    drift = latest("feature_drift")
    assert metric(text, "watchkeeper_monitor_dataset_drift", model_version="v1") == float(
        drift["is_drift"]
    )
    assert metric(text, "watchkeeper_monitor_drifted_features_ratio", model_version="v1") == (
        pytest.approx(drift["score"])
    )
    assert metric(
        text,
        "watchkeeper_monitor_feature_drift_distance",
        model_version="v1",
        feature="Gr_Liv_Area",
    ) == pytest.approx(drift["details"]["distances"]["Gr_Liv_Area"])
    ood = latest("ood")
    assert metric(text, "watchkeeper_monitor_ood_fraction", model_version="v1") == pytest.approx(
        ood["score"]
    )
    # the exported accuracy is the rolling figure over every label (fewer than
    # WATCHKEEPER_MONITOR_ACCURACY_LABELS); each window has its own, by prediction time
    accuracy = max(
        (r for r in rows if r["detector"] == "accuracy_rolling"), key=lambda r: r["evaluated_at"]
    )
    assert metric(text, "watchkeeper_monitor_mae", model_version="v1") == pytest.approx(
        accuracy["score"]
    )
    assert 5_000 < accuracy["score"] < 60_000
    per_window = {r["window_id"]: r["n_rows"] for r in rows if r["detector"] == "accuracy"}
    drift_windows = {r["window_id"] for r in rows if r["detector"] == "feature_drift"}
    assert set(per_window) == drift_windows
    assert sum(per_window.values()) == SALES
    assert metric(text, "watchkeeper_monitor_last_success_timestamp_seconds") > 0
    assert metric(text, "watchkeeper_monitor_errors_total") == 0


def test_categorical_values_are_sent_as_the_text_training_read() -> None:
    """A CSV's True/False column trains as the categories "True" and "False"; sent as
    JSON booleans, every replayed row was refused (422: must be a string)."""
    frame = pd.DataFrame(
        {"flag": [True, False, None], "size": [1.5, np.nan, 2.0], "site": ["a", None, 3]}
    )

    assert json_records(frame, ["flag", "site"]) == [
        {"flag": "True", "size": 1.5, "site": "a"},
        {"flag": "False", "size": None, "site": None},
        {"flag": None, "size": 2.0, "site": "3"},
    ]
