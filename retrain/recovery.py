"""What a retraining job that died left behind, put right by the next job.

A job killed mid-run (SIGKILL after its grace period, out of memory, a lost node)
leaves its ``retrain_runs`` row ``running`` and the requests it claimed ``running``, and
nothing else ever changes them: jobs claim only ``pending`` requests. The next job to
take the lease recovers them before it records its own run. Holding the lease proves
that no other job is alive (a live job renews it), so every run still ``running`` then
was abandoned: it is marked ``failed``, saying so, and the requests it claimed go back
to ``pending`` for this job (or the next) to take. Requests still ``running`` whose run
did finish (its job died between recording the run and its requests) take the run's
outcome.

Only the lease holder recovers, in one transaction of conditional updates, so two
workers racing for the lease recover each run once. The count is kept in the same
transaction as the ``monitor_state`` position :data:`ABANDONED_RUNS`, read at scrape time
for ``watchkeeper_retrain_runs_abandoned_total`` like the worker's other figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from retrain.lease import Lease, TakenOver, lease_held
from watchkeeper import retrain_queue
from watchkeeper.db.positions import read_position, write_position
from watchkeeper.db.tables import retrain_runs
from watchkeeper.retrain_status import RequestStatus, RunOutcome

ABANDONED_RUNS = "retrain.abandoned_runs"
"""``monitor_state`` position: how many runs have been recovered as abandoned, ever."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` put right."""

    abandoned_runs: tuple[int, ...]
    """Runs left ``running`` by a dead job, now ``failed``."""
    requeued: tuple[int, ...]
    """Requests those runs (or no run) had claimed, ``pending`` again."""
    reason: str


def abandoned_reason(taken_over: TakenOver | None, recovered_by: str, now: datetime) -> str:
    """The ``decision_reason`` of an abandoned run: whose it was, and when it was found."""
    if taken_over is None:
        whose = "no job held the lease"
    else:
        whose = (
            f"lease holder {taken_over.holder} stopped renewing; its lease expired at "
            f"{taken_over.expired_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    return (
        f"abandoned: its job stopped before finishing ({whose}); found by {recovered_by} "
        f"at {now:%Y-%m-%d %H:%M:%S} UTC, which queued its requests again"
    )


def recover(engine: sa.Engine, lease: Lease, now: datetime | None = None) -> Recovery:
    """Recover what dead jobs left. Call it holding ``lease`` (just acquired), before
    this job records its own run: every run ``running`` then is another job's."""
    now = now or datetime.now(UTC)
    reason = abandoned_reason(lease.taken_over, lease.holder, now)
    with engine.begin() as connection:
        running = connection.execute(
            sa.select(retrain_runs.c.id)
            .where(retrain_runs.c.outcome == RunOutcome.RUNNING)
            .order_by(retrain_runs.c.id)
        ).scalars()
        abandoned = [
            run_id
            for run_id in list(running)
            if connection.execute(
                retrain_runs.update()
                .where(retrain_runs.c.id == run_id, retrain_runs.c.outcome == RunOutcome.RUNNING)
                .values(outcome=RunOutcome.FAILED, decision_reason=reason, finished_at=now)
            ).rowcount
            == 1
        ]
        claimed = retrain_queue.claimed_runs(connection)
        outcomes = dict(
            connection.execute(
                sa.select(retrain_runs.c.id, retrain_runs.c.outcome).where(
                    retrain_runs.c.id.in_([r for r in claimed if r is not None])
                )
            ).all()
        )
        orphaned = [r for r in claimed if r in abandoned or r not in outcomes]
        requeued = retrain_queue.release_claims(connection, orphaned)
        for run_id, outcome in outcomes.items():
            if run_id not in abandoned and outcome != RunOutcome.RUNNING:
                served = outcome in (RunOutcome.PROMOTED, RunOutcome.REJECTED)
                retrain_queue.settle(
                    connection, run_id, RequestStatus.DONE if served else RequestStatus.FAILED
                )
        if abandoned:
            total = (read_position(connection, ABANDONED_RUNS) or 0) + len(abandoned)
            write_position(connection, ABANDONED_RUNS, total, now)
    recovery = Recovery(tuple(abandoned), tuple(requeued), reason)
    if abandoned or requeued:
        log.warning(
            "recovered retraining runs %s and requests %s left running by a job that died "
            "(%s): runs marked failed, requests queued again",
            list(abandoned),
            requeued,
            reason,
        )
    return recovery


def left_behind(engine: sa.Engine, now: datetime | None = None) -> bool:
    """Whether a dead job left a run or requests ``running`` for a job to recover: some
    are, and no holder keeps the lease (a live job's own are not left behind)."""
    now = now or datetime.now(UTC)
    with engine.connect() as connection:
        if lease_held(connection, now):
            return False
        run = connection.execute(
            sa.select(retrain_runs.c.id).where(retrain_runs.c.outcome == RunOutcome.RUNNING)
        ).first()
        return run is not None or bool(retrain_queue.claimed_runs(connection))
