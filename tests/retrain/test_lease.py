"""A retraining job that runs longer than its lease keeps it: no second job joins it;
a job whose lease was taken over registers nothing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from retrain.job import RetrainJob, RunResult
from retrain.lease import LEASE, RENEWALS_PER_LEASE, Lease, LeaseLost
from retrain.recovery import recover
from tests.processes import wait_for
from tests.retrain.labelled_log import QUICK
from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_lease, retrain_requests, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import VersionStatus

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


class _SlowToRegister(ModelRegistry):
    """A registry on a volume slow enough that writing the candidate outlasts the job's
    lease twice over: ``register`` returns once the job has renewed its lease ``renewals``
    times (``beats``, its heartbeat, counts them)."""

    def __init__(self, settings: Settings, beats: list[float], renewals: int) -> None:
        super().__init__(settings.storage.registry_path)
        self.beats = beats
        self.renewals = renewals

    def register(self, *args: Any, **kwargs: Any) -> str:
        assert wait_for(lambda: len(self.beats) >= self.renewals, timeout=120)
        return super().register(*args, **kwargs)


def test_a_job_longer_than_its_lease_cannot_be_joined(
    labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    retrain_queue.enqueue(engine, trigger="manual", reason="long job", options=QUICK)
    beats: list[float] = []
    # renewed every third of a lease: more than two leases' worth of renewals
    registry = _SlowToRegister(settings, beats, renewals=2 * RENEWALS_PER_LEASE + 1)
    job = RetrainJob(
        settings.replace(retrain_lease_seconds=LEASE_SECONDS),
        engine,
        registry,
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
    retrain_queue.enqueue(engine, trigger="manual", reason="stalled job", options=QUICK)
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
    # not served, and not failed either: pending again for the job holding the lease
    with engine.connect() as connection:
        statuses = connection.execute(sa.select(retrain_requests.c.status)).scalars().all()
    assert statuses == ["pending"]


class _TakenOverWhileRegistering(ModelRegistry):
    """A registry on a volume where the job's registration stalls past its lease: by
    the time the candidate's files are written, another job holds the lease (and may
    have promoted a version of its own). With ``recovered``, that job is a real one
    that took the expired lease and ran its recovery, ``"before"`` the candidate's
    metadata was written or ``"after"``."""

    def __init__(self, settings: Settings, engine: sa.Engine, recovered: str | None = None) -> None:
        super().__init__(settings.storage.registry_path)
        self.engine = engine
        self.recovered = recovered
        self.other: Lease | None = None

    def register(self, *args: Any, **kwargs: Any) -> str:
        if self.recovered != "after":
            self._take_over()
        version = super().register(*args, **kwargs)
        if self.recovered == "after":
            self._take_over()
        return version

    def _take_over(self) -> None:
        if self.recovered is None:
            with self.engine.begin() as connection:
                connection.execute(
                    retrain_lease.update()
                    .where(retrain_lease.c.name == LEASE)
                    .values(holder="other")
                )
            return
        with self.engine.begin() as connection:  # the job's lease expired
            connection.execute(
                retrain_lease.update()
                .where(retrain_lease.c.name == LEASE)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        self.other = Lease(self.engine, 60, holder="other")
        assert self.other.acquire()
        recover(self.engine, self.other, self)


def _status_reason(registry: ModelRegistry, version: str) -> tuple[str, str]:
    record = registry.record(version)
    return record.status, record.notes.reason or ""


def test_a_job_that_lost_its_lease_while_registering_does_not_serve_its_candidate(
    labelled_log: int,
    engine: sa.Engine,
    settings: Settings,
    trained: TrainedModel,
) -> None:
    """Its candidate, registered as promoted, was never served: the registry records
    it as rejected, saying why, so that a default rollback never picks it."""
    retrain_queue.enqueue(
        engine, trigger="manual", reason="stalled while registering", options=QUICK
    )
    registry = _TakenOverWhileRegistering(settings, engine)

    result = RetrainJob(settings, engine, registry).run()

    assert result is not None and result.outcome == "failed"
    assert "lease was lost" in result.reason and "'other'" in result.reason
    assert registry.current_version() == "v1", "a job without the lease moved CURRENT"
    assert registry.versions() == ["v1", "v2"]
    status, reason = _status_reason(registry, "v2")
    assert status == "rejected", "a version never served is recorded as promoted"
    assert "not served" in reason and "lease" in reason
    # a later version served, then rolled back by default: to v1, which served
    registry.register(trained, status=VersionStatus.PROMOTED)
    assert registry.rollback() == ("v3", "v1")


def test_a_candidate_withdrawn_after_the_lease_was_taken_over_is_not_served_by_recovery(
    labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    """The job that took the lease over recovered the run before the candidate was
    written (the run abandoned, its requests queued again); a later recovery finds the
    withdrawn candidate and leaves ``CURRENT`` alone."""
    retrain_queue.enqueue(
        engine, trigger="manual", reason="stalled while registering", options=QUICK
    )
    registry = _TakenOverWhileRegistering(settings, engine, recovered="before")

    result = RetrainJob(settings, engine, registry).run()

    assert result is not None and result.outcome == "failed"
    assert registry.current_version() == "v1"
    assert _status_reason(registry, "v2")[0] == "rejected"
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
    assert run.decision_reason.startswith("abandoned: ")
    assert registry.other is not None
    registry.other.release()
    later = Lease(engine, 60)
    assert later.acquire()
    recover(engine, later, registry)
    later.release()
    assert registry.current_version() == "v1"


def test_a_candidate_the_next_job_made_current_stays_promoted(
    labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    """The job that took the lease over recovered the run after the candidate was
    written and completed its promotion: the candidate is served, and its job, finding
    its lease lost and the candidate settled served, says it was promoted (the record
    of the job that took over stands)."""
    retrain_queue.enqueue(
        engine, trigger="manual", reason="stalled while registering", options=QUICK
    )
    registry = _TakenOverWhileRegistering(settings, engine, recovered="after")

    result = RetrainJob(settings, engine, registry).run()

    assert result is not None and result.outcome == "promoted"
    assert registry.current_version() == "v2"
    settled = registry.promotion_settlement("v2")
    assert settled is not None and (settled.outcome, settled.by) == ("served", "other")
    assert _status_reason(registry, "v2")[0] == "promoted"
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
    assert (run.outcome, run.candidate_version) == ("promoted", "v2")


class _SlowToList(ModelRegistry):
    """A registry on a volume slow enough that listing its versions, which the recovery
    of a dead job's run does, outlasts the lease: the listing returns only once the
    lease was renewed or expired, and notes whether another job could take it then."""

    def __init__(self, settings: Settings, engine: sa.Engine) -> None:
        super().__init__(settings.storage.registry_path)
        self.engine = engine
        self.taken_by_another: bool | None = None

    def versions(self) -> list[str]:
        if self.taken_by_another is None:
            first = _expires_at(self.engine)
            moved_or_expired = wait_for(
                lambda: _expires_at(self.engine) != first or datetime.now(UTC) > first,
                timeout=120,
            )
            assert moved_or_expired
            other = Lease(self.engine, 60)
            self.taken_by_another = other.acquire()
            if self.taken_by_another:
                other.release()
        return super().versions()


def _expires_at(engine: sa.Engine) -> datetime:
    with engine.connect() as connection:
        expires = connection.execute(
            sa.select(retrain_lease.c.expires_at).where(retrain_lease.c.name == LEASE)
        ).scalar_one()
    return expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)


def test_a_job_keeps_its_lease_while_it_recovers_a_dead_jobs_run(
    engine: sa.Engine, settings: Settings
) -> None:
    with engine.begin() as connection:
        connection.execute(
            retrain_runs.insert().values(
                started_at=datetime.now(UTC) - timedelta(minutes=5),
                trigger="manual",
                reason="before the crash",
                request_ids=[],
                data={},
                outcome="running",
            )
        )
        connection.execute(
            retrain_lease.update()
            .where(retrain_lease.c.name == LEASE)
            .values(holder="dead", expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    registry = _SlowToList(settings, engine)

    RetrainJob(settings.replace(retrain_lease_seconds=LEASE_SECONDS), engine, registry).run()

    assert registry.taken_by_another is False, "another job took the lease during recovery"


def test_a_lease_lost_to_a_job_that_gave_it_back_since_is_said_so_not_none(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewing thread logged "taken over by None", and a job's failure read "held
    by None now", when the job that took the lease over had released it already."""
    lease = Lease(engine, 0.3, holder="slow")
    assert lease.acquire()
    with caplog.at_level(logging.ERROR, logger="retrain.lease"), lease.kept():
        other = Lease(engine, 60, holder="other")  # took it over once it expired ...
        with engine.begin() as connection:
            connection.execute(
                retrain_lease.update().where(retrain_lease.c.name == LEASE).values(holder="other")
            )
        other.release()  # ... and gave it back
        assert wait_for(lambda: "lease was lost" in caplog.text, timeout=10)
        with pytest.raises(LeaseLost) as lost:
            lease.check()

    [record] = [r for r in caplog.records if "lease was lost" in r.getMessage()]
    for said in (record.getMessage(), str(lost.value)):
        assert "None" not in said
        assert "no job holds it now: another took it over once it expired" in said
