"""``POST /feedback`` with the database down: which version made each prediction is
unknown, yet a label that no registered version's task takes is the client's to fix,
a 422 naming it (it was a 503, as if a retry could help); a label some version would
take waits for the database (503)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from serving.services import services
from tests.ports import free_port
from tests.postgres import PostgresServer
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

_CLASS_LABEL = "must be a class label (a string, an integer or a boolean)"


@pytest.fixture
def unreachable(make_settings: Callable[..., Settings]) -> Iterator[Callable[[], FlaskClient]]:
    """``unreachable()``: a server whose database nothing listens for (a refused
    connection), built when called: after the test has set its registry up."""
    apps: list[Flask] = []

    def factory() -> FlaskClient:
        url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
        apps.append(create_app(make_settings(database_url=url), registry=CollectorRegistry()))
        return apps[-1].test_client()

    yield factory
    for app in apps:
        shutdown(app, timeout=10)
        services(app).engine.dispose()


def _error(response: Any) -> tuple[int, str, list[dict[str, str]]]:
    error = response.json["error"]
    return response.status_code, error["code"], error.get("details", [])


def test_a_label_no_version_takes_is_422_naming_it_with_the_database_down(
    unreachable: Callable[[], FlaskClient],
) -> None:
    """Every version is a regression model: "abc" is no prediction's label. Ids that
    are malformed or sent twice are named too: no database makes them right."""
    client = unreachable()

    one = client.post("/feedback", json={"id": "0123abcd", "actual": "abc"})
    batch = client.post(
        "/feedback",
        json={
            "items": [
                {"id": "0123abcd.0", "actual": 1.5},
                {"id": "0123abcd.01", "actual": 2.0},
                {"id": "0123abcd.1", "actual": None},
                {"id": "0123abcd.0", "actual": 1.5},
            ]
        },
    )

    assert _error(one) == (
        422,
        "validation_error",
        [{"field": "actual", "problem": "must be a number"}],
    )
    status, code, details = _error(batch)
    assert (status, code) == (422, "validation_error")
    assert [(d["field"], d["problem"][:20]) for d in details] == [
        ("items[1].id", "is no prediction id "),
        ("items[2].actual", "must be a number"),
        ("items[3].id", "'0123abcd.0' appears"),
    ]


def test_a_label_some_version_could_take_waits_for_the_database(
    unreachable: Callable[[], FlaskClient], registry_dir: Path, classifier_trained: TrainedModel
) -> None:
    """A classifier registered beside the served regression model: "abc" may be the
    class of one of its predictions, and a price of the served model's, so both wait
    for the database; null is neither a price nor a class."""
    ModelRegistry(registry_dir).register(classifier_trained, make_current=False)
    client = unreachable()

    price = client.post("/feedback", json={"id": "0123abcd", "actual": 180000})
    a_class = client.post("/feedback", json={"id": "0123abcd", "actual": "abc"})
    nothing = client.post("/feedback", json={"id": "0123abcd", "actual": None})

    assert _error(price)[:2] == (503, "database_unavailable")
    assert _error(a_class)[:2] == (503, "database_unavailable")
    assert _error(nothing) == (
        422,
        "validation_error",
        [{"field": "actual", "problem": f"{_CLASS_LABEL}, got null"}],
    )


def test_a_version_whose_task_cannot_be_read_leaves_any_label_to_the_database(
    unreachable: Callable[[], FlaskClient], registry_dir: Path, trained: TrainedModel
) -> None:
    """v2's metadata is damaged: its predictions' labels could be classes."""
    ModelRegistry(registry_dir).register(trained, make_current=False)
    (registry_dir / "versions" / "v2" / "metadata.json").write_text("{not json")
    client = unreachable()

    response = client.post("/feedback", json={"id": "0123abcd", "actual": "abc"})

    assert _error(response)[:2] == (503, "database_unavailable")


@pytest.mark.integration
@pytest.mark.postgres
def test_a_label_no_version_takes_is_422_while_postgresql_is_stopped(
    private_postgres: PostgresServer, make_settings: Any
) -> None:
    url = private_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app(make_settings(database_url=url), registry=CollectorRegistry())
    client = app.test_client()
    try:
        private_postgres.stop(mode="immediate")
        try:
            bad = client.post("/feedback", json={"id": "0123abcd", "actual": "abc"})
            good = client.post("/feedback", json={"id": "0123abcd", "actual": 180000})
        finally:
            private_postgres.start()
    finally:
        shutdown(app, timeout=30)
        services(app).engine.dispose()

    assert _error(bad) == (
        422,
        "validation_error",
        [{"field": "actual", "problem": "must be a number"}],
    )
    assert _error(good)[:2] == (503, "database_unavailable")


def test_the_registry_s_tasks_are_read_once_until_a_version_changes(
    unreachable: Callable[[], FlaskClient],
    registry_dir: Path,
    trained: TrainedModel,
    classifier_trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the database down, every /feedback request read the metadata of every
    registered version but the served one (a file read and its validation each); they
    are read once, and again only for a version registered, removed or rewritten since."""
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False)
    client = unreachable()
    reads: list[str] = []
    read = ModelRegistry.metadata
    me = threading.get_ident()

    def counted(self: ModelRegistry, version: str) -> Any:
        if threading.get_ident() == me:  # not the model watcher's thread
            reads.append(version)
        return read(self, version)

    monkeypatch.setattr(ModelRegistry, "metadata", counted)

    def abc() -> int:
        return client.post("/feedback", json={"id": "0123abcd", "actual": "abc"}).status_code

    assert abc() == 422
    first = len(reads)
    assert [abc() for _ in range(5)] == [422] * 5
    assert len(reads) == first, reads  # nothing changed: nothing read again

    def read_by(status: int) -> list[str]:
        before = len(reads)
        assert abc() == status
        return reads[before:]

    registry.register(classifier_trained, make_current=False)  # v3: "abc" may be its class
    assert read_by(503) == ["v3"]
    assert read_by(503) == []
    registry.set_status("v3", "rejected", reason="test")  # its metadata rewritten
    assert read_by(503) == ["v3"]
    shutil.rmtree(registry_dir / "versions" / "v3")
    assert read_by(422) == []


def test_a_version_s_metadata_made_readable_again_is_read_again(
    unreachable: Callable[[], FlaskClient], registry_dir: Path, trained: TrainedModel
) -> None:
    """What could not be read is not kept: once repaired, its task counts."""
    ModelRegistry(registry_dir).register(trained, make_current=False)
    metadata = registry_dir / "versions" / "v2" / "metadata.json"
    good = metadata.read_bytes()
    metadata.write_text("{not json")
    client = unreachable()

    def abc() -> int:
        return client.post("/feedback", json={"id": "0123abcd", "actual": "abc"}).status_code

    assert abc() == 503
    metadata.write_bytes(good)
    assert abc() == 422
