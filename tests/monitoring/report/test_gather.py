"""The report's records gathered from a real prediction log written by the prediction
server and evaluated by the monitor: an empty period, a period without drift, a period
with drift, and one model version out of two."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from monitoring.monitor import Monitor
from monitoring.report.build import thresholds
from monitoring.report.gather import gather
from monitoring.report.page import render
from monitoring.report.records import AccuracyKind, Period, ReportData, Verdict
from serving.app import create_app, shutdown
from serving.services import services
from tests.conftest import json_record
from watchkeeper import retrain_queue
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel


def _gather(settings: Settings, period: Period | None = None) -> ReportData:
    engine = create_engine(settings.storage.database_url)
    try:
        registry = ModelRegistry(settings.storage.registry_path)
        return gather(engine, registry, period or Period(), thresholds(settings))
    finally:
        engine.dispose()


def _training_years(ames: Dataset, trained: TrainedModel, n: int) -> list[dict[str, Any]]:
    """Sales of the years the model was trained on: no drift to find."""
    frame = ames.between(None, 200712).frame[list(trained.model.schema.names)]
    sample = frame.sample(n=n, random_state=11)
    return [json_record(row) for _, row in sample.iterrows()]


def test_an_empty_log_gives_an_empty_report_that_says_so(settings: Settings) -> None:
    data = _gather(settings)

    assert data.predictions == 0
    assert (data.windows, data.accuracy, data.requests, data.runs) == ((), (), (), ())
    assert (data.versions, data.drifted_features, data.ood_rows) == ((), (), ())
    page = render(data)
    for section in ("summary", "timeline", "drifted-features", "ood-rows", "versions"):
        assert f'id="{section}"' in page
    assert "No windows, accuracy results or retraining in this period." in page
    assert "No feature drifted in this period." in page


def test_drift_and_ood_of_a_period_and_nothing_before_it(
    settings: Settings,
    server: Flask,
    replay_records: list[dict[str, Any]],
    ames: Dataset,
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    ids = send_predictions(server, replay_records, 1000)
    actual = ames.between(200901, None).frame["Sale_Price"].tolist()
    items = [{"id": pid, "actual": float(actual[i])} for i, pid in enumerate(ids[:200])]
    assert server.test_client().post("/feedback", json={"items": items}).status_code == 200
    assert make_monitor().run_once() == 2

    data = _gather(settings)

    assert data.predictions == 1000
    assert [w.n_rows for w in data.windows] == [500, 500]
    # 2009–2010 sales against a 2006–2007 model: the drift is real
    assert all(w.dataset_drift.verdict is Verdict.DRIFT for w in data.windows)
    assert all(w.ood_fraction is not None and w.quality is not None for w in data.windows)
    realised = [p for p in data.accuracy if p.kind is AccuracyKind.REALISED]
    assert [p.labels for p in realised] == [200]
    shown = data.drifted_features
    assert 0 < len(shown) <= 8
    assert len(shown) + len(data.drifted_not_shown) == len(
        set().union(*(w.drifted_features for w in data.windows))
    )
    for comparison in shown:
        assert comparison.p_value < comparison.threshold
        assert comparison.histogram.reference_total == len(
            ModelRegistry(settings.storage.registry_path).reference("v1")
        )
        assert comparison.histogram.current_total == 500
    assert len(data.ood_rows) == 20
    scores = [row.score for row in data.ood_rows]
    assert scores == sorted(scores, reverse=True)
    assert data.ood_rows[0].threshold is not None
    (version,) = data.versions
    assert (version.version, version.predictions, version.labels) == ("v1", 1000, 200)
    assert version.is_current and version.realised_mae == pytest.approx(realised[0].mae)

    before = _gather(settings, Period(until=datetime(2000, 1, 1, tzinfo=UTC)))
    assert before.predictions == 0
    assert (before.windows, before.accuracy, before.versions, before.ood_rows) == ((), (), (), ())


def test_a_period_without_drift_shows_no_drifted_feature(
    settings: Settings,
    server: Flask,
    ames: Dataset,
    trained: TrainedModel,
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    send_predictions(server, _training_years(ames, trained, 500), 500)
    assert make_monitor().run_once() == 1

    data = _gather(settings)

    (window,) = data.windows
    assert window.dataset_drift.verdict is Verdict.NO_DRIFT
    assert window.drifted_features == ()
    assert (data.drifted_features, data.drifted_not_shown, data.requests) == ((), (), ())
    assert "No feature drifted in this period." in render(data)


def test_a_version_filter_keeps_that_version_only(
    settings: Settings,
    server: Flask,
    trained: TrainedModel,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    send_predictions(server, replay_records, 500)
    ModelRegistry(settings.storage.registry_path).register(trained)  # v2 becomes current
    second = create_app(settings, registry=CollectorRegistry())
    try:
        send_predictions(second, replay_records[500:], 600)
    finally:
        shutdown(second)
        services(second).engine.dispose()
    assert make_monitor().run_once() == 2  # v1: 500; v2: 500 (100 more wait for the next)

    for version, predictions in (("v1", 500), ("v2", 600)):
        data = _gather(settings, Period(model_version=version))
        assert data.predictions == predictions
        assert {w.model_version for w in data.windows} == {version}
        assert [v.version for v in data.versions] == [version]
        assert {r.model_version for r in data.ood_rows} == {version}
        assert {c.model_version for c in data.drifted_features} <= {version}
    both = _gather(settings)
    assert [v.version for v in both.versions] == ["v1", "v2"]
    assert [v.is_current for v in both.versions] == [False, True]


def test_values_from_the_log_are_escaped_in_the_page(settings: Settings) -> None:
    engine = create_engine(settings.storage.database_url)
    hostile = '<img src=x onerror="alert(1)">'
    retrain_queue.enqueue(engine, trigger="manual", reason=hostile, model_version="v1")
    engine.dispose()

    data = _gather(settings)

    (request,) = data.requests
    assert request.reason == hostile
    page = render(data)
    assert hostile not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_a_window_that_failed_a_check_shows_as_an_error(
    settings: Settings,
    server: Flask,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send_predictions(server, replay_records, 500)
    monitor = make_monitor()
    suite = monitor.suite("v1")

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr(suite, "multivariate_drift", broken)
    assert monitor.run_once() == 1

    (window,) = _gather(settings).windows
    assert window.multivariate_drift.verdict is Verdict.ERROR
    assert "classifier exploded" in (window.multivariate_drift.error or "")
    assert window.dataset_drift.verdict is Verdict.DRIFT
