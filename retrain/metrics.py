"""The retraining worker's Prometheus metrics, read from ``retrain_runs`` at scrape
time, so they survive restarts and count jobs started by any process.

A scrape never fails because the database does: the figures read from it are then
left out and ``watchkeeper_retrain_database_up`` is 0 (a failed scrape would also hide
``up`` of the process itself and everything that does not need the database).

Whether this process's own job is stuck is not in the database: :class:`LivenessCollector`
reads it from the job's :class:`~retrain.liveness.JobLiveness`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from retrain.lease import lease_holder
from retrain.liveness import JobLiveness
from retrain.recovery import ABANDONED_RUNS, COMPLETED_RUNS
from watchkeeper.db.positions import pruned_runs, read_position
from watchkeeper.db.tables import retrain_requests, retrain_runs
from watchkeeper.retrain_status import FINISHED_OUTCOMES, RequestStatus, RunOutcome

# Outcomes a run ends with. "running" is not one: a counter of running runs would go
# down when a run ends; runs in progress are a gauge.
OUTCOMES = FINISHED_OUTCOMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunsSnapshot:
    """What the database says about retraining at one scrape."""

    finished: dict[str, int]
    in_progress: int
    pending_requests: int
    last_duration_seconds: float | None
    last_promotion: datetime | None
    abandoned_runs: int = 0
    """Runs ever found left running by a dead job and failed by the next one."""
    completed_runs: int = 0
    """Runs ever found left running by a job that died after registering its candidate,
    recorded as finished with it by the next one."""


def read_snapshot(engine: sa.Engine, idle_holder: str | None = None) -> RunsSnapshot:
    """``idle_holder``: a lease holder known to run nothing (this worker's job that
    could not record its end, :mod:`retrain.unfinished`): its lease and run are no run
    in progress."""
    now = datetime.now(UTC)
    with engine.connect() as connection:
        counts = dict(
            connection.execute(
                sa.select(retrain_runs.c.outcome, sa.func.count()).group_by(retrain_runs.c.outcome)
            ).all()
        )
        for outcome, n in pruned_runs(connection).items():  # the counter never goes down
            counts[outcome] = counts.get(outcome, 0) + n
        # a run recorded as running counts only while a job holds the lease: the row of
        # a job that crashed stays "running" forever
        holder = lease_holder(connection, now)
        held = holder is not None and holder != idle_holder
        last = connection.execute(
            sa.select(retrain_runs.c.started_at, retrain_runs.c.finished_at)
            .where(retrain_runs.c.finished_at.is_not(None))
            .order_by(retrain_runs.c.id.desc())
            .limit(1)
        ).first()
        promoted_at = connection.execute(
            sa.select(sa.func.max(retrain_runs.c.finished_at)).where(
                retrain_runs.c.outcome == RunOutcome.PROMOTED
            )
        ).scalar()
        pending = connection.execute(
            sa.select(sa.func.count())
            .select_from(retrain_requests)
            .where(retrain_requests.c.status == RequestStatus.PENDING)
        ).scalar()
        abandoned = read_position(connection, ABANDONED_RUNS) or 0
        completed = read_position(connection, COMPLETED_RUNS) or 0
    return RunsSnapshot(
        finished={str(outcome): int(counts.get(outcome, 0)) for outcome in OUTCOMES},
        in_progress=1 if held and counts.get(RunOutcome.RUNNING) else 0,
        pending_requests=int(pending or 0),
        last_duration_seconds=(
            (last.finished_at - last.started_at).total_seconds() if last is not None else None
        ),
        last_promotion=promoted_at,
        abandoned_runs=abandoned,
        completed_runs=completed,
    )


class RetrainCollector(Collector):
    def __init__(
        self, engine: sa.Engine, idle_holder: Callable[[], str | None] | None = None
    ) -> None:
        self.engine = engine
        self.idle_holder = idle_holder

    def collect(self) -> Iterator[Any]:
        idle = None if self.idle_holder is None else self.idle_holder()
        try:
            snapshot: RunsSnapshot | None = read_snapshot(self.engine, idle)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("retraining metrics: the database is unavailable: %s", exc)
            snapshot = None
        up = GaugeMetricFamily(
            "watchkeeper_retrain_database_up",
            "1 when the retraining worker could read its database at this scrape.",
        )
        up.add_metric([], 0 if snapshot is None else 1)
        yield up
        if snapshot is not None:
            yield from _from_database(snapshot)


def _from_database(snapshot: RunsSnapshot) -> Iterator[Any]:
    runs = CounterMetricFamily(
        "watchkeeper_retrain_runs", "Finished retraining runs by outcome.", labels=["outcome"]
    )
    for outcome, count in snapshot.finished.items():
        runs.add_metric([outcome], count)
    yield runs
    abandoned = CounterMetricFamily(
        "watchkeeper_retrain_runs_abandoned",
        "Runs whose job died mid-run, found by the next job: marked failed (also in "
        'watchkeeper_retrain_runs_total{outcome="failed"}), their requests queued again.',
    )
    abandoned.add_metric([], snapshot.abandoned_runs)
    yield abandoned
    completed = CounterMetricFamily(
        "watchkeeper_retrain_runs_completed_by_recovery",
        "Runs whose job died after registering its candidate, recorded as finished with "
        "that version by the next job (also in watchkeeper_retrain_runs_total by outcome); "
        "their requests were not retrained.",
    )
    completed.add_metric([], snapshot.completed_runs)
    yield completed
    in_progress = GaugeMetricFamily(
        "watchkeeper_retrain_runs_in_progress", "1 while a retraining run is in progress."
    )
    in_progress.add_metric([], snapshot.in_progress)
    yield in_progress
    queued = GaugeMetricFamily(
        "watchkeeper_retrain_requests_pending", "Retrain requests waiting for a job."
    )
    queued.add_metric([], snapshot.pending_requests)
    yield queued
    if snapshot.last_duration_seconds is not None:
        duration = GaugeMetricFamily(
            "watchkeeper_retrain_last_run_duration_seconds",
            "Duration of the last finished retraining run.",
        )
        duration.add_metric([], snapshot.last_duration_seconds)
        yield duration
    if snapshot.last_promotion is not None:
        promoted = GaugeMetricFamily(
            "watchkeeper_retrain_last_promotion_timestamp_seconds",
            "Unix time of the last promotion.",
        )
        promoted.add_metric([], snapshot.last_promotion.timestamp())
        yield promoted


class LivenessCollector(Collector):
    """Whether the job this process runs is stuck (:mod:`retrain.liveness`)."""

    def __init__(self, liveness: JobLiveness) -> None:
        self.liveness = liveness

    def collect(self) -> Iterator[Any]:
        snapshot = self.liveness.snapshot()
        stalled = GaugeMetricFamily(
            "watchkeeper_retrain_job_stalled",
            "1 while this worker's job has reported no progress for "
            "WATCHKEEPER_RETRAIN_STALL_SECONDS: its lease is no longer renewed and its "
            "/healthz fails.",
        )
        stalled.add_metric([], 1 if snapshot.stalled else 0)
        yield stalled
        stalls = CounterMetricFamily(
            "watchkeeper_retrain_job_stalls",
            "Jobs of this worker process found stalled since it started.",
        )
        stalls.add_metric([], snapshot.stalls)
        yield stalls
        # declared even while no job runs, without a sample (no series): the metric
        # stays listed in every scrape, as the dashboards that read it expect
        age = GaugeMetricFamily(
            "watchkeeper_retrain_job_seconds_since_progress",
            "Seconds since this worker's running job last reported progress (no sample "
            "when no job runs): compare with WATCHKEEPER_RETRAIN_STALL_SECONDS.",
        )
        if snapshot.seconds_since_progress is not None:
            age.add_metric([], snapshot.seconds_since_progress)
        yield age
