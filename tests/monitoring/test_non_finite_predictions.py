"""A window holding predictions the model returned as NaN or an infinity (logged as
they were, see tests/serving/test_non_finite_predictions.py) is evaluated like any other:
those rows are left out of the output drift test and of the accuracy figures, and
counted there, instead of turning the window's figures into NaN or infinity. A
classifier's row whose class probabilities were not numbers is left out of its output
drift, accuracy estimate and accuracy alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.class_accuracy import ClassificationAccuracy, ClassVersion
from monitoring.detectors import DetectorSuite
from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor
from monitoring.verdict import window_verdict
from tests.monitoring.classifier_log import (
    NOW,
    classifier_of,
    draw,
    outcomes,
    write_labels,
    write_rows,
)
from tests.monitoring.log_rows import update_items, write_log
from tests.monitoring.results import stored_results
from tests.processes import metric
from watchkeeper.classification import PredictionSetSpec
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import feedback
from watchkeeper.registry import ModelRegistry
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
    write_log(settings, records, predicted)
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

    results = stored_results(settings)
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


def test_a_window_with_too_few_finite_predictions_gets_no_output_drift_verdict(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
) -> None:
    """A window whose predictions were all NaN or infinite was stored as "no output
    drift" (p 1.0, distance 0: an empty test read as a pass), and exported so. With
    fewer than ``min_samples`` finite predictions there is no verdict, as with too few
    rows; the rows are counted and the gauges say nothing rather than "no drift"."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1000)]
    predicted = [float(v) for v in trained.model.predict(pd.DataFrame(records)).value]
    for i in range(500):  # the first window: no finite prediction at all
        predicted[i] = (math.nan, math.inf, -math.inf)[i % 3]
    for i in range(500, 850):  # the second: 150 finite, under min_samples (200)
        predicted[i] = math.nan
    write_log(settings, records, predicted)
    monitor = make_monitor()

    assert monitor.run_once() == 2

    output = sorted(
        (r for r in stored_results(settings) if r["detector"] == "output_drift"),
        key=lambda r: r["first_seq"],
    )
    assert [r["is_drift"] for r in output] == [None, None]
    assert [r["score"] for r in output] == [None, None]
    assert [r["details"]["non_finite_predictions"] for r in output] == [500, 350]
    assert all("fewer than 200" in r["details"]["reason"] for r in output)
    assert sum(monitor.status.window_errors.values()) == 0
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor.status))
    text = generate_latest(registry).decode()
    assert "watchkeeper_monitor_output_drift" not in text
    assert metric(text, "watchkeeper_monitor_window_size", model_version="v1") == 500
    latest = [r for r in monitor.status.latest.values() if r.window_id == output[1]["window_id"]]
    assert "no output drift verdict" in window_verdict(latest, min_samples=200)


def test_output_drift_refuses_to_judge_no_predictions(suite: DetectorSuite) -> None:
    """An empty test is no evidence of "no drift": the detectors refuse it rather than
    answer p = 1."""
    with pytest.raises(ValueError, match="no prediction"):
        suite.output_drift(np.array([]))


# -- a classifier ----------------------------------------------------------------------

# Rows whose class probabilities the model returned as NaN: serving logs the class as
# NaN and the probabilities as null (JSON has no NaN); the legacy row was logged before
# that, with the arbitrary class argmax made of NaN (0) and the same null probabilities.
NAN_CLASS_ROWS = (10, 20)
LEGACY_ROW = 30


def _log_non_finite_classes(engine: sa.Engine, ids: list[str], n_classes: int) -> None:
    nulls = [None] * n_classes
    update_items(
        engine,
        [ids[i] for i in NAN_CLASS_ROWS],
        prediction=math.nan,
        lower=math.nan,
        upper=math.nan,
        probabilities=nulls,
    )
    update_items(
        engine, [ids[LEGACY_ROW]], prediction=0.0, lower=0.0, upper=0.0, probabilities=nulls
    )


