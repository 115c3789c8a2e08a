"""Accuracy before the labels arrive: the model learns its expected absolute error when
trained, the registry keeps it inside the hashed model artifact, and the monitor's
per-window estimate is checked against the MAE realised from the replay's known labels.

Figures (train 2006–2007, 200-row windows of 2008–2010 sales; ``bench/estimate_bench.py``
prints them): the estimate is 7–8 % off the realised MAE on average over the windows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.estimated_accuracy import read_estimates
from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor
from serving.app import create_app, shutdown
from serving.services import services
from tests.conftest import json_record
from tests.processes import metric
from watchkeeper import loss_estimator
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import predictions, window_results
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

WINDOW = 200
TARGET = 0.20
"""Mean over the windows of |estimated - realised| / realised, at most."""


def _window_means(values: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """Means over consecutive windows of ``size`` rows; a short tail is dropped, as the
    monitor leaves an incomplete window for later."""
    whole = len(values) // size * size
    return values[:whole].reshape(-1, size).mean(axis=1)


def _relative_errors(estimated: np.ndarray, realised: np.ndarray) -> np.ndarray:
    return np.abs(estimated - realised) / realised


def _replay(ames: Dataset, trained: TrainedModel, order: str | None = None) -> pd.DataFrame:
    """The 2008–2010 sales in sale-date order (or ordered by a feature), with the
    model's prediction, its realised and its expected absolute error."""
    frame = ames.between(200801, None).frame
    if order is not None:
        frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    features = frame[list(trained.model.schema.names)]
    predicted = trained.model.predict(features).value
    expected = trained.model.expected_absolute_errors(features, predicted)
    assert expected is not None
    actual = frame["Sale_Price"].to_numpy(dtype=np.float64)
    return pd.DataFrame({"realised": np.abs(actual - predicted), "expected": expected})


def test_training_learns_the_expected_absolute_error_and_the_registry_keeps_it(
    ames: Dataset, trained: TrainedModel, registry_dir: Any
) -> None:
    features = ames.between(200901, None).frame[list(trained.model.schema.names)]
    predicted = trained.model.predict(features).value

    loaded = ModelRegistry(registry_dir).load("v1").model  # from model.skops, hash-checked

    assert loaded.has_loss_estimator
    expected = trained.model.expected_absolute_errors(features, predicted)
    np.testing.assert_array_equal(loaded.expected_absolute_errors(features, predicted), expected)
    assert expected is not None and np.all(expected >= 0)


def test_estimated_mae_is_within_20_percent_of_the_realised_mae_on_the_ames_replay(
    ames: Dataset, trained: TrainedModel
) -> None:
    replay = _replay(ames, trained)

    estimated = _window_means(replay["expected"].to_numpy())
    realised = _window_means(replay["realised"].to_numpy())

    errors = _relative_errors(estimated, realised)
    assert len(errors) == 8
    assert errors.mean() < TARGET, (estimated.round(), realised.round())
    # measured 7.9 %: an estimator learnt from worse errors than the model's (forward
    # folds' smaller models) read 17 % high and still passed the 20 % target
    assert errors.mean() < 0.12, (estimated.round(), realised.round())
    assert abs(np.mean((estimated - realised) / realised)) < 0.1  # no systematic bias


def test_the_estimate_follows_a_covariate_shift_a_constant_would_miss(
    ames: Dataset, trained: TrainedModel
) -> None:
    # windows of ever larger houses: the model errs three times more on the largest
    replay = _replay(ames, trained, order="Gr_Liv_Area")

    estimated = _window_means(replay["expected"].to_numpy())
    realised = _window_means(replay["realised"].to_numpy())

    assert realised[-1] > 2.5 * realised[0]
    assert _relative_errors(estimated, realised).mean() < TARGET
    constant = np.full_like(realised, trained.metrics.mae)  # what validation alone says
    assert _relative_errors(constant, realised).mean() > 0.25


