"""A serving worker never answers with nothing while some version will load: started
while ``CURRENT`` names a bad version, it falls back to a good one, says so on
``/readyz`` (still 200) and in ``watchkeeper_model_fallback``, and serves. Malformed
metadata is one clear, counted refusal, and the refusal's text goes once the served
version is the current one again."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest

from serving.metric_files import SizedFilesCollector
from serving.model_store import ModelStore
from serving.services import services
from tests.bad_versions import BAD_CURRENT, flip_byte, make_current_bad, point_current
from tests.processes import Process, children, metric, wait_for
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _metrics(app: Flask) -> str:
    return app.test_client().get("/metrics").get_data(as_text=True)


@sqlite_only
@pytest.mark.parametrize("kind", BAD_CURRENT)
def test_a_worker_starting_on_a_bad_current_serves_the_last_good_version_degraded(
    make_app: Callable[..., Flask],
    registry_dir: Path,
    trained: TrainedModel,
    record: dict[str, Any],
    kind: str,
) -> None:
    wanted = make_current_bad(registry_dir, trained, kind)

    app = make_app()
    client = app.test_client()

    response = client.post("/predict", json={"features": record})
    assert response.status_code == 200, response.json
    assert response.json["model_version"] == "v1"
    ready = client.get("/readyz")
    assert ready.status_code == 200  # a load balancer keeps sending it traffic
    assert ready.json["status"] == "degraded"
    model = ready.json["checks"]["model"]
    assert model["ok"] is True and model["version"] == "v1" and model["degraded"] is True
    assert model["wanted"] == wanted
    assert f"{wanted} not loaded, serving v1" in model["reload_error"]
    text = _metrics(app)
    assert metric(text, "watchkeeper_model_fallback") == 1
    assert metric(text, "watchkeeper_model_reloads_total", outcome="failed") == 1


@sqlite_only
def test_degraded_readiness_matches_its_documented_schema(
    make_app: Callable[..., Flask], registry_dir: Path, trained: TrainedModel
) -> None:
    import jsonschema

    make_current_bad(registry_dir, trained, "flipped-byte")
    client = make_app().test_client()
    spec = client.get("/openapi.json").json

    ready = client.get("/readyz").json
    schema = spec["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]
    jsonschema.Draft202012Validator(
        {**schema["schema"], "components": spec["components"]}
    ).validate(ready)
    assert ready["status"] == "degraded"


@sqlite_only
def test_fallback_ends_when_current_names_a_version_that_loads(
    make_app: Callable[..., Flask], registry_dir: Path, trained: TrainedModel
) -> None:
    make_current_bad(registry_dir, trained, "flipped-byte")
    app = make_app()
    store: ModelStore = services(app).model_store
    assert store.refresh() is False  # the refused version is not retried every poll

    ModelRegistry(registry_dir).register(trained)  # v3, good, current

    assert store.refresh() is True
    ready = app.test_client().get("/readyz").json
    assert ready["status"] == "ready"
    assert ready["checks"]["model"] == {"ok": True, "version": "v3"}
    text = _metrics(app)
    assert metric(text, "watchkeeper_model_fallback") == 0
    assert metric(text, "watchkeeper_model_reloads_total", outcome="failed") == 1


@sqlite_only
@pytest.mark.parametrize("versions", [1, 2], ids=["nothing-to-fall-back-to", "on-a-fallback"])
def test_a_refused_version_is_loaded_once_its_files_are_restored_and_current_written_again(
    make_app: Callable[..., Flask],
    registry_dir: Path,
    trained: TrainedModel,
    record: dict[str, Any],
    versions: int,
) -> None:
    """The repair a refusal asks for: restore the version's files, roll back to it.
    ``CURRENT`` then names the same version again, by a new move: it is retried."""
    registry = ModelRegistry(registry_dir)
    wanted = registry.register(trained) if versions == 2 else "v1"
    model_file = registry_dir / "versions" / wanted / "model.skops"
    aside = model_file.with_name("model.skops.aside")
    model_file.rename(aside)
    app = make_app()
    store: ModelStore = services(app).model_store
    assert store.refresh() is False  # not retried every poll while CURRENT stays

    aside.rename(model_file)
    registry.set_current(wanted)  # `watchkeeper model rollback <wanted>`

    assert store.refresh() is True
    client = app.test_client()
    response = client.post("/predict", json={"features": record})
    assert response.status_code == 200 and response.json["model_version"] == wanted
    assert client.get("/readyz").json["status"] == "ready"
    assert metric(_metrics(app), "watchkeeper_model_fallback") == 0


def test_a_starting_worker_prefers_the_version_its_siblings_serve(
    registry_dir: Path, trained: TrainedModel
) -> None:
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False)  # v2: good, never promoted
    make_current_bad(registry_dir, trained, "flipped-byte")  # v3

    alone = ModelStore(registry)
    beside_v1 = ModelStore(registry, served_elsewhere=lambda: ["v1"])

    assert alone.load_current().version == "v2"  # the newest good one before v3
    assert beside_v1.load_current().version == "v1"
    assert beside_v1.fallback is not None and beside_v1.fallback.wanted == "v3"


@sqlite_only
def test_nothing_to_fall_back_to_leaves_the_worker_unready(
    make_app: Callable[..., Flask], registry_dir: Path, record: dict[str, Any]
) -> None:
    flip_byte(registry_dir, "v1")

    app = make_app()
    client = app.test_client()

    assert client.post("/predict", json={"features": record}).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["model"]["ok"] is False


@sqlite_only
@pytest.mark.parametrize("kind", ["metadata-without-interval", "metadata-a-list"])
def test_malformed_metadata_is_one_counted_refusal_and_its_error_goes_on_rollback(
    app: Flask,
    registry_dir: Path,
    trained: TrainedModel,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store: ModelStore = services(app).model_store
    client = app.test_client()
    wanted = make_current_bad(registry_dir, trained, kind)

    with caplog.at_level(logging.ERROR):
        for _ in range(3):  # three polls
            assert store.refresh() is False

    [refusal] = [r for r in caplog.records if r.name == "serving.model_store"]
    assert refusal.exc_info is None, "a refusal is one line, not a traceback"
    assert f"metadata of {wanted!r} is malformed" in refusal.getMessage()
    model = client.get("/readyz").json["checks"]["model"]
    assert f"metadata of {wanted!r} is malformed" in model["reload_error"]
    assert metric(_metrics(app), "watchkeeper_model_reloads_total", outcome="failed") == 1

    point_current(registry_dir, "v1")  # rolled back to the version still served
    assert store.refresh() is False

    ready = client.get("/readyz").json
    assert ready["status"] == "ready" and "reload_error" not in ready["checks"]["model"]
    assert metric(_metrics(app), "watchkeeper_model_fallback") == 0


def _worker_metrics(multiproc_dir: Path, pid: int) -> str:
    """One gunicorn worker's metrics: its own multiprocess files read on their own."""
    with tempfile.TemporaryDirectory() as directory:
        for path in multiproc_dir.glob(f"*_{pid}.db"):
            shutil.copy(path, directory)
        registry = CollectorRegistry()
        SizedFilesCollector(registry, path=directory)  # its file may not be sized yet
        return generate_latest(registry).decode()


