"""Fixtures for retraining: a prediction log of 2008–2010 sales with their true prices
as feedback, written through the real prediction server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from retrain.job import RetrainJob
from serving.app import create_app, shutdown
from serving.services import services
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}", log_flush_interval=0.02
    )
    engine = create_engine(settings.storage.database_url)
    upgrade(engine)
    engine.dispose()
    return settings


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = create_engine(settings.storage.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def labelled_log(settings: Settings, ames: Dataset) -> int:
    """Predict every 2008–2010 sale through the API and post its price as feedback."""
    app = create_app(settings, registry=CollectorRegistry())
    client = app.test_client()
    frame = ames.between(200801, 201012).frame
    names = list(services(app).model_store.get().model.schema.names)
    records = orjson.loads(frame[names].to_json(orient="records"))
    ids: list[str] = []
    for start in range(0, len(records), 500):
        response = client.post("/predict", json={"instances": records[start : start + 500]})
        ids += [item["id"] for item in response.json["predictions"]]
    assert services(app).prediction_log.flush(timeout=120)
    items = [{"id": i, "actual": float(p)} for i, p in zip(ids, frame["Sale_Price"], strict=True)]
    assert client.post("/feedback", json={"items": items}).status_code == 200
    shutdown(app)
    services(app).engine.dispose()
    return len(ids)


@pytest.fixture
def make_job(settings: Settings, engine: sa.Engine) -> Callable[..., RetrainJob]:
    def factory(**kwargs: Any) -> RetrainJob:
        overrides = kwargs.pop("settings", {})
        return RetrainJob(
            settings.replace(**overrides),
            engine,
            ModelRegistry(settings.storage.registry_path),
            **kwargs,
        )

    return factory
