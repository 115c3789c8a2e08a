"""No log entry is lost: a real PostgreSQL is stopped, or frozen, during a burst of
requests and brought back; every request ends up in the log exactly once, and
readiness answers at once meanwhile."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from serving.services import services
from tests.postgres import PostgresServer
from tests.processes import wait_for
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
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
