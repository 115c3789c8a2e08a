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

A job that died after registering its candidate but before recording its run did all
its work: retraining its requests again would register a second, duplicate version. The
version it registered names its run (``notes.run_id`` and ``notes.run_started_at`` in its
metadata, written before the registry lists the version; matched as values, never by
comparing clocks), so such a run is recorded as finished with that version and the
decision the version records, and its requests ``done``; a promotion cut short before
``CURRENT`` moved is completed, unless ``CURRENT`` was moved since or the candidate's
job, only slow, withdrew it first (found its lease lost and recorded it as not served):
the two settle the candidate served or withdrawn once, in the registry, before either
acts (:meth:`~watchkeeper.registry.ModelRegistry.settle_promotion`). ``CURRENT`` is then
moved only from the pointer the checks read, as a compare-and-set
(:meth:`~watchkeeper.registry.ModelRegistry.move_current`): a rollback made at any moment
after those checks stands. These are counted apart (:data:`COMPLETED_RUNS`), not as
abandoned.

Only the lease holder recovers, in one transaction of conditional updates, so two
workers racing for the lease recover each run once. The count is kept in the same
transaction as the ``monitor_state`` position :data:`ABANDONED_RUNS`, read at scrape time
for ``watchkeeper_retrain_runs_abandoned_total`` like the worker's other figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import sqlalchemy as sa

from retrain.data import RunData
from retrain.lease import Lease, TakenOver, lease_held
from watchkeeper import retrain_queue
from watchkeeper.db.positions import read_position, write_position
from watchkeeper.db.tables import retrain_runs
from watchkeeper.errors import WatchkeeperError
from watchkeeper.registry import ModelRegistry, Promotion
from watchkeeper.retrain_status import RequestStatus, RunOutcome
from watchkeeper.version_metadata import VersionMetadata, VersionStatus

ABANDONED_RUNS = "retrain.abandoned_runs"
"""``monitor_state`` position: how many runs have been recovered as abandoned, ever."""

COMPLETED_RUNS = "retrain.completed_runs"
"""``monitor_state`` position: how many runs whose job died after registering their
candidate were recorded as finished with it by the next job, ever."""