def _known_labels(settings: Settings, actual: dict[str, float]) -> dict[int, float]:
    """Each logged prediction's realised absolute error, by seq."""
    engine = create_engine(settings.storage.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(predictions.c.seq, predictions.c.prediction_id, predictions.c.prediction)
        ).all()
    engine.dispose()
    return {seq: abs(actual[pid] - value) for seq, pid, value in rows}


def _stored(settings: Settings, detector: str) -> list[dict[str, Any]]:
    engine = create_engine(settings.storage.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(window_results)
            .where(window_results.c.detector == detector)
            .order_by(window_results.c.first_seq)
        ).all()
    engine.dispose()
    return [dict(row._mapping) for row in rows]


def test_the_monitor_estimates_each_window_and_the_labels_confirm_it(
    settings: Settings,
    ames: Dataset,
    trained: TrainedModel,
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    sales = ames.between(200801, None).frame
    records = [json_record(row) for _, row in sales[list(trained.model.schema.names)].iterrows()]
    app = create_app(settings, registry=CollectorRegistry())
    try:
        ids = send_predictions(app, records, len(records))
    finally:
        shutdown(app)
        services(app).engine.dispose()
    monitor = make_monitor(monitor_window_size=WINDOW, drift_multivariate=False)

    assert monitor.run_once() == len(records) // WINDOW

    engine = create_engine(settings.storage.database_url)
    estimates = read_estimates(engine, "v1")
    engine.dispose()
    stored = _stored(settings, "estimated_accuracy")
    assert [e.window_id for e in estimates] == [r["window_id"] for r in stored]
    assert {r["window_id"] for r in stored} == {r["window_id"] for r in _stored(settings, "ood")}
    assert all(e.n_rows == WINDOW and e.reason is None for e in estimates)
    assert [r["score"] for r in stored] == [e.estimated_mae for e in estimates]
    # when the labels arrive: the realised MAE of each window's own rows
    errors = _known_labels(settings, dict(zip(ids, sales["Sale_Price"].astype(float), strict=True)))
    realised = np.array(
        [
            np.mean([e for s, e in errors.items() if r["first_seq"] <= s <= r["last_seq"]])
            for r in stored
        ]
    )
    estimated = np.array([e.estimated_mae for e in estimates], dtype=np.float64)
    assert _relative_errors(estimated, realised).mean() < TARGET
    assert sum(monitor.status.window_errors.values()) == 0

    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor.status))
    text = generate_latest(registry).decode()
    assert metric(text, "watchkeeper_monitor_estimated_mae", model_version="v1") == (
        pytest.approx(estimated[-1])
    )


def test_a_version_registered_without_an_estimator_is_monitored_without_an_estimate(
    settings: Settings,
    trained: TrainedModel,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    older = copy.deepcopy(trained.model.pipeline)  # as versions were trained before
    delattr(older, loss_estimator.ATTRIBUTE)
    registry = ModelRegistry(settings.storage.registry_path)
    version = registry.register(replace(trained, model=replace(trained.model, pipeline=older)))
    assert not registry.load(version).model.has_loss_estimator
    app = create_app(settings, registry=CollectorRegistry())
    try:
        send_predictions(app, replay_records, 2 * WINDOW)
    finally:
        shutdown(app)
        services(app).engine.dispose()
    monitor = make_monitor(monitor_window_size=WINDOW, drift_multivariate=False)

    assert monitor.run_once() == 2

    stored = _stored(settings, "estimated_accuracy")
    assert [r["model_version"] for r in stored] == [version, version]
    assert all(r["score"] is None for r in stored)
    assert all("no loss estimator" in r["details"]["reason"] for r in stored)
    assert len(_stored(settings, "feature_drift")) == 2  # every other check as before
    assert sum(monitor.status.window_errors.values()) == 0
    registry_ = CollectorRegistry()
    registry_.register(MonitorCollector(monitor.status))
    text = generate_latest(registry_).decode()
    assert "watchkeeper_monitor_estimated_mae" not in text
    assert metric(text, "watchkeeper_monitor_ood_fraction", model_version=version) is not None
