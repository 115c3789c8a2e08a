"""A retraining job whose database goes away under it: its worker records the run
failed with its own reason, its requests failed and its lease given back as soon as
the database answers, instead of the lease running out minutes later and the run being
taken for a dead job's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from retrain.liveness import JobLiveness
from retrain.metrics import RetrainCollector
from retrain.worker import RetrainWorker
from tests.conftest import running_postgres
from tests.postgres import PostgresServer
from tests.processes import metric
from watchkeeper import retrain_queue
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import retrain_lease, retrain_requests, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.status_server import Heartbeat

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    yield from running_postgres()


class _DatabaseGoesAway(JobLiveness):
    """Stops the database as the job reaches ``step``: deterministic, mid-job."""

    def __init__(self, server: PostgresServer, step: str) -> None:
        super().__init__(stall_seconds=3600)
        self.server, self.step, self.stopped = server, step, False

    def beat(self, step: str) -> None:
        super().beat(step)
        if step == self.step and not self.stopped:
            self.stopped = True
            self.server.stop()


def _scrape(engine: sa.Engine, worker: RetrainWorker) -> str:
    registry = CollectorRegistry()
    registry.register(RetrainCollector(engine, idle_holder=worker.idle_holder))
    return generate_latest(registry).decode()


def test_a_job_the_database_went_away_under_is_recorded_failed_as_soon_as_it_answers(
    own_postgres: PostgresServer, make_settings: Callable[..., Settings]
) -> None:
    url = own_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    settings = make_settings(database_url=url)
    request_id = retrain_queue.enqueue(engine, trigger="manual", reason="outage test")
    liveness = _DatabaseGoesAway(own_postgres, "reading the labelled predictions")
    registry = ModelRegistry(settings.storage.registry_path)
    worker = RetrainWorker(settings, engine, registry, liveness)
    heartbeat, stop = Heartbeat(60), threading.Event()
    try:
        worker.cycle(heartbeat, stop)  # the job fails, and so does recording it
        assert liveness.stopped
        waiting = worker.waiting()  # what its /healthz says it waits for
        worker.cycle(heartbeat, stop)  # still away: tried again, nothing lost
        own_postgres.start()
        before = _scrape(engine, worker)  # back, not recorded yet: nothing runs all the same
        worker.cycle(heartbeat, stop)  # the next poll records it
        after = _scrape(engine, worker)
        with engine.connect() as connection:
            runs = connection.execute(sa.select(retrain_runs)).all()
            status = connection.execute(
                sa.select(retrain_requests.c.status).where(retrain_requests.c.id == request_id)
            ).scalar()
            holder = connection.execute(sa.select(retrain_lease.c.holder)).scalar()
    finally:
        engine.dispose()  # the fixture destroys the server, stopped or not

    assert [run.outcome for run in runs] == ["failed"]
    reason = runs[0].decision_reason
    assert reason.startswith("the database failed: ") and "recorded by its worker" in reason
    assert "abandoned" not in reason
    assert runs[0].finished_at is not None
    assert status == "failed"
    assert holder is None  # the next request runs at once, not after the lease
    assert metric(before, "watchkeeper_retrain_runs_in_progress") == 0
    assert waiting == "the database, to record its last job, which the database failed"
    assert worker.waiting() is None
    assert metric(after, "watchkeeper_retrain_runs_in_progress") == 0
    assert metric(after, "watchkeeper_retrain_runs_abandoned_total") == 0
    assert metric(after, "watchkeeper_retrain_runs_total", outcome="failed") == 1