def test_a_classifier_window_with_non_finite_probabilities_is_evaluated_without_them(
    database_url: str, class_settings: Settings, classifier_trained: TrainedModel
) -> None:
    """On SQLite and PostgreSQL: the rows whose probabilities were not numbers are left
    out of the class output drift, the accuracy estimate and the window's and rolling
    accuracy, and counted in each one's details."""
    settings = class_settings.replace(database_url=database_url)
    engine = create_engine(database_url)
    monitor = Monitor(settings, engine, ModelRegistry(settings.storage.registry_path))
    model = classifier_of(classifier_trained)
    frame, p = draw(500, seed=43)
    truth = outcomes(p, seed=44)
    bad = {*NAN_CLASS_ROWS, LEGACY_ROW}
    try:
        ids = write_rows(engine, model, frame)
        _log_non_finite_classes(engine, ids, len(model.classes))
        write_labels(engine, ids[:100], truth[:100])
        assert monitor.run_once() == 1
        by_check = {
            check: [r for r in stored_results(settings) if r["detector"] == check]
            for check in ("accuracy", "accuracy_rolling", "estimated_accuracy", "output_drift")
        }
    finally:
        engine.dispose()

    predicted = model.predict(frame)
    kept = [i for i in range(500) if i not in bad]
    for check, results in by_check.items():
        assert len(results) == 1, check
        assert "error" not in results[0]["details"], (check, results[0]["details"])
        assert results[0]["details"]["non_finite_predictions"] == 3, check
    (output,) = by_check["output_drift"]
    expected = monitor.suite("v1").class_output_drift(
        predicted.index[kept], predicted.probabilities[kept]
    )
    assert output["score"] == pytest.approx(expected.p_value)
    assert output["details"]["window_shares"] == pytest.approx(expected.window_shares)
    (estimate,) = by_check["estimated_accuracy"]
    calibrated = model.calibration.expected_accuracy(predicted.confidence[kept])
    assert estimate["score"] == pytest.approx(float(calibrated.mean()))
    labels = predicted.labels
    right = sum(labels[i] == truth[i] for i in range(100) if i not in bad)
    for check in ("accuracy", "accuracy_rolling"):
        (accuracy,) = by_check[check]
        assert accuracy["details"]["labels"] == 97, check
        assert accuracy["score"] == pytest.approx(right / 97), check
    assert sum(monitor.status.window_errors.values()) == 0


NO_PROBABILITIES = {
    5: [-0.5, -0.2],  # negative: an ECE bin below the first failed every cycle
    6: [1e308, 0.0],  # above 1: its bin overflowed to a negative one
    7: ["0.5", "0.5"],  # text, not numbers
}
"""Stored "probabilities" serving never writes (a buggy writer's, straight into the log)."""


def test_a_classifier_row_whose_probabilities_are_no_probabilities_stops_nothing(
    class_monitor: Monitor, classifier_trained: TrainedModel
) -> None:
    """Such a row has no class to judge: left out of every figure and counted with the
    non-finite ones. Before, its labels raised in the rolling accuracy on every cycle,
    so the labels' watermark never moved and the version's accuracy froze."""
    model = classifier_of(classifier_trained)
    frame, p = draw(500, seed=46)
    truth = outcomes(p, seed=47)
    engine = class_monitor.engine
    ids = write_rows(engine, model, frame)
    for i, probabilities in NO_PROBABILITIES.items():
        update_items(engine, [ids[i]], probabilities=probabilities)
    write_labels(engine, ids[:100], truth[:100])

    assert class_monitor.run_once() == 1
    class_monitor.run_once()  # the labels were read once: nothing is left to fail on

    results = stored_results(class_monitor.settings)
    assert not [(r["detector"], r["details"]) for r in results if "error" in r["details"]]
    by_check = {r["detector"]: r for r in results}
    for check in ("accuracy", "accuracy_rolling", "estimated_accuracy", "output_drift"):
        assert by_check[check]["details"]["non_finite_predictions"] == 3, check
    labels = model.predict(frame).labels
    right = sum(labels[i] == truth[i] for i in range(100) if i not in NO_PROBABILITIES)
    assert by_check["accuracy_rolling"]["score"] == pytest.approx(right / 97)
    assert class_monitor.status.errors == 0
    assert "v1" in class_monitor.status.rolling


