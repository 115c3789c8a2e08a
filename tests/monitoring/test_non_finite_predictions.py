"""A window holding predictions the model returned as NaN or an infinity (logged as
they were, see tests/serving/test_non_finite_predictions.py) is evaluated like any other:
those rows are left out of the output drift test and of the accuracy figures, and
counted there, instead of turning the window's figures into NaN or infinity."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from monitoring.monitor import Monitor
from tests.monitoring.test_monitor import _results, _write_log
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import feedback
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

NON_FINITE = {10: math.nan, 20: math.inf, 30: -math.inf}


def test_a_window_with_non_finite_predictions_is_evaluated_without_them(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
) -> None:
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1000)]
    predicted = [float(v) for v in trained.model.predict(pd.DataFrame(records)).value]
    finite = list(predicted)
    for i, value in NON_FINITE.items():
        predicted[i] = value
    _write_log(settings, records, predicted)
    engine = create_engine(settings.storage.database_url)
    now = datetime.now(UTC)
    with engine.begin() as connection:  # labels for the first 100 predictions
        labels = [
            {"prediction_id": f"p{i:08d}", "actual": 1.1 * finite[i], "received_at": now}
            for i in range(100)
        ]
        connection.execute(feedback.insert(), labels)
        stored = connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar()
    engine.dispose()
    assert stored == 1000
    monitor = make_monitor()

    assert monitor.run_once() == 2

    results = _results(settings)
    assert not [r for r in results if "error" in r["details"]]
    output = sorted(
        (r for r in results if r["detector"] == "output_drift"), key=lambda r: r["first_seq"]
    )
    expected = monitor.suite("v1").output_drift(
        [v for i, v in enumerate(predicted[:500]) if i not in NON_FINITE]
    )
    assert output[0]["score"] == expected.p_value
    assert output[0]["details"]["distance"] == expected.distance
    assert [r["details"]["non_finite_predictions"] for r in output] == [3, 0]
    (accuracy,) = (r for r in results if r["detector"] == "accuracy")
    mae = sum(0.1 * finite[i] for i in range(100) if i not in NON_FINITE) / 97
    assert accuracy["score"] is not None and math.isclose(accuracy["score"], mae, rel_tol=1e-9)
    assert accuracy["details"]["labels"] == 97
    assert accuracy["details"]["non_finite_predictions"] == 3
    assert sum(monitor.status.window_errors.values()) == 0
