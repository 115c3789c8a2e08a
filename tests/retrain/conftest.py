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
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    migrated_sqlite: Callable[[Path], str],
) -> Settings:
    return make_settings(
        database_url=migrated_sqlite(tmp_path / "log.db"),
        log_flush_interval=0.02,
        log_write_interval=0.02,
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = create_engine(settings.storage.database_url)
    yield engine
    engine.dispose()


Edit = Callable[[list[dict[str, Any]]], None]


@pytest.fixture
def make_labelled_log(settings: Settings, ames: Dataset) -> Callable[..., list[str]]:
    """Predict every 2008–2010 sale through the API and post its price as feedback;
    ``records`` and ``items`` edit the request records and the feedback items in place
    first (hostile values a client may send). Returns the prediction ids in time order."""

    def factory(*, records: Edit | None = None, items: Edit | None = None) -> list[str]:
        app = create_app(settings, registry=CollectorRegistry())
        client = app.test_client()
        frame = ames.between(200801, 201012).frame
        names = list(services(app).model_store.get().model.schema.names)
        sent = orjson.loads(frame[names].to_json(orient="records"))
        if records is not None:
            records(sent)
        ids: list[str] = []
        for start in range(0, len(sent), 500):
            response = client.post("/predict", json={"instances": sent[start : start + 500]})
            assert response.status_code == 200, response.get_data(as_text=True)[:500]
            ids += [item["id"] for item in response.json["predictions"]]
        assert services(app).prediction_log.flush(timeout=120)
        labels = [
            {"id": i, "actual": float(p)} for i, p in zip(ids, frame["Sale_Price"], strict=True)
        ]
        if items is not None:
            items(labels)
        assert client.post("/feedback", json={"items": labels}).status_code == 200
        shutdown(app)
        services(app).engine.dispose()
        return ids

    return factory


@pytest.fixture
def labelled_log(make_labelled_log: Callable[..., list[str]]) -> int:
    """Every 2008–2010 sale predicted through the API, its price posted as feedback."""
    return len(make_labelled_log())


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
