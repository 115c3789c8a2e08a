"""What a retraining job could not record because the database went away under it,
recorded by its worker once the database answers.

A job whose database goes away fails, and recording that needs the database: its run
and the requests it claimed would stay ``running`` and its lease held until the lease
expired, minutes later, with the runs-in-progress gauge at 1 while nothing runs; the
next job would then record the run as abandoned by a job that died, though its worker
lived. Instead the job raises :class:`JobUnrecorded`, naming what is left to record
(:class:`UnfinishedJob`), and its worker records it at its next cycles, as soon as the
database answers, before it runs anything else: the run failed with its own reason,
its requests failed, the lease given back, in one transaction.

A job that had registered its candidate did its work: its run is left for the next
job's recovery, which records it with that version (:mod:`retrain.recovery`), and only
the lease is given back, so that the next cycle runs that recovery at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from retrain.lease import release_lease
from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_runs
from watchkeeper.errors import ServiceUnavailable
from watchkeeper.retrain_status import RequestStatus, RunOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnfinishedJob:
    """A job that ended without recording how (the database was away)."""

    holder: str
    """The lease holder it ran as: the lease is released in that name."""
    run_id: int | None
    """Its run, when it had recorded one."""
    reason: str
    """Why it failed ("" when it finished and only giving back its lease failed)."""
    candidate: str | None = None
    """The version it had registered: its run is recovery's to record, not failed."""
    requeue: bool = False
    """It had lost its lease: its requests go back to pending, as the job would have
    put them (the job that holds the lease trains them)."""


class JobUnrecorded(ServiceUnavailable):
    """A job ended and the database refused to record how: its worker records it once
    the database answers (:func:`record`)."""

    code = "retrain_unrecorded"

    def __init__(self, unfinished: UnfinishedJob, cause: BaseException) -> None:
        what = f"run {unfinished.run_id}" if unfinished.run_id is not None else "a job"
        failed = f" failed ({unfinished.reason})" if unfinished.reason else " ended"
        super().__init__(
            f"retraining {what}{failed} and could not be recorded: the database failed "
            f"({_first_line(cause)}); its lease is held until it is"
        )
        self.unfinished = unfinished


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def failure_reason(exc: BaseException) -> str:
    """What a run failed by ``exc`` records as its reason, as the job's own failure path
    records it (a database error by its first line: SQLAlchemy's text spans lines)."""
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return f"the database failed: {_first_line(exc)}"
    return str(exc)


def record(engine: sa.Engine, job: UnfinishedJob, now: datetime | None = None) -> None:
    """Record ``job`` in one transaction; raises while the database is still away (the
    worker tries again at its next cycle). A run recovered meanwhile by another job
    (the lease expired first) keeps that job's record."""
    now = now or datetime.now(UTC)
    with engine.begin() as connection:
        if job.run_id is not None:
            if job.candidate is None:
                connection.execute(
                    retrain_runs.update()
                    .where(
                        retrain_runs.c.id == job.run_id,
                        retrain_runs.c.outcome == RunOutcome.RUNNING,
                    )
                    .values(
                        outcome=RunOutcome.FAILED,
                        decision_reason=f"{job.reason}; recorded by its worker once the "
                        "database answered again",
                        finished_at=now,
                    )
                )
            # a finished run's requests take its outcome; a running one's are recovery's
            outcome = connection.execute(
                sa.select(retrain_runs.c.outcome).where(retrain_runs.c.id == job.run_id)
            ).scalar()
            if job.requeue:
                retrain_queue.release_claims(connection, [job.run_id])
            elif outcome in (RunOutcome.PROMOTED, RunOutcome.REJECTED):
                retrain_queue.settle(connection, job.run_id, RequestStatus.DONE)
            elif outcome == RunOutcome.FAILED:
                retrain_queue.settle(connection, job.run_id, RequestStatus.FAILED)
        release_lease(connection, job.holder)
    log.warning(
        "retraining: recorded what job %s left when the database went away (run %s%s)",
        job.holder,
        job.run_id,
        f": failed, {job.reason}" if job.reason and job.candidate is None else "",
    )
