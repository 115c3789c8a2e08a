"""The retraining worker's metrics: a counter of finished runs that never goes down, a
gauge of the run in progress, and a scrape that survives the database being down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from retrain.lease import Lease
from retrain.liveness import JobLiveness
from retrain.metrics import LivenessCollector, RetrainCollector
from tests.conftest import running_postgres
from tests.postgres import PostgresServer
from tests.processes import metric
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.retention import Pruner, RetentionPolicy
from watchkeeper.db.tables import retrain_runs

POLICY = RetentionPolicy(raw_days=30, labelled_days=365, history_days=730, batch_rows=2)


def _scrape(engine: sa.Engine) -> str:
    registry = CollectorRegistry()
    registry.register(RetrainCollector(engine))
    return generate_latest(registry).decode()


def _start_run(engine: sa.Engine) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                retrain_runs.insert().values(
                    started_at=datetime.now(UTC),
                    trigger="manual",
                    reason="test",
                    request_ids=[],
                    data={},
                    outcome="running",
                )
            ).inserted_primary_key[0]
        )


def _finish_run(engine: sa.Engine, run_id: int, outcome: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            retrain_runs.update()
            .where(retrain_runs.c.id == run_id)
            .values(outcome=outcome, finished_at=datetime.now(UTC))
        )


def _runs_total(text: str, outcome: str) -> float | None:
    return metric(text, "watchkeeper_retrain_runs_total", outcome=outcome)


def test_a_run_in_progress_is_a_gauge_and_no_counter_goes_down(engine: sa.Engine) -> None:
    lease = Lease(engine, 60)
    assert lease.acquire()
    run_id = _start_run(engine)

    during = _scrape(engine)
    _finish_run(engine, run_id, "promoted")
    lease.release()
    after = _scrape(engine)

    assert metric(during, "watchkeeper_retrain_runs_in_progress") == 1
    assert metric(after, "watchkeeper_retrain_runs_in_progress") == 0
    for outcome in ("promoted", "rejected", "failed", "running"):
        assert (_runs_total(after, outcome) or 0) >= (_runs_total(during, outcome) or 0), outcome
    assert _runs_total(after, "promoted") == 1
    assert _runs_total(during, "running") is None


def test_pruning_old_runs_does_not_take_the_runs_counter_down(engine: sa.Engine) -> None:
    """The counter counts rows of retrain_runs; the history prune deleted old ones and
    the counter dropped, which increase() reads as a reset: spurious alerts."""
    for outcome in ("promoted", "rejected", "rejected"):
        _finish_run(engine, _start_run(engine), outcome)
    with engine.begin() as connection:  # the runs are older than the history retention
        connection.execute(
            retrain_runs.update().values(started_at=datetime.now(UTC) - timedelta(days=1000))
        )
    before = _scrape(engine)

    Pruner(engine, POLICY, pause=False).run()
    _finish_run(engine, _start_run(engine), "rejected")
    after = _scrape(engine)

    with engine.connect() as connection:
        left = connection.execute(sa.select(sa.func.count()).select_from(retrain_runs)).scalar()
    assert left == 1  # the three old runs were pruned
    assert (_runs_total(before, "promoted"), _runs_total(before, "rejected")) == (1, 2)
    assert (_runs_total(after, "promoted"), _runs_total(after, "rejected")) == (1, 3)


def test_the_row_of_a_crashed_job_is_not_a_run_in_progress(engine: sa.Engine) -> None:
    _start_run(engine)  # its job died: nobody holds the lease

    assert metric(_scrape(engine), "watchkeeper_retrain_runs_in_progress") == 0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    yield from running_postgres()


@pytest.mark.postgres
def test_a_scrape_while_the_database_is_down_says_so_and_does_not_fail(
    own_postgres: PostgresServer,
) -> None:
    engine = create_engine(own_postgres.create_database())
    upgrade(engine)
    try:
        up = _scrape(engine)
        own_postgres.stop(mode="immediate")
        down = _scrape(engine)
    finally:
        engine.dispose()

    assert metric(up, "watchkeeper_retrain_database_up") == 1
    assert _runs_total(up, "failed") == 0
    assert metric(down, "watchkeeper_retrain_database_up") == 0
    assert _runs_total(down, "failed") is None  # unknown, not zero


def test_the_age_of_a_jobs_progress_is_declared_with_no_sample_while_no_job_runs() -> None:
    """The dashboards read watchkeeper_retrain_job_seconds_since_progress: an idle
    worker lists it (TYPE, no series) rather than leaving it out, and a running job has
    its sample."""
    clock = [100.0]
    liveness = JobLiveness(stall_seconds=60, clock=lambda: clock[0])
    registry = CollectorRegistry()
    registry.register(LivenessCollector(liveness))
    name = "watchkeeper_retrain_job_seconds_since_progress"

    idle = generate_latest(registry).decode()
    liveness.start("reading the queue")
    clock[0] += 5
    running = generate_latest(registry).decode()

    assert f"# TYPE {name} gauge" in idle and metric(idle, name) is None
    assert metric(idle, "watchkeeper_retrain_job_stalled") == 0
    assert metric(running, name) == 5
