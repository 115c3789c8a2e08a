"""Fixtures for the prediction server: an app on a migrated database, its client,
and a way to read back what it logged; small classifiers (three text classes, and
0/1) trained on a synthetic frame, with their own registries and apps; a small disk
of the test's own to fill."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from serving.services import services
from tests.conftest import json_record, running_postgres
from tests.postgres import PostgresServer
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import predictions, requests
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel, TrainingParams, train

CLASSIFIER_ROWS = 400
CLASSIFIER_FEATURES = ("x1", "x2", "colour")


def classification_frame(seed: int, rows: int = CLASSIFIER_ROWS) -> pd.DataFrame:
    """Two numbers and a category; ``grade`` (low/mid/high) follows ``x1`` plus noise,
    ``outcome`` (0/1) follows ``x2`` and the colour."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=rows)
    x2 = rng.uniform(0, 10, size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    score = x1 + rng.normal(scale=0.5, size=rows)
    grade = np.where(score < -0.5, "low", np.where(score > 0.5, "high", "mid"))
    outcome = ((x2 + (colour == "red") * 3 + rng.normal(scale=1.5, size=rows)) > 6).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "grade": grade, "outcome": outcome})


def _train_classifier(target: str) -> TrainedModel:
    other = "outcome" if target == "grade" else "grade"
    frame = classification_frame(seed=1)
    dataset = Dataset(name=f"synthetic-{target}", frame=frame, target=target, exclude=(other,))
    return train(dataset, params=TrainingParams(max_iter=30, reference_rows=300))


@pytest.fixture(scope="session")
def classifier_trained() -> TrainedModel:
    """A classifier of three text classes (``low``, ``mid``, ``high``)."""
    return _train_classifier("grade")


@pytest.fixture(scope="session")
def binary_trained() -> TrainedModel:
    """A classifier of the integer classes 0 and 1."""
    return _train_classifier("outcome")


@pytest.fixture(scope="session")
def classifier_records() -> list[dict[str, Any]]:
    """Request records for either classifier, from rows it did not train on."""
    frame = classification_frame(seed=2, rows=300)[list(CLASSIFIER_FEATURES)]
    return [json_record(row) for _, row in frame.iterrows()]


def _registry_template(factory: pytest.TempPathFactory, name: str, trained: TrainedModel) -> Path:
    root = factory.mktemp(name)
    ModelRegistry(root).register(trained)
    return root


@pytest.fixture(scope="session")
def classifier_registry_template(
    tmp_path_factory: pytest.TempPathFactory, classifier_trained: TrainedModel
) -> Path:
    return _registry_template(tmp_path_factory, "classifier-registry", classifier_trained)


@pytest.fixture(scope="session")
def binary_registry_template(
    tmp_path_factory: pytest.TempPathFactory, binary_trained: TrainedModel
) -> Path:
    return _registry_template(tmp_path_factory, "binary-registry", binary_trained)


@pytest.fixture
def classifier_app(
    make_app: Callable[..., Flask], tmp_path: Path, classifier_registry_template: Path
) -> Flask:
    """A server whose current (and only) version is the three-class classifier."""
    registry = tmp_path / "classifier-registry"
    shutil.copytree(classifier_registry_template, registry)
    return make_app(registry_path=registry)


@pytest.fixture
def binary_app(
    make_app: Callable[..., Flask], tmp_path: Path, binary_registry_template: Path
) -> Flask:
    """A server whose current (and only) version is the 0/1 classifier."""
    registry = tmp_path / "binary-registry"
    shutil.copytree(binary_registry_template, registry)
    return make_app(registry_path=registry)


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, for tests that stop or freeze it."""
    yield from running_postgres()


@pytest.fixture
def make_app(
    make_settings: Callable[..., Any], database_url: str
) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        overrides.setdefault("database_url", database_url)
        overrides.setdefault("log_flush_interval", 0.05)
        overrides.setdefault("log_write_interval", 0.05)
        app = create_app(make_settings(**overrides), registry=CollectorRegistry())
        apps.append(app)
        return app

    yield factory
    for app in apps:
        shutdown(app, timeout=10)
        services(app).engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def record(replay_records: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(replay_records[0])


class LogReader:
    """Reads the prediction log after draining the app's writer."""

    def __init__(self, app: Flask, url: str) -> None:
        self.app = app
        self.engine = create_engine(url)

    def flush(self) -> None:
        assert services(self.app).prediction_log.flush(timeout=60)

    def requests(self) -> list[dict[str, Any]]:
        self.flush()
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(requests).order_by(requests.c.received_at))
            return [dict(row._mapping) for row in rows]

    def features_text(self, request_id: str) -> str | None:
        """A request's ``features`` as the database holds the text (no JSON decoding)."""
        self.flush()
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.cast(requests.c.features, sa.Text)).where(
                    requests.c.request_id == request_id
                )
            ).scalar()

    def predictions(self) -> list[dict[str, Any]]:
        self.flush()
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(predictions).order_by(predictions.c.seq)).all()
            features = feature_records(connection, rows)
        return [{**row._mapping, "features": f} for row, f in zip(rows, features, strict=True)]


@pytest.fixture
def read_log(database_url: str) -> Iterator[Callable[[Flask], LogReader]]:
    """``read_log(app)``: a reader of what ``app`` logged."""
    readers: list[LogReader] = []

    def factory(app: Flask) -> LogReader:
        readers.append(LogReader(app, database_url))
        return readers[-1]

    yield factory
    for reader in readers:
        reader.engine.dispose()


@pytest.fixture
def log_reader(app: Flask, read_log: Callable[[Flask], LogReader]) -> LogReader:
    return read_log(app)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own, to fill: a journal's disk running out of room
    (a real ENOSPC, which no file size limit gives). Needs root, as CI has."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # lazy: a server process killed by the test may still be closing its files
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill_disk(directory: Path) -> Path:
    """Write a file in ``directory`` until its filesystem has no room left; returns it
    (delete it to give the room back)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "filler"
    block = b"\0" * 4096
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return path
