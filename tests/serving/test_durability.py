"""No log entry is lost: a real PostgreSQL is stopped, or frozen, during a burst of
requests and brought back; every request ends up in the log exactly once, and
readiness answers at once meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from serving.services import services
from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.processes import Process, metric, query, wait_for
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import head_revision, upgrade
from watchkeeper.db.tables import predictions, requests

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _counts(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        n_requests = connection.execute(sa.select(sa.func.count()).select_from(requests)).scalar()
        n_predictions = connection.execute(
            sa.select(sa.func.count()).select_from(predictions)
        ).scalar()
        distinct = connection.execute(
            sa.select(sa.func.count(sa.distinct(requests.c.request_id)))
        ).scalar()
    return int(n_requests), int(n_predictions), int(distinct)


@pytest.mark.parametrize("outage", ["stopped", "stalled"])
def test_database_outage_during_burst_loses_and_duplicates_nothing(
    make_settings: Any,
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
    outage: str,
) -> None:
    """Stopped: connections are refused. Stalled (SIGSTOP): they hang, the worse case,
    where the writer waits in its call without failing and readiness and the metrics
    must still say how long entries have waited."""
    url = private_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    settings = make_settings(
        database_url=url,
        log_flush_interval=0.02,
        log_write_interval=0.02,
        log_batch_bytes=8192,
        log_probe_interval=0.2,
    )
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    log = services(app).prediction_log
    client = app.test_client()
    sent: list[str] = []
    accepted: list[str] = []

    def burst(n: int, offset: int) -> None:
        for i in range(n):
            record = replay_records[(offset + i) % len(replay_records)]
            if i % 10 == 9:  # rejected requests must survive too
                response = client.post("/predict", json={"features": {}})
                assert response.status_code == 422
            else:
                response = client.post("/predict", json={"features": record})
                assert response.status_code == 200
                accepted.append(response.headers["X-Request-ID"])
            sent.append(response.headers["X-Request-ID"])

    try:
        burst(50, 0)
        assert wait_for(lambda: log.queue_depth == 0, timeout=60)
        if outage == "stopped":
            private_postgres.stop(mode="immediate")
        else:
            private_postgres.stall()
        burst(120, 50)  # the server keeps answering while the database is away
        if outage == "stopped":
            assert wait_for(lambda: not log.database_up, timeout=60)
        else:
            assert wait_for(lambda: _stalled(client) >= 0.5, timeout=30)
            assert wait_for(
                lambda: (registry.get_sample_value("watchkeeper_log_stalled_seconds") or 0) >= 0.5
            )
            assert log.database_up  # nothing failed: only the wait tells
        readiness = _timed_get(client, "/readyz")
        assert readiness.elapsed < 1.0, "readiness must not wait on the database"
        assert readiness.status == 200
        if outage == "stopped":
            private_postgres.start()
        else:
            private_postgres.resume()
        burst(50, 500)
        shutdown(app, timeout=60)
    finally:
        if outage == "stalled":
            private_postgres.resume()
        elif not _server_running(private_postgres):
            private_postgres.start()
        services(app).engine.dispose()

    n_requests, n_predictions, distinct = _counts(engine)
    engine.dispose()
    assert len(set(sent)) == len(sent) == 50 + 120 + 50
    assert n_requests == distinct == len(sent)
    assert n_predictions == len(accepted)
    assert list(settings.storage.spill_dir.glob("*.seg")) == []  # all of it drained


def _stalled(client: Any) -> float:
    """``stalled_seconds`` of the prediction log, as readiness reports it."""
    return float(client.get("/readyz").get_json()["checks"]["prediction_log"]["stalled_seconds"])


def test_a_writer_shut_down_during_its_back_off_drains_if_the_database_is_back(
    make_settings: Any,
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
) -> None:
    """The database comes back while the writer waits out its back-off, and the worker
    is stopped before that wait ends: one try at once stores what waits, instead of
    leaving it all to the next process's replay."""
    url = private_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    # The back-off doubles from 50 ms up to the probe interval: after 7 failed tries the
    # writer waits 6.4 s, far longer than the restart and the stop below take.
    settings = make_settings(
        database_url=url, log_flush_interval=0.02, log_write_interval=0.02, log_probe_interval=60
    )
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    client = app.test_client()

    def failed_tries() -> float:
        return registry.get_sample_value("watchkeeper_log_write_errors_total") or 0.0

    # the writer checks the schema before its first write: done before the outage
    assert wait_for(lambda: registry.get_sample_value("watchkeeper_log_schema_pending") == 0)
    private_postgres.stop(mode="immediate")
    try:
        sent = [
            client.post("/predict", json={"features": record}).headers["X-Request-ID"]
            for record in replay_records[:20]
        ]
        assert wait_for(lambda: failed_tries() >= 7, timeout=120)
        private_postgres.start()
        shutdown(app, timeout=60)
    finally:
        if not _server_running(private_postgres):
            private_postgres.start()
        services(app).engine.dispose()

    n_requests, n_predictions, distinct = _counts(engine)
    engine.dispose()
    assert n_requests == distinct == n_predictions == len(set(sent)) == 20
    assert list(settings.storage.spill_dir.glob("*.seg")) == []


