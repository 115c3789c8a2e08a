"""Fixtures for the monitor: detectors fitted on one part of the training years, so
that the other part is fresh data from the same distribution."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from monitoring.detectors import DetectorSuite
from monitoring.monitor import Monitor
from serving.app import create_app, shutdown
from serving.services import services
from tests.monitoring import classifier_log
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel, TrainingParams, train


@pytest.fixture(scope="session")
def training_split(ames: Dataset, trained: TrainedModel) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = ames.between(None, 200712).frame[list(trained.model.schema.names)]
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    cut = int(len(shuffled) * 0.6)
    return shuffled.iloc[:cut].reset_index(drop=True), shuffled.iloc[cut:].reset_index(drop=True)


@pytest.fixture(scope="session")
def suite(
    training_split: tuple[pd.DataFrame, pd.DataFrame], trained: TrainedModel
) -> DetectorSuite:
    reference, _ = training_split
    predictions = trained.model.predict(reference).value
    return DetectorSuite.fit(trained.model.schema, reference, np.asarray(predictions))


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    migrated_sqlite: Callable[[Path], str],
) -> Settings:
    return make_settings(
        database_url=migrated_sqlite(tmp_path / "log.db"),
        monitor_window_size=500,
        monitor_min_samples=200,
        monitor_settle_seconds=0,
        monitor_min_labels=50,
        log_flush_interval=0.02,
        log_write_interval=0.02,
    )


@pytest.fixture
def server(settings: Settings) -> Any:
    app = create_app(settings, registry=CollectorRegistry())
    yield app
    shutdown(app)
    services(app).engine.dispose()


@pytest.fixture
def send_predictions() -> Callable[..., list[str]]:
    """``send(app, records, n, batch)``: ``n`` predictions through ``app``'s API
    (cycling through ``records``), drained into the log; returns prediction ids."""
    return _send


def _send(app: Flask, records: list[dict[str, Any]], n: int, batch: int = 500) -> list[str]:
    client = app.test_client()
    ids: list[str] = []
    for start in range(0, n, batch):
        chunk = [records[(start + i) % len(records)] for i in range(min(batch, n - start))]
        response = client.post("/predict", json={"instances": chunk})
        assert response.status_code == 200
        ids.extend(item["id"] for item in response.json["predictions"])
    services(app).prediction_log.close()  # drain, then serve on
    services(app).prediction_log = None
    return ids


@pytest.fixture
def make_monitor(settings: Settings) -> Iterator[Callable[..., Monitor]]:
    """A monitor on ``settings`` with fields overridden by keyword."""
    monitors: list[Monitor] = []

    def factory(**overrides: Any) -> Monitor:
        own = settings.replace(**overrides)
        engine = create_engine(own.storage.database_url)
        monitors.append(Monitor(own, engine, ModelRegistry(own.storage.registry_path)))
        return monitors[-1]

    yield factory
    for monitor in monitors:
        monitor.engine.dispose()


@pytest.fixture(scope="session")
def classifier_trained() -> TrainedModel:
    """A binary classifier (``churn``/``stay``) on a known logistic truth
    (:mod:`tests.monitoring.classifier_log`), validated on its last sixth."""
    frame, p = classifier_log.draw(3000, seed=1)
    frame["outcome"] = classifier_log.outcomes(p, seed=2)
    frame["period"] = np.arange(len(frame)) * 6 // len(frame)
    training = Dataset("synthetic", frame[frame.period < 5], "outcome", "period", ("period",))
    validation = Dataset("synthetic", frame[frame.period == 5], "outcome", "period", ("period",))
    return train(training, validation, params=TrainingParams(max_iter=40))


@pytest.fixture(scope="session")
def classifier_template(
    tmp_path_factory: pytest.TempPathFactory, classifier_trained: TrainedModel
) -> Path:
    root = tmp_path_factory.mktemp("classifier-registry")
    ModelRegistry(root).register(classifier_trained)
    return root


@pytest.fixture
def class_settings(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    classifier_template: Path,
    migrated_sqlite: Callable[[Path], str],
) -> Settings:
    """Settings of a monitor whose registry holds the classifier as v1 (current)."""
    registry = tmp_path / "class-registry"
    shutil.copytree(classifier_template, registry)
    return make_settings(
        database_url=migrated_sqlite(tmp_path / "class-log.db"),
        registry_path=registry,
        monitor_window_size=500,
        monitor_min_samples=200,
        monitor_settle_seconds=0,
        monitor_min_labels=50,
        drift_multivariate=False,
    )


@pytest.fixture
def class_monitor(class_settings: Settings) -> Iterator[Monitor]:
    engine = create_engine(class_settings.storage.database_url)
    yield Monitor(class_settings, engine, ModelRegistry(class_settings.storage.registry_path))
    engine.dispose()
