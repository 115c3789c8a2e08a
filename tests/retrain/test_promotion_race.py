"""A job slow rather than dead (a stalled volume, a paused process) loses its lease
after registering its candidate as promoted; the job that took the lease over recovers
the run and would complete the promotion. Exactly one of them decides the candidate's
fate, whatever the interleaving: served (``CURRENT`` names it, it stays ``promoted``) or
withdrawn (``rejected``, ``not served:``, ``CURRENT`` left on the champion), never a
version recorded as not served that is current, nor a current one recorded rejected.

Each test stops one side at the point where the other used to slip in (between reading
what to do and doing it) and lets the other side run to the end there."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retrain.job import RetrainJob
from retrain.lease import LEASE, Lease
from retrain.recovery import recover
from tests.retrain.labelled_log import QUICK
from tests.retrain.paused_registry import PausedAfterSettling, won_served
from watchkeeper import retrain_queue
from watchkeeper.current_pointer import CurrentMove, CurrentPointer
from watchkeeper.db.tables import retrain_lease, retrain_requests, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import VersionNotes, VersionStatus

# Generous: each wait is for the other side of the race on a busy machine.
DEADLINE = 240.0


def _take_over(engine: sa.Engine) -> Lease:
    """The slow job's lease expires and another job takes it."""
    with engine.begin() as connection:
        connection.execute(
            retrain_lease.update()
            .where(retrain_lease.c.name == LEASE)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    other = Lease(engine, 600, holder="other")
    assert other.acquire()
    return other


class _SlowJobRegistry(ModelRegistry):
    """The slow job's registry: once its candidate is written, ``after_register`` runs
    (its lease is lost there); ``before_set_status`` runs when the job is about to record
    its candidate as not served, after it decided to."""

    def __init__(
        self,
        root: Path,
        after_register: Callable[[str], None],
        before_set_status: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(root)
        self.after_register = after_register
        self.before_set_status = before_set_status

    def register(self, *args: Any, **kwargs: Any) -> str:
        version = super().register(*args, **kwargs)
        self.after_register(version)
        return version

    def set_status(self, version: str, status: VersionStatus, *, reason: str) -> None:
        self.before_set_status()
        super().set_status(version, status, reason=reason)


class _PausedBeforeServing(ModelRegistry):
    """The recovering job's registry: it stops just before it moves ``CURRENT`` (having
    read the candidate as promoted and decided to serve it) until ``resume`` is set."""

    def __init__(self, root: Path, resume: threading.Event) -> None:
        super().__init__(root)
        self.resume = resume
        self.paused = threading.Event()

    def move_current(self, version: str, *, expected: CurrentPointer) -> CurrentMove:
        self.paused.set()
        assert self.resume.wait(DEADLINE), "the slow job never finished"
        return super().move_current(version, expected=expected)


def _consistent(registry: ModelRegistry, version: str) -> tuple[str | None, str, str]:
    record = registry.record(version)
    current = registry.current_version()
    reason = record.notes.reason or ""
    if current == version:
        assert record.status is VersionStatus.PROMOTED, (
            f"{version} is current but recorded {record.status} ({reason})"
        )
    else:
        assert record.status is VersionStatus.REJECTED and reason.startswith("not served"), (
            f"{version} was never served but is recorded {record.status} ({reason})"
        )
    return current, record.status, reason


def _run_and_requests(engine: sa.Engine) -> tuple[Any, list[str]]:
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
        statuses = connection.execute(sa.select(retrain_requests.c.status)).scalars().all()
    return run, list(statuses)


def test_recovery_that_read_the_candidate_before_its_job_withdrew_it_does_not_serve_it_rejected(
    labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    """The recovery reads the candidate as promoted and decides to serve it; before it
    moves ``CURRENT`` the slow job finds its lease lost and finishes. Before the fix the
    job recorded the candidate rejected (``not served``) and the recovery then served it."""
    retrain_queue.enqueue(engine, trigger="manual", reason="slow while registering", options=QUICK)
    root = settings.storage.registry_path
    job_finished = threading.Event()
    recovering = _PausedBeforeServing(root, resume=job_finished)
    errors: list[BaseException] = []

    def recovery(other: Lease) -> None:
        try:
            recover(engine, other, recovering)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads: list[threading.Thread] = []

    def lose_the_lease(version: str) -> None:
        thread = threading.Thread(target=recovery, args=(_take_over(engine),))
        thread.start()
        threads.append(thread)
        assert recovering.paused.wait(DEADLINE), "the recovery did not decide to serve"

    registry = _SlowJobRegistry(root, after_register=lose_the_lease)
    try:
        result = RetrainJob(settings, engine, registry).run()
    finally:
        job_finished.set()
        for thread in threads:
            thread.join(DEADLINE)
    assert errors == []

    current, _, _ = _consistent(registry, "v2")
    # the recovery decided first: the candidate is served, and the slow job says so
    assert current == "v2"
    assert result is not None and result.candidate_version == "v2"
    assert result.outcome == "promoted", result.reason
    run, statuses = _run_and_requests(engine)
    assert (run.outcome, run.candidate_version) == ("promoted", "v2")
    assert statuses == ["done"], "a served candidate's requests were queued again"


def test_a_job_that_decided_to_withdraw_its_candidate_is_not_overtaken_by_recovery(
    labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    """The slow job finds its lease lost and decides to record its candidate as not
    served; before it writes that, the job that took the lease over runs its whole
    recovery. Before the fix the recovery served the candidate, then the job recorded it
    rejected: a version recorded as never served was current."""
    retrain_queue.enqueue(engine, trigger="manual", reason="slow while registering", options=QUICK)
    root = settings.storage.registry_path
    others: list[Lease] = []

    def recovery_runs_now() -> None:
        [other] = others
        recover(engine, other, ModelRegistry(root))

    registry = _SlowJobRegistry(
        root,
        after_register=lambda _version: others.append(_take_over(engine)),
        before_set_status=recovery_runs_now,
    )

    result = RetrainJob(settings, engine, registry).run()

    current, _, _ = _consistent(registry, "v2")
    # the job decided first: the candidate is withdrawn, and the recovery left it so
    assert current == "v1"
    assert result is not None and result.outcome == "failed"
    assert "lease was lost" in result.reason and "rejected" in result.reason
    run, _ = _run_and_requests(engine)
    assert (run.outcome, run.candidate_version) == ("rejected", "v2")


def test_a_job_paused_after_winning_served_does_not_move_current_back_over_a_newer_promotion(
    labelled_log: int, engine: sa.Engine, settings: Settings, trained: TrainedModel
) -> None:
    """The job settles its candidate (v2) served and stops for longer than its lease.
    The job that takes the lease over completes the promotion (v2 is served), then a
    newer version (v3) is promoted. When the slow job moves again it must not put v2
    back: before the fix it wrote ``CURRENT`` unconditionally, and the registry served
    the older model."""
    retrain_queue.enqueue(engine, trigger="manual", reason="paused after serving", options=QUICK)
    root = settings.storage.registry_path
    resume = threading.Event()
    slow = PausedAfterSettling(root, resume, won_served)  # then moves CURRENT
    results: list[Any] = []
    errors: list[BaseException] = []

    def slow_job() -> None:
        try:
            results.append(RetrainJob(settings, engine, slow).run())
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=slow_job)
    thread.start()
    try:
        assert slow.paused.wait(DEADLINE), "the job never settled its candidate served"
        other = _take_over(engine)
        recover(engine, other, ModelRegistry(root))
        registry = ModelRegistry(root)
        assert registry.current_version() == "v2", "the recovery did not serve v2"
        # a newer promotion, made after the slow job's lease was lost
        newer = registry.register(
            trained,
            make_current=False,
            status=VersionStatus.PROMOTED,
            notes=VersionNotes(reason="better than v2", champion="v2"),
        )
        registry.set_current(newer)
        other.release()
    finally:
        resume.set()
        thread.join(DEADLINE)
    assert not thread.is_alive()
    assert errors == []

    assert registry.current_version() == newer == "v3", (
        "the slow job moved CURRENT back to its own candidate over a newer promotion"
    )
    assert registry.record("v2").status is VersionStatus.PROMOTED  # it was served
    [result] = results
    assert result is not None and result.candidate_version == "v2"


class _MovedBeforeServing(ModelRegistry):
    """The job's registry: just before the job moves ``CURRENT`` to its candidate,
    ``meanwhile`` runs once (an operator's rollback, another writer's move)."""

    def __init__(self, root: Path, meanwhile: Callable[[ModelRegistry], None]) -> None:
        super().__init__(root)
        self.meanwhile: Callable[[ModelRegistry], None] | None = meanwhile

    def move_current(self, version: str, *, expected: CurrentPointer) -> CurrentMove:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile(ModelRegistry(self.root))
        return super().move_current(version, expected=expected)


@pytest.mark.parametrize("rollbacks", [1, 2, 3])
def test_rollbacks_to_the_version_current_already_do_not_stop_a_promotion(
    labelled_log: int, engine: sa.Engine, settings: Settings, rollbacks: int
) -> None:
    """`/admin/rollback {"version": "v1"}` while v1 was current, during a job: the job
    logged "not made current: CURRENT was moved from v1 to v1 meanwhile" and recorded its
    never-served candidate promoted. Rolling back to the version served changes nothing
    served: the promotion goes on. So do two or three in a row (a rollback retried):
    the second reaffirmed the first, not the move the job read, and the job recorded its
    candidate rejected ("CURRENT was moved from v1 to v1 meanwhile")."""
    retrain_queue.enqueue(engine, trigger="manual", reason="better", options=QUICK)
    answers: list[tuple[str | None, str]] = []

    def roll_back(other: ModelRegistry) -> None:
        answers.extend(other.rollback("v1") for _ in range(rollbacks))

    registry = _MovedBeforeServing(settings.storage.registry_path, roll_back)

    result = RetrainJob(settings, engine, registry).run()

    # each said as a rollback to the version current already
    assert answers == [("v1", "v1")] * rollbacks
    assert result is not None and result.outcome == "promoted", result.reason
    assert registry.current_version() == "v2"
    assert registry.record("v2").status is VersionStatus.PROMOTED
    run, statuses = _run_and_requests(engine)
    assert (run.outcome, run.candidate_version) == ("promoted", "v2")


def test_a_candidate_current_was_moved_away_from_is_recorded_not_served(
    labelled_log: int, engine: sa.Engine, settings: Settings, trained: TrainedModel
) -> None:
    """CURRENT moved from the champion to another version while the job promoted its
    candidate: the move stands, and the candidate, never served, was recorded and counted
    promoted (a default rollback from v3 then picked it)."""
    retrain_queue.enqueue(engine, trigger="manual", reason="better", options=QUICK)

    def newer_version(other: ModelRegistry) -> None:
        other.register(trained, make_current=True)  # v3, current

    registry = _MovedBeforeServing(settings.storage.registry_path, newer_version)

    result = RetrainJob(settings, engine, registry).run()

    assert registry.current_version() == "v3"  # the move made meanwhile stands
    current, status, reason = _consistent(registry, "v2")
    assert reason.startswith("not served: CURRENT was moved from v1 to v3 meanwhile"), reason
    assert "its gate had said: MAE" in reason
    assert result is not None and result.outcome == "rejected"
    run, statuses = _run_and_requests(engine)
    assert (run.outcome, run.decision_reason) == ("rejected", reason)
    assert statuses == ["done"]
    assert registry.rollback() == ("v3", "v1")  # never the candidate that was not served