@dataclass(frozen=True)
class _Timed:
    status: int
    elapsed: float


def _timed_get(client: Any, path: str) -> _Timed:
    started = time.monotonic()
    response = client.get(path)
    return _Timed(response.status_code, time.monotonic() - started)


def _server_running(server: PostgresServer) -> bool:
    engine = sa.create_engine(server.url(), connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _stored(url: str) -> list[str]:
    """The request ids logged at ``url``; none while the log's table is not created."""
    try:
        return [row[0] for row in query(url, "SELECT request_id FROM requests")]
    except sa.exc.ProgrammingError:
        return []


@pytest.mark.parametrize(
    ("schema", "auto_migrate"), [("current", "false"), ("empty", "true")], ids=["kept", "migrated"]
)
def test_serve_started_while_the_database_is_down_answers_and_stores_every_entry_once_back(
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
    schema: str,
    auto_migrate: str,
) -> None:
    """A replacement started during an outage (the Helm chart runs ``serve``): it starts,
    answers and journals; once the database answers its writer checks the schema
    (migrating an empty one with WATCHKEEPER_AUTO_MIGRATE) and stores every entry once."""
    url = private_postgres.create_database()
    if schema == "current":
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
    private_postgres.stop()
    try:
        server = start_watchkeeper(
            "serve",
            WATCHKEEPER_DATABASE_URL=url,
            WATCHKEEPER_AUTO_MIGRATE=auto_migrate,
            WATCHKEEPER_WORKERS="1",
            WATCHKEEPER_LOG_PROBE_INTERVAL="0.5",
        )
        sent = []
        for record in replay_records[:15]:
            response = server.post("/predict", json={"features": record})
            assert response.status_code == 200
            sent.append(response.headers["X-Request-ID"])
        waiting = server.get("/readyz")
        pending = metric(server.get("/metrics").text, "watchkeeper_log_schema_pending")
    finally:
        private_postgres.start()

    assert waiting.status_code == 200
    assert waiting.json()["checks"]["prediction_log"]["schema_state"] == "pending"
    assert pending == 1
    assert "does not answer" in server.log_path.read_text()
    assert wait_for(lambda: len(_stored(url)) >= len(sent), timeout=60)
    assert sorted(_stored(url)) == sorted(sent)  # each once
    assert server.get("/readyz").json()["checks"]["prediction_log"]["schema_state"] == "current"
    assert metric(server.get("/metrics").text, "watchkeeper_log_schema_pending") == 0


def test_serve_refuses_to_start_on_a_database_that_answers_with_another_schema(
    private_postgres: PostgresServer, tmp_path: Path, registry_dir: Path
) -> None:
    url = private_postgres.create_database()  # not migrated
    environment = {
        **os.environ,
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "var"),
        "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
        "WATCHKEEPER_DATABASE_URL": url,
        "WATCHKEEPER_AUTO_MIGRATE": "false",
        "WATCHKEEPER_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "watchkeeper_cli", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: database schema is at nothing, code needs {head_revision()}: "
        "run `watchkeeper db upgrade`"
    )


def test_a_writer_finding_another_schema_once_the_database_answers_stores_nothing_and_says_so(
    make_settings: Any,
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
) -> None:
    """Started while the database was away (``serve`` could not check), the database
    comes back behind the code: nothing is stored, readiness and the metrics say why,
    and once it is migrated the journal is stored."""
    url = private_postgres.create_database()  # not migrated
    settings = make_settings(
        database_url=url,
        auto_migrate=False,
        log_flush_interval=0.02,
        log_write_interval=0.02,
        log_probe_interval=0.2,
    )
    private_postgres.stop()
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    client = app.test_client()
    try:
        sent = [
            client.post("/predict", json={"features": record}).headers["X-Request-ID"]
            for record in replay_records[:10]
        ]
        waiting = client.get("/readyz").get_json()["checks"]["prediction_log"]
        assert waiting["schema_state"] == "pending"
        private_postgres.start()

        def mismatch() -> bool:
            return registry.get_sample_value("watchkeeper_log_schema_mismatch") == 1

        assert wait_for(mismatch, timeout=30)
        readiness = client.get("/readyz")
        engine = create_engine(url)
        assert sa.inspect(engine).get_table_names() == []  # nothing stored, nothing created
        assert readiness.status_code == 503
        assert readiness.get_json()["checks"]["prediction_log"]["schema_state"] == "mismatch"
        assert services(app).prediction_log.queue_depth == len(sent)
        upgrade(engine)
        assert services(app).prediction_log.flush(timeout=30)
    finally:
        shutdown(app, timeout=10)
        services(app).engine.dispose()
    assert sorted(r[0] for r in query(url, "SELECT request_id FROM requests")) == sorted(sent)
    assert registry.get_sample_value("watchkeeper_log_schema_mismatch") == 0
    engine.dispose()