# The run's ``data`` is also written into its candidate's training window.
_RUN_DATA_KEYS = frozenset(f.name for f in fields(RunData))

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` put right."""

    abandoned_runs: tuple[int, ...]
    """Runs left ``running`` by a dead job, now ``failed``."""
    completed_runs: dict[int, str]
    """Runs left ``running`` by a job that died after registering its candidate, now
    finished with that version (run id: version)."""
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


@dataclass(frozen=True)
class RegisteredCandidate:
    """The version a run's job registered before it died."""

    version: str
    record: VersionMetadata


def registered_candidates(
    registry: ModelRegistry, runs: dict[int, datetime]
) -> dict[int, RegisteredCandidate]:
    """The versions registered by the runs ``runs`` (id: ``started_at`` as its row holds
    it): the newest whose notes name the run's id and its ``started_at`` (a registry
    reused with a new database holds older runs of the same ids). No two clocks are
    compared: a job whose clock was stepped back between recording its run and
    registering its candidate would otherwise hide it, and its requests be retrained.
    A version registered before the notes held ``run_started_at`` matches as it did
    then: created, by its job's clock, when or after the run started."""
    if not runs:
        return {}
    found: dict[int, RegisteredCandidate] = {}
    # Newest first: a dead job's is recent. No clock bounds the scan, so it reads every
    # version while a run's is missing (a run whose job died before registering).
    for version in reversed(registry.versions()):
        if len(found) == len(runs):
            break
        try:
            record = registry.record(version)
        except WatchkeeperError as exc:  # not this run's to judge; the rest still count
            log.warning("recovery: cannot read %s: %s", version, exc)
            continue
        run_id = record.notes.run_id
        if run_id in runs and run_id not in found and _registered_by(record, runs[run_id]):
            found[run_id] = RegisteredCandidate(version, record)
    return found


def _registered_by(record: VersionMetadata, started: datetime) -> bool:
    """Whether ``record``, which names a run's id, was registered by the run of that id
    that started at ``started`` (as its row holds it)."""
    if record.notes.run_started_at is not None:
        return _timestamp(record.notes.run_started_at) == started
    created = _timestamp(record.created_at)  # older versions: the clock, as before
    return created is not None and created >= started


def _timestamp(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _completion(candidate: RegisteredCandidate, reason: str) -> dict[str, object]:
    """The finished run's columns, from what its candidate's metadata recorded."""
    record, notes = candidate.record, candidate.record.notes
    promoted = record.status is VersionStatus.PROMOTED
    window = record.training_window.stored()
    return {
        "outcome": RunOutcome.PROMOTED if promoted else RunOutcome.REJECTED,
        "decision_reason": f"{notes.reason or 'its decision was not recorded'}; {reason}",
        "champion_version": notes.champion,
        "candidate_version": candidate.version,
        "champion_metrics": (
            notes.champion_metrics_on_holdout.stored()
            if notes.champion_metrics_on_holdout is not None
            else None
        ),
        "candidate_metrics": record.metrics.stored(),
        "data": {k: v for k, v in window.items() if k in _RUN_DATA_KEYS},
    }


def completed_reason(candidate: str, taken_over: TakenOver | None, recovered_by: str) -> str:
    """What a run recorded by recovery adds to its candidate's decision."""
    whose = "" if taken_over is None else f" (lease holder {taken_over.holder})"
    return (
        f"recorded by {recovered_by}: its job{whose} stopped after registering {candidate} "
        "and before recording this run"
    )


def _finish_promotion(
    registry: ModelRegistry, candidate: RegisteredCandidate, by: str
) -> RegisteredCandidate:
    """Point ``CURRENT`` at a promoted candidate whose job died before it could, unless
    someone moved ``CURRENT`` off the champion since (a rollback decides), or wrote it
    at all since the candidate was registered: a job that died after moving ``CURRENT``
    and a rollback back to the champion leave ``CURRENT`` naming the champion too, and
    the rollback must stand. Rollbacks to the champion while it was current (moves that
    only reaffirm it, :meth:`CurrentPointer.reaffirmed`) changed nothing served: they
    count from the move they reaffirm (:meth:`ModelRegistry.current_written_since`),
    and the promotion moves on from them, as its job would have. Returns the candidate
    as its metadata reads now.

    Its job may be only slow, not dead: finding its lease lost (to ``by``, this job),
    it withdraws the candidate, maybe at this very moment. Both settle the candidate in
    the registry before acting (:meth:`ModelRegistry.settle_promotion`): ``CURRENT``
    moves only if it is settled served, and a candidate settled withdrawn first is
    recorded ``rejected`` here too, in case its job died before it could.

    ``CURRENT`` moves only from the pointer these checks read
    (:meth:`ModelRegistry.move_current`): a rollback, or the slow job's own move, made
    after the checks (however long this recovery then pauses) stands."""
    if candidate.record.status is not VersionStatus.PROMOTED:
        return candidate
    # Read again: a job that withdrew its candidate since the scan says so at once.
    try:
        candidate = RegisteredCandidate(candidate.version, registry.record(candidate.version))
    except WatchkeeperError as exc:  # read a moment ago: go by that reading
        log.warning("recovery: cannot read %s again: %s", candidate.version, exc)
    if candidate.record.status is not VersionStatus.PROMOTED:
        log.warning(
            "recovery: %s is now %s (its job found its lease lost): not made current",
            candidate.version,
            candidate.record.status,
        )
        return candidate
    pointer = registry.current()
    current = pointer.version
    if current == candidate.version:
        return candidate
    if registry.current_written_since(candidate.version, pointer):
        log.warning(
            "recovery: %s was promoted, and CURRENT was set since (to %s, a rollback): left as is",
            candidate.version,
            current,
        )
        return _unless_served(registry, candidate, by, f"CURRENT was set since (to {current})")
    if current != candidate.record.notes.champion:
        log.warning(
            "recovery: %s was promoted but CURRENT names %s, not its champion %s: left as is",
            candidate.version,
            current,
            candidate.record.notes.champion,
        )
        return _unless_served(
            registry,
            candidate,
            by,
            f"CURRENT names {current}, not its champion {candidate.record.notes.champion}",
        )
    settled = registry.settle_promotion(
        candidate.version,
        Promotion.SERVED,
        by=by,
        reason=f"completed by {by}: its job stopped before making it current",
    )
    if settled.outcome is Promotion.WITHDRAWN:
        if registry.record(candidate.version).status is VersionStatus.PROMOTED:
            registry.set_status(candidate.version, VersionStatus.REJECTED, reason=settled.reason)
        log.warning(
            "recovery: %s was withdrawn by its job (%s, which found its lease lost): "
            "not made current",
            candidate.version,
            settled.by,
        )
        return RegisteredCandidate(candidate.version, registry.record(candidate.version))
    move = registry.move_current(candidate.version, expected=pointer)
    while not move.moved and move.now.reaffirmed(pointer):  # changed nothing served
        pointer = move.now
        move = registry.move_current(candidate.version, expected=pointer)
    if move.moved:
        log.warning(
            "recovery: %s was promoted by a job that died before serving it: now current",
            candidate.version,
        )
    elif move.now.version != candidate.version:  # its slow job's move is as good
        log.warning(
            "recovery: %s was promoted, and CURRENT was moved since it checked (to %s, by "
            "a rollback or another promotion): left as is",
            candidate.version,
            move.now.version,
        )
        # settled served by this recovery, its job moves nothing: it never was served
        return _not_served(
            registry, candidate, f"CURRENT was moved to {move.now.version} before it could be"
        )
    return candidate


def _unless_served(
    registry: ModelRegistry, candidate: RegisteredCandidate, by: str, why: str
) -> RegisteredCandidate:
    """The promoted ``candidate`` left as is because ``CURRENT`` was written since:
    recorded ``rejected`` if its job never served it. A job settles its candidate served
    before it moves ``CURRENT`` (:meth:`RetrainJob._serve`), so one nobody settled never
    was; settling it withdrawn here (a compare-and-set) keeps a slow job from serving it
    after. One settled served was served only if ``CURRENT`` named it since (its job may
    have died between the two): left ``promoted`` if so, served then rolled back, and
    recorded ``rejected`` if the moves' history says it never was. ``CURRENT`` was
    moved off the pointer its job read, so that job can no longer serve it."""
    settled = registry.settle_promotion(
        candidate.version, Promotion.WITHDRAWN, by=by, reason=f"not served: {why}"
    )
    if settled.outcome is not Promotion.SERVED:
        return _not_served(registry, candidate, why)
    served = registry.served_since_registered(candidate.version)
    if served is False:
        return _not_served(
            registry,
            candidate,
            f"{why}; its job ({settled.by}) settled it served and stopped before making it current",
        )
    if served is None:
        log.warning(
            "recovery: %s was settled served by %s; whether CURRENT ever named it cannot be "
            "told (moves of an earlier Watchkeeper, or a CURRENT written by hand): left "
            "promoted",
            candidate.version,
            settled.by,
        )
    return candidate


def _not_served(
    registry: ModelRegistry, candidate: RegisteredCandidate, why: str
) -> RegisteredCandidate:
    """Record the promoted ``candidate``, never served, as ``rejected`` (as its job
    records one it withdraws): a default rollback must not pick it, nor its run count
    as a promotion."""
    said = candidate.record.notes.reason or "not recorded"
    reason = f"not served: {why}; its gate had said: {said}"
    if registry.record(candidate.version).status is VersionStatus.PROMOTED:
        registry.set_status(candidate.version, VersionStatus.REJECTED, reason=reason)
    log.warning("recovery: %s was never served: recorded rejected", candidate.version)
    return RegisteredCandidate(candidate.version, registry.record(candidate.version))


def recover(
    engine: sa.Engine, lease: Lease, registry: ModelRegistry, now: datetime | None = None
) -> Recovery:
    """Recover what dead jobs left. Call it holding ``lease`` (just acquired), before
    this job records its own run: every run ``running`` then is another job's."""
    now = now or datetime.now(UTC)
    reason = abandoned_reason(lease.taken_over, lease.holder, now)
    with engine.connect() as connection:
        started = dict(
            connection.execute(
                sa.select(retrain_runs.c.id, retrain_runs.c.started_at).where(
                    retrain_runs.c.outcome == RunOutcome.RUNNING
                )
            ).all()
        )
    # read before the transaction: a registry on a slow volume holds no database lock
    candidates = {
        run_id: _finish_promotion(registry, candidate, lease.holder)
        for run_id, candidate in registered_candidates(registry, started).items()
    }
    with engine.begin() as connection:
        running = connection.execute(
            sa.select(retrain_runs.c.id)
            .where(retrain_runs.c.outcome == RunOutcome.RUNNING)
            .order_by(retrain_runs.c.id)
        ).scalars()
        completed: dict[int, str] = {}
        abandoned: list[int] = []
        for run_id in list(running):
            candidate = candidates.get(run_id)
            if candidate is None:
                values = {"outcome": RunOutcome.FAILED, "decision_reason": reason}
            else:
                why = completed_reason(candidate.version, lease.taken_over, lease.holder)
                values = _completion(candidate, why)
            updated = connection.execute(
                retrain_runs.update()
                .where(retrain_runs.c.id == run_id, retrain_runs.c.outcome == RunOutcome.RUNNING)
                .values(**values, finished_at=now)
            ).rowcount
            if updated != 1:
                continue
            if candidate is None:
                abandoned.append(run_id)
            else:
                completed[run_id] = candidate.version
                retrain_queue.settle(connection, run_id, RequestStatus.DONE)
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
        for position, runs in ((ABANDONED_RUNS, abandoned), (COMPLETED_RUNS, completed)):
            if runs:
                total = (read_position(connection, position) or 0) + len(runs)
                write_position(connection, position, total, now)
    recovery = Recovery(tuple(abandoned), completed, tuple(requeued), reason)
    if completed:
        log.warning(
            "recovered retraining runs %s left running by a job that died after registering "
            "their candidates (%s): recorded as finished with them, their requests done, "
            "nothing retrained",
            list(completed),
            ", ".join(completed.values()),
        )
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
