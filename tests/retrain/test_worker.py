"""``watchkeeper retrain worker`` as a real process: it takes a queued request, runs
one job, promotes the better candidate, and reports it on /metrics; a running
prediction server switches to the new version."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import running_postgres
from tests.postgres import PostgresServer
from tests.processes import Process, metric, wait_for
from watchkeeper import retrain_queue
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import retrain_requests
from watchkeeper.retrain_status import RequestStatus
from watchkeeper.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "worker-test-token"


def test_worker_runs_a_queued_request_and_serving_switches_to_the_promoted_model(
    start_watchkeeper: Callable[..., Process],
    settings: Settings,
    labelled_log: int,
    engine: sa.Engine,
    replay_records: list[dict[str, Any]],
) -> None:
    env = {
        "WATCHKEEPER_DATABASE_URL": settings.storage.database_url,
        "WATCHKEEPER_ADMIN_TOKEN": TOKEN,
    }
    server = start_watchkeeper("serve", WATCHKEEPER_MODEL_POLL_SECONDS="0.2", **env)
    worker = start_watchkeeper("retrain worker", WATCHKEEPER_RETRAIN_POLL_SECONDS="0.2", **env)
    assert (
        metric(worker.get("/metrics").text, "watchkeeper_retrain_runs_total", outcome="promoted")
        == 0
    )

    queued = server.post(
        "/admin/retrain", json={"reason": "e2e"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert queued.status_code == 202

    def promoted() -> bool:
        text = worker.get("/metrics").text
        return metric(text, "watchkeeper_retrain_runs_total", outcome="promoted") == 1

    assert wait_for(promoted, timeout=120, interval=0.5), worker.log_path.read_text()[-2000:]
    text = worker.get("/metrics").text
    assert metric(text, "watchkeeper_retrain_requests_pending") == 0
    assert metric(text, "watchkeeper_retrain_last_run_duration_seconds") > 0
    assert metric(text, "watchkeeper_retrain_last_promotion_timestamp_seconds") > 0
    assert wait_for(
        lambda: (
            server.post("/predict", json={"features": replay_records[0]}).json()["model_version"]
            == "v2"
        ),
        timeout=10,
    )
    # one model-version info metric: the served version's, from serving
    assert wait_for(
        lambda: (
            metric(
                server.get("/metrics").text,
                "watchkeeper_model_info",
                model_version="v2",
                task="regression",
            )
            == 1
        ),
        timeout=10,
    )


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    yield from running_postgres()


@pytest.mark.postgres
def test_worker_started_while_the_database_is_down_waits_for_it_and_then_runs(
    start_watchkeeper: Callable[..., Process], own_postgres: PostgresServer
) -> None:
    """A worker started during an outage (pods start in any order) starts and waits,
    its /healthz saying so, instead of exiting; once the database answers, it runs."""
    url = own_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    own_postgres.stop()
    try:
        worker = start_watchkeeper(
            "retrain worker",
            WATCHKEEPER_DATABASE_URL=url,
            WATCHKEEPER_RETRAIN_POLL_SECONDS="0.2",
        )
        health = worker.get("/healthz")
    finally:
        own_postgres.start()
    request_id = retrain_queue.enqueue(engine, trigger="manual", reason="after the outage")

    def taken() -> bool:
        with engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(retrain_requests.c.status).where(retrain_requests.c.id == request_id)
                ).scalar()
                != RequestStatus.PENDING
            )

    assert health.status_code == 200
    assert health.json()["waiting_for"].startswith("the database to answer")
    assert wait_for(taken, timeout=60)
    assert "waiting_for" not in worker.get("/healthz").json()
    engine.dispose()