def _restart(server: Process, worker: int, multiproc_dir: Path) -> int:
    """SIGKILL ``worker``; return its replacement's pid once that serves a fallback."""
    master = server.process.pid
    before = set(children(master))
    os.kill(worker, signal.SIGKILL)
    assert wait_for(lambda: len(set(children(master)) - before) == 1, timeout=60)
    [new] = set(children(master)) - before

    def serving() -> bool:
        return metric(_worker_metrics(multiproc_dir, new), "watchkeeper_model_fallback") == 1

    assert wait_for(serving, timeout=90, interval=0.2), server.log_path.read_text()[-3000:]
    return new


@pytest.mark.integration
def test_workers_restarted_while_current_is_corrupt_keep_serving_what_their_siblings_serve(
    start_watchkeeper: Callable[..., Process],
    registry_dir: Path,
    tmp_path: Path,
    trained: TrainedModel,
    replay_records: list[dict[str, Any]],
) -> None:
    server = start_watchkeeper(
        "serve", WATCHKEEPER_WORKERS="2", WATCHKEEPER_MODEL_POLL_SECONDS="0.2"
    )
    multiproc_dir = tmp_path / "var" / "prometheus-multiproc"
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False)  # v2: good, never promoted
    make_current_bad(registry_dir, trained, "flipped-byte")  # v3 becomes current
    assert wait_for(
        lambda: (
            metric(server.get("/metrics").text, "watchkeeper_model_reloads_total", outcome="failed")
            == 2
        ),
        timeout=60,
    )

    one, other = children(server.process.pid)
    first = _restart(server, one, multiproc_dir)
    second = _restart(server, other, multiproc_dir)  # now no worker ever saw v1 current

    statuses, versions = [], set()
    for i in range(300):
        response = server.post(
            "/predict", json={"features": replay_records[i % len(replay_records)]}
        )
        statuses.append(response.status_code)
        if response.status_code == 200:
            versions.add(response.json()["model_version"])
    assert statuses.count(200) == 300, sorted(set(statuses))
    assert versions == {"v1"}, "every worker serves the same version"
    for pid in (first, second):
        own = _worker_metrics(multiproc_dir, pid)
        assert metric(own, "watchkeeper_model_info", model_version="v1", task="regression") == 1
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
