"""Labels the server accepts (any finite number) but no house sold for: ±1e308 or 2**70.
Before, two of them made the rolling MAE infinite and its lower bound NaN, so the
``_mae…`` gauges vanished and the accuracy trigger could not fire until 1,000 newer
labels pushed them out; one exported an MAE of 1e305. They are left out of the
figures and counted (``implausible_labels``), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor
from tests.monitoring.log_rows import exponential_errors, write_log
from tests.monitoring.results import stored_results
from tests.processes import metric
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import feedback
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

EXTREME = {100: 1e308, 200: -1e308, 300: 2.0**70}


def test_extreme_labels_neither_blind_the_accuracy_figures_nor_the_trigger(
    database_url: str,
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
) -> None:
    settings = settings.replace(
        database_url=database_url, monitor_window_size=600, trigger_mae_degradation=0.25
    )
    records = [dict(replay_records[i % len(replay_records)]) for i in range(600)]
    predicted = [float(v) for v in trained.model.predict(pd.DataFrame(records)).value]
    write_log(settings, records, predicted)
    engine = create_engine(database_url)
    monitor = Monitor(settings, engine, ModelRegistry(settings.storage.registry_path))
    validation_mae = monitor.registry.metadata("v1")["metrics"]["mae"]
    # 600 labels 45 % worse than validation: the trigger's case, plus three absurd ones
    errors = exponential_errors(1.45 * validation_mae, len(predicted))
    actual = [
        p + (e if i % 2 else -e) for i, (p, e) in enumerate(zip(predicted, errors, strict=True))
    ]
    for i, value in EXTREME.items():
        actual[i] = value
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(),
            [
                {"prediction_id": f"p{i:08d}", "actual": value, "received_at": now}
                for i, value in enumerate(actual)
            ],
        )
    try:
        monitor.run_once()
    finally:
        engine.dispose()

    results = stored_results(settings)
    kept = [
        abs(p - a)
        for i, (p, a) in enumerate(zip(predicted, actual, strict=True))
        if i not in EXTREME
    ]
    for detector in ("accuracy", "accuracy_rolling"):
        (result,) = (r for r in results if r["detector"] == detector)
        details = result["details"]
        assert details["implausible_labels"] == len(EXTREME)
        assert details["labels"] == 600 - len(EXTREME)
        assert math.isclose(result["score"], np.mean(kept), rel_tol=1e-9)
        for figure in ("mae", "mae_lower_bound", "rmse", "mape", "abs_error_std"):
            assert details[figure] is not None and math.isfinite(details[figure]), figure
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor.status))
    text = generate_latest(registry).decode()
    for gauge in ("mae", "mae_lower_bound", "rmse", "mape_ratio"):
        value = metric(text, f"watchkeeper_monitor_{gauge}", model_version="v1")
        assert value is not None and math.isfinite(value), gauge
    assert metric(text, "watchkeeper_monitor_mae", model_version="v1") < 2 * validation_mae
    assert monitor.status.retrain_requests["accuracy"] == 1