def test_labels_of_classless_predictions_alone_measure_nothing() -> None:
    """Every labelled prediction without a class: no figure (NaN), the accuracy only
    known to be within [0, 1], and the rows counted."""
    version = ClassVersion(("a", "b"), PredictionSetSpec(level=0.9, threshold=0.2))
    labelled = pd.DataFrame(
        {
            "prediction": [math.nan, 0.0],  # served with no class; logged before that
            "probabilities": [[None, None], [None, 0.5]],
            "actual": [None, None],
            "label": ["a", "b"],
            "created_at": [NOW, NOW],
            "received_at": [NOW, NOW],
        }
    )

    figures = ClassificationAccuracy.of(labelled, version, confidence=0.99)

    assert figures.labels == 0 and figures.non_finite_predictions == 2
    assert math.isnan(figures.accuracy) and math.isnan(figures.log_loss)
    assert (figures.accuracy_lower_bound, figures.accuracy_upper_bound) == (0.0, 1.0)


def test_a_classifier_window_with_too_few_classed_rows_gets_no_output_drift_verdict(
    class_settings: Settings, classifier_trained: TrainedModel
) -> None:
    """350 of 500 rows' probabilities NaN: 150 classes left, under ``min_samples``
    (200), are no sample to judge the class mix by (an empty one read p = 1.0)."""
    engine = create_engine(class_settings.storage.database_url)
    monitor = Monitor(class_settings, engine, ModelRegistry(class_settings.storage.registry_path))
    model = classifier_of(classifier_trained)
    frame, _ = draw(500, seed=45)
    nulls = [None] * len(model.classes)
    try:
        ids = write_rows(engine, model, frame)
        update_items(
            engine,
            ids[:350],
            prediction=math.nan,
            lower=math.nan,
            upper=math.nan,
            probabilities=nulls,
        )
        assert monitor.run_once() == 1
    finally:
        engine.dispose()

    (output,) = (r for r in stored_results(class_settings) if r["detector"] == "output_drift")
    assert (output["is_drift"], output["score"]) == (None, None)
    assert output["details"]["non_finite_predictions"] == 350
    assert "fewer than 200" in output["details"]["reason"]


def test_a_classifier_window_with_probabilities_of_another_length_still_tests_them(
    class_monitor: Monitor, classifier_trained: TrainedModel
) -> None:
    """Rows of three probabilities among a binary classifier's two (malformed, or
    another model's) stopped the KS test on the positive class's probability for the
    whole window, silently (no figure, no reason). They are left out and counted now;
    the test runs on the rows of the right length."""
    model = classifier_of(classifier_trained)
    frame, _ = draw(500, seed=48)
    engine = class_monitor.engine
    ids = write_rows(engine, model, frame)
    odd = [5, 6, 7]
    update_items(engine, [ids[i] for i in odd], probabilities=[0.2, 0.3, 0.5])

    assert class_monitor.run_once() == 1

    (output,) = (
        r for r in stored_results(class_monitor.settings) if r["detector"] == "output_drift"
    )
    assert "error" not in output["details"]
    assert output["details"]["non_finite_predictions"] == len(odd)
    kept = [i for i in range(500) if i not in odd]
    predicted = model.predict(frame)
    expected = class_monitor.suite("v1").class_output_drift(
        predicted.index[kept], predicted.probabilities[kept]
    )
    assert expected.probability_p_value is not None
    assert output["details"]["probability_p_value"] == pytest.approx(expected.probability_p_value)
    assert output["score"] == pytest.approx(expected.p_value)
