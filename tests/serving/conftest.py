"""Fixtures for the prediction server: an app on a migrated database, its client,
and a way to read back what it logged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from tests.conftest import running_postgres
from tests.postgres import PostgresServer
from watchkeeper.db.engine import create_engine
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import predictions, requests


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
        app = create_app(make_settings(**overrides), registry=CollectorRegistry())
        apps.append(app)
        return app

    yield factory
    for app in apps:
        shutdown(app, timeout=10)
        app.extensions["watchkeeper.engine"].dispose()


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
        assert self.app.extensions["watchkeeper.prediction_log"].flush(timeout=60)

    def requests(self) -> list[dict[str, Any]]:
        self.flush()
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(requests).order_by(requests.c.received_at))
            return [dict(row._mapping) for row in rows]

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
