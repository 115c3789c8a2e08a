"""Fixtures for retraining: a prediction log of 2008–2010 sales with their true prices
as feedback, written through the real prediction server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retrain.job import RetrainJob
from tests.retrain.labelled_log import Edit, write_labelled_log
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


@pytest.fixture
def make_labelled_log(settings: Settings, ames: Dataset) -> Callable[..., list[str]]:
    """:func:`write_labelled_log` with the test's settings."""

    def factory(*, records: Edit | None = None, items: Edit | None = None) -> list[str]:
        return write_labelled_log(settings, ames, records=records, items=items)

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
