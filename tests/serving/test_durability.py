"""No log entry is lost: a real PostgreSQL is stopped during a burst of requests and
brought back; every request ends up in the log exactly once (retried in memory for a
short outage, spilled to disk and replayed for a long one)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
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


@pytest.mark.parametrize(
    ("retry_seconds", "outage_requests"),
    [(30.0, 40), (0.2, 120)],
    ids=["short-outage-retried", "long-outage-spilled-and-replayed"],
)
def test_database_outage_during_burst_loses_and_duplicates_nothing(
    postgres_server: PostgresServer,
    make_settings: Any,
    replay_records: list[dict[str, Any]],
    retry_seconds: float,
    outage_requests: int,
) -> None:
    url = postgres_server.create_database()
    engine = create_engine(url)
    upgrade(engine)
    settings = make_settings(
        database_url=url,
        log_flush_interval=0.02,
        log_batch_size=10,
        log_retry_seconds=retry_seconds,
        log_probe_interval=0.2,
    )
    app = create_app(settings, registry=CollectorRegistry())
    log = app.extensions["watchkeeper.prediction_log"]
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
        postgres_server.stop(mode="immediate")
        burst(outage_requests, 50)  # the server keeps answering while the database is down
        if retry_seconds < 1:
            assert wait_for(
                lambda: not log.database_up and any(settings.spill_path.glob("spill-*"))
            )
        postgres_server.start()
        burst(50, 500)
        shutdown(app, timeout=60)
    finally:
        if not _server_running(postgres_server):
            postgres_server.start()
        app.extensions["watchkeeper.engine"].dispose()

    samples = app.extensions["watchkeeper.metrics"].registry
    assert samples.get_sample_value("watchkeeper_log_write_errors_total") > 0
    if retry_seconds < 1:
        assert samples.get_sample_value("watchkeeper_log_rows_replayed_total") > 0
    n_requests, n_predictions, distinct = _counts(engine)
    engine.dispose()
    assert len(set(sent)) == len(sent) == 50 + outage_requests + 50
    assert n_requests == distinct == len(sent)
    assert n_predictions == len(accepted)
    assert list(settings.spill_path.glob("spill-*")) == []


def _server_running(server: PostgresServer) -> bool:
    engine = sa.create_engine(server.url(), connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()
