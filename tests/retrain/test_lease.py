"""A retraining job that runs longer than its lease keeps it: no second job joins it;
a job whose lease was taken over registers nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from retrain.job import RetrainJob, RunResult
from retrain.lease import LEASE, Lease
from tests.processes import wait_for
from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_lease, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainingParams

# Renewed every second: two seconds of slack for a renewal on a busy machine.
LEASE_SECONDS = 3.0


def _running(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return (
            connection.execute(
                sa.select(retrain_runs.c.id).where(retrain_runs.c.outcome == "running")
            ).first()
            is not None
        )


def _start(job: RetrainJob) -> tuple[threading.Thread, list[RunResult | None]]:
    results: list[RunResult | None] = []
    thread = threading.Thread(target=lambda: results.append(job.run()))
    thread.start()
    return thread, results


def test_a_job_longer_than_its_lease_cannot_be_joined(
    make_job: Callable[..., RetrainJob], labelled_log: int, engine: sa.Engine
) -> None:
    retrain_queue.enqueue(engine, trigger="manual", reason="long job")
    beats: list[float] = []
    job = make_job(
        settings={"retrain_lease_seconds": LEASE_SECONDS},
        params=TrainingParams(max_iter=300),  # a longer job than the default's
        on_progress=lambda: beats.append(time.monotonic()),
    )
    started = time.monotonic()
    thread, results = _start(job)
    assert wait_for(lambda: _running(engine), timeout=120)

    joined: list[float] = []
    while thread.is_alive():  # a second worker tries all along
        second = Lease(engine, 60)
        if second.acquire():
            if _running(engine):  # not the gap between the job's end and its thread's
                joined.append(time.monotonic() - started)
            second.release()
        thread.join(timeout=0.1)

    took = time.monotonic() - started
    assert took > 2 * LEASE_SECONDS, "the job must outlive its lease for this test to say much"
    assert joined == [], f"a second job took the lease {joined[0]:.1f}s into a {took:.1f}s job"
    [result] = results
    assert result is not None and result.outcome in {"promoted", "rejected"}
    assert len(beats) >= 2, "each renewal beats the worker's heartbeat"
    assert Lease(engine, 60).current_holder() is None  # given back at the end


def test_a_job_whose_lease_was_taken_over_registers_nothing(
    make_job: Callable[..., RetrainJob], labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    retrain_queue.enqueue(engine, trigger="manual", reason="stalled job")
    thread, results = _start(make_job(settings={"retrain_lease_seconds": 60.0}))
    assert wait_for(lambda: _running(engine), timeout=120)

    # as if the job had stalled past its lease and another worker had taken it
    with engine.begin() as connection:
        connection.execute(
            retrain_lease.update().where(retrain_lease.c.name == LEASE).values(holder="other")
        )
    thread.join(timeout=300)

    [result] = results
    assert result is not None and result.outcome == "failed"
    assert "lease was lost" in result.reason and "'other'" in result.reason
    assert ModelRegistry(settings.storage.registry_path).versions() == ["v1"]
    assert Lease(engine, 60).current_holder() == "other"  # not released from under it
