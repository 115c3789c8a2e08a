"""A retraining job that died mid-run (SIGKILL, out of memory, a lost node) left its run
and the requests it claimed ``running``: the next job to take the lease marks the run
failed, saying it was abandoned, and takes its requests. A live holder's run is never
touched, and workers racing for the lease recover a run once. On SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest

from retrain.job import RetrainJob, RunResult
from retrain.lease import LEASE, Lease
from retrain.metrics import RetrainCollector
from retrain.recovery import recover
from tests.processes import Process, metric, wait_for
from tests.retrain.labelled_log import QUICK
from tests.retrain.paused_registry import PausedAfterSettling
from watchkeeper import retrain_queue
from watchkeeper.current_pointer import CurrentMove, CurrentPointer
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import retrain_lease, retrain_requests, retrain_runs
from watchkeeper.model_metrics import ModelMetrics
from watchkeeper.registry import ModelRegistry, Promotion
from watchkeeper.retrain_status import UNCLAIMED_TRIGGER
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import VersionMetadata, VersionNotes, VersionStatus

DEAD_HOLDER = "lost-node:4242:0badc0de"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    """The retraining fixtures' settings, on each supported database."""
    return make_settings(
        database_url=database_url, log_flush_interval=0.02, log_write_interval=0.02
    )


def _abandon(engine: sa.Engine, lease_expires_in: timedelta) -> tuple[int, list[int]]:
    """The rows a job leaves when it is killed after claiming two requests: its run and
    requests ``running``, and the lease still naming it as holder."""
    first = retrain_queue.enqueue(
        engine, trigger="manual", reason="before the crash", options=QUICK
    )
    second = retrain_queue.enqueue(engine, trigger="monitor", reason="drift", options=QUICK)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        run_id = int(
            connection.execute(
                retrain_runs.insert().values(
                    started_at=now - timedelta(minutes=5),
                    trigger="manual,monitor",
                    reason="before the crash; drift",
                    request_ids=[first, second],
                    data={},
                    outcome="running",
                )
            ).inserted_primary_key[0]
        )
        connection.execute(
            retrain_lease.update()
            .where(retrain_lease.c.name == LEASE)
            .values(holder=DEAD_HOLDER, expires_at=now + lease_expires_in)
        )
    assert [r.id for r in retrain_queue.claim(engine, run_id)] == [first, second]
    return run_id, [first, second]


def _runs(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(retrain_runs).order_by(retrain_runs.c.id))
        return {row.id: dict(row._mapping) for row in rows}


def _requests(engine: sa.Engine) -> dict[int, tuple[str, int | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(retrain_requests.c.id, retrain_requests.c.status, retrain_requests.c.run_id)
        )
        return {row.id: (row.status, row.run_id) for row in rows}


def _scrape(engine: sa.Engine) -> str:
    registry = CollectorRegistry()
    registry.register(RetrainCollector(engine))
    return generate_latest(registry).decode()


def _abandoned_total(text: str) -> float | None:
    return metric(text, "watchkeeper_retrain_runs_abandoned_total")


@pytest.mark.integration
def test_the_next_job_fails_an_abandoned_run_and_serves_its_requests(
    make_job: Callable[..., RetrainJob], labelled_log: int, engine: sa.Engine, settings: Settings
) -> None:
    abandoned, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))

    result = make_job().run()

    assert result is not None, "the claimed requests were never served again"
    runs = _runs(engine)
    assert set(runs) == {abandoned, result.run_id}
    dead = runs[abandoned]
    assert dead["outcome"] == "failed" and dead["finished_at"] is not None
    assert dead["decision_reason"].startswith("abandoned: ")
    assert f"lease holder {DEAD_HOLDER} stopped renewing" in dead["decision_reason"]
    # the new job took the requests and served them
    assert result.outcome in {"promoted", "rejected"}
    assert runs[result.run_id]["request_ids"] == request_ids
    # its version names its run as the database holds it, for a recovery to match exactly
    assert result.candidate_version is not None
    notes = ModelRegistry(settings.storage.registry_path).record(result.candidate_version).notes
    assert notes.run_id == result.run_id and notes.run_started_at is not None
    assert datetime.fromisoformat(notes.run_started_at) == runs[result.run_id]["started_at"]
    assert _requests(engine) == {i: ("done", result.run_id) for i in request_ids}
    text = _scrape(engine)
    assert _abandoned_total(text) == 1
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="failed") == 1
    assert metric(text, "watchkeeper_retrain_runs_in_progress") == 0
    assert Lease(engine, 60).current_holder() is None


def test_a_live_holders_run_is_never_touched(
    make_job: Callable[..., RetrainJob], engine: sa.Engine
) -> None:
    running, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=60))
    waiting = retrain_queue.enqueue(engine, trigger="manual", reason="while it runs")

    assert make_job().run() is None  # the holder renews its lease: it is alive

    [run] = _runs(engine).values()
    assert (run["id"], run["outcome"], run["decision_reason"]) == (running, "running", None)
    assert _requests(engine) == {
        **{i: ("running", running) for i in request_ids},
        waiting: ("pending", None),
    }
    assert _abandoned_total(_scrape(engine)) == 0
    assert Lease(engine, 60).current_holder() == DEAD_HOLDER


def test_workers_racing_for_the_lease_recover_an_abandoned_run_once(
    settings: Settings, engine: sa.Engine
) -> None:
    abandoned, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    workers = 4
    start = threading.Barrier(workers)
    results: list[RunResult | None] = []
    errors: list[BaseException] = []

    def worker() -> None:
        # each worker its own process in production: its own engine and registry handle
        own = create_engine(settings.storage.database_url)
        job = RetrainJob(settings, own, ModelRegistry(settings.storage.registry_path))
        try:
            start.wait(timeout=60)
            results.append(job.run())
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)

    assert errors == []
    # one job took the requests (no labelled data here: it fails saying so); the others
    # found the lease held, or nothing left to do once it was given back
    [served] = [r for r in results if r is not None]
    runs = _runs(engine)
    assert set(runs) == {abandoned, served.run_id}
    assert runs[abandoned]["decision_reason"].startswith("abandoned: ")
    assert runs[served.run_id]["request_ids"] == request_ids
    assert "labelled" in runs[served.run_id]["decision_reason"]
    assert _requests(engine) == {i: ("failed", served.run_id) for i in request_ids}
    assert _abandoned_total(_scrape(engine)) == 1


def test_a_job_killed_between_its_steps_leaves_nothing_running(
    make_job: Callable[..., RetrainJob], engine: sa.Engine
) -> None:
    """Killed after recording its outcome but before its requests: they take the run's
    outcome. Killed between inserting its run and claiming: the run fails, and the
    requests, never claimed, are still pending for the job."""
    finished, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    with engine.begin() as connection:
        connection.execute(
            retrain_runs.update()
            .where(retrain_runs.c.id == finished)
            .values(outcome="promoted", finished_at=datetime.now(UTC))
        )
        unclaimed = int(
            connection.execute(
                retrain_runs.insert().values(
                    started_at=datetime.now(UTC),
                    trigger=UNCLAIMED_TRIGGER,
                    reason="",
                    request_ids=[],
                    data={},
                    outcome="running",
                )
            ).inserted_primary_key[0]
        )

    assert make_job().run() is None  # nothing left pending once put right

    runs = _runs(engine)
    assert set(runs) == {finished, unclaimed}
    assert runs[finished]["outcome"] == "promoted"
    assert runs[unclaimed]["outcome"] == "failed"
    assert runs[unclaimed]["decision_reason"].startswith("abandoned: ")
    assert _requests(engine) == {i: ("done", finished) for i in request_ids}
    assert _abandoned_total(_scrape(engine)) == 1


def _running_run(engine: sa.Engine) -> int | None:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(retrain_runs.c.id).where(retrain_runs.c.outcome == "running")
        ).scalar()


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_worker_killed_mid_job_is_recovered_by_the_next_worker(
    start_watchkeeper: Callable[..., Process],
    settings: Settings,
    engine: sa.Engine,
    request: pytest.FixtureRequest,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("one database suffices for the processes; recovery is tested on both")
    request.getfixturevalue("labelled_log")
    env = {
        "WATCHKEEPER_DATABASE_URL": settings.storage.database_url,
        "WATCHKEEPER_RETRAIN_POLL_SECONDS": "0.2",
        # renewed every second while the job runs; expires 3 s after the kill
        "WATCHKEEPER_RETRAIN_LEASE_SECONDS": "3",
    }
    killed = start_watchkeeper("retrain worker", **env)
    request_id = retrain_queue.enqueue(
        engine, trigger="manual", reason="before the kill", options=QUICK
    )

    def claimed() -> bool:  # the run recorded and the request claimed by it
        return _requests(engine)[request_id][0] == "running"

    assert wait_for(claimed, timeout=120, interval=0.02), killed.log_path.read_text()[-2000:]
    killed.kill()  # SIGKILL: no finally, no release
    run_id = _running_run(engine)
    assert run_id is not None, "the job finished before it was killed: nothing to recover"
    assert _requests(engine) == {request_id: ("running", run_id)}

    successor = start_watchkeeper("retrain worker", **env)

    def served() -> bool:
        text = successor.get("/metrics").text
        finished = sum(
            metric(text, "watchkeeper_retrain_runs_total", outcome=o) or 0
            for o in ("promoted", "rejected")
        )
        return finished == 1

    assert wait_for(served, timeout=300, interval=0.5), successor.log_path.read_text()[-3000:]
    text = successor.get("/metrics").text
    assert _abandoned_total(text) == 1
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="failed") == 1
    runs = _runs(engine)
    dead = runs[run_id]
    assert dead["outcome"] == "failed"
    assert f":{killed.process.pid}:" in dead["decision_reason"]  # the killed holder's id
    [new_run] = [r for r in runs.values() if r["id"] != run_id]
    assert new_run["request_ids"] == [request_id]
    # the job records its run, then its requests: the metric may come first
    assert wait_for(
        lambda: _requests(engine) == {request_id: ("done", new_run["id"])}, timeout=120
    ), _requests(engine)
    log = successor.log_path.read_text()
    assert log.count("recovered retraining runs") == 1, log[-3000:]


def test_a_run_whose_job_died_after_registering_is_recorded_with_its_version(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """The state a job killed between registering its (rejected) candidate and recording
    its run leaves, written directly: its run and requests ``running``, the version in
    the registry naming the run. The next job records the run with that version instead
    of training again."""
    run_id, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    registry = ModelRegistry(registry_dir)
    holdout = ModelMetrics(rows=120, mae=15_000.0, coverage=0.9)
    version = registry.register(
        trained,
        make_current=False,
        status=VersionStatus.REJECTED,
        notes=VersionNotes(
            run_id=run_id,
            reason="MAE 15,500 does not beat the champion's 15,000 by 2% (needs < 14,700)",
            champion="v1",
            champion_metrics_on_holdout=holdout,
        ),
    )

    assert make_job().run() is None  # nothing left to train

    runs = _runs(engine)
    assert set(runs) == {run_id}
    run = runs[run_id]
    assert (run["outcome"], run["candidate_version"], run["champion_version"]) == (
        "rejected",
        version,
        "v1",
    )
    assert run["finished_at"] is not None
    assert run["decision_reason"].startswith("MAE 15,500 does not beat")
    assert f"stopped after registering {version}" in run["decision_reason"]
    assert run["champion_metrics"] == holdout.stored()
    assert run["candidate_metrics"] == trained.metrics.stored()
    assert _requests(engine) == {i: ("done", run_id) for i in request_ids}
    assert registry.versions() == ["v1", version] and registry.current_version() == "v1"
    text = _scrape(engine)
    assert _abandoned_total(text) == 0
    assert metric(text, "watchkeeper_retrain_runs_completed_by_recovery_total") == 1
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="rejected") == 1
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="failed") == 0


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        "WATCHKEEPER_DATABASE_URL": settings.storage.database_url,
        "WATCHKEEPER_RETRAIN_POLL_SECONDS": "0.2",
        "WATCHKEEPER_RETRAIN_LEASE_SECONDS": "3",
    }


def _kill_a_worker_after_settling(
    start_watchkeeper: Callable[..., Process],
    settings: Settings,
    engine: sa.Engine,
    registry: ModelRegistry,
) -> tuple[Process, int, int]:
    """A real worker SIGKILLed once it has registered its candidate as promoted and
    settled it served, before it moves ``CURRENT``: the worker, its run's id and its
    request's."""
    killed = start_watchkeeper("retrain worker", **_worker_env(settings))
    # The registry writes the new CURRENT through a temporary file named after the
    # process (current_pointer._claim) before it claims the move: a FIFO there, which
    # nobody reads, holds the job exactly after its version's metadata (and its
    # settlement as served) is written and before anything else happens.
    held_at = registry.root / f".CURRENT.{killed.process.pid}.tmp"
    os.mkfifo(held_at)
    request_id = retrain_queue.enqueue(
        engine, trigger="manual", reason="before the kill", options=QUICK
    )
    versions = len(registry.versions())

    assert wait_for(lambda: len(registry.versions()) > versions, timeout=300, interval=0.1), (
        killed.log_path.read_text()[-3000:]
    )
    candidate = registry.versions()[-1]
    assert wait_for(lambda: registry.promotion_settlement(candidate) is not None, timeout=60)
    killed.kill()  # SIGKILL: no finally, no release
    held_at.unlink()
    run_id = _running_run(engine)
    assert run_id is not None, killed.log_path.read_text()[-3000:]
    assert _requests(engine) == {request_id: ("running", run_id)}
    return killed, run_id, request_id


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_worker_killed_after_settling_its_candidate_served_then_rolled_back_from(
    start_watchkeeper: Callable[..., Process],
    settings: Settings,
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL of a real worker whose candidate v3 is settled served, ``CURRENT`` still
    on its champion v2; an operator then rolls back to v1. The next worker left v3
    ``promoted``, its run promoted and counted so, though v3 was never served."""
    if engine.dialect.name != "sqlite":
        pytest.skip("one database suffices for the processes; recovery is tested on both")
    request.getfixturevalue("labelled_log")
    registry = ModelRegistry(registry_dir)
    assert registry.register(trained) == "v2"  # the champion, current
    _, run_id, request_id = _kill_a_worker_after_settling(
        start_watchkeeper, settings, engine, registry
    )
    settled = registry.promotion_settlement("v3")
    assert settled is not None and settled.outcome is Promotion.SERVED
    assert registry.record("v3").status == "promoted"
    assert registry.rollback() == ("v2", "v1")

    successor = start_watchkeeper("retrain worker", **_worker_env(settings))

    assert wait_for(lambda: _requests(engine)[request_id][0] != "running", timeout=300), (
        successor.log_path.read_text()[-3000:]
    )
    assert wait_for(lambda: Lease(engine, 60).current_holder() is None, timeout=60)
    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("rejected", "v3")
    record = registry.record("v3")
    assert record.status == "rejected", "never served, recorded promoted"
    assert record.notes.reason is not None and record.notes.reason.startswith("not served: ")
    assert registry.current_version() == "v1"
    text = successor.get("/metrics").text
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="promoted") == 0
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="rejected") == 1


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_worker_killed_after_registering_its_candidate_is_not_retrained(
    start_watchkeeper: Callable[..., Process],
    settings: Settings,
    engine: sa.Engine,
    registry_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL of a real worker at the point between its candidate's registration and
    its run's record: the promoted version's metadata written, ``CURRENT`` not yet moved
    to it. The next worker records the run as promoted with that version, completes the
    promotion, and trains nothing."""
    if engine.dialect.name != "sqlite":
        pytest.skip("one database suffices for the processes; recovery is tested on both")
    request.getfixturevalue("labelled_log")
    registry = ModelRegistry(registry_dir)
    killed, run_id, request_id = _kill_a_worker_after_settling(
        start_watchkeeper, settings, engine, registry
    )
    assert registry.current_version() == "v1"
    assert registry.record("v2").notes.run_id == run_id

    successor = start_watchkeeper("retrain worker", **_worker_env(settings))

    def recorded() -> bool:
        return _requests(engine)[request_id][0] != "running"

    assert wait_for(recorded, timeout=300, interval=0.2), successor.log_path.read_text()[-3000:]
    assert wait_for(lambda: Lease(engine, 60).current_holder() is None, timeout=60)
    runs = _runs(engine)
    assert set(runs) == {run_id}, "the killed job's requests were trained again"
    run = runs[run_id]
    assert (run["outcome"], run["candidate_version"], run["champion_version"]) == (
        "promoted",
        "v2",
        "v1",
    )
    assert f":{killed.process.pid}:" in run["decision_reason"]
    assert _requests(engine) == {request_id: ("done", run_id)}
    assert registry.versions() == ["v1", "v2"]
    assert registry.current_version() == "v2"
    text = successor.get("/metrics").text
    assert _abandoned_total(text) == 0
    assert metric(text, "watchkeeper_retrain_runs_completed_by_recovery_total") == 1
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="promoted") == 1
    assert metric(text, "watchkeeper_retrain_runs_total", outcome="failed") == 0
    log = successor.log_path.read_text()
    assert "after registering their candidates (v2)" in log, log[-3000:]
    assert "retraining run" not in log.replace("retraining runs", "")  # no job of its own


def _served_by_a_dead_job(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel
) -> tuple[int, ModelRegistry, str]:
    """A dead job's run and its candidate, promoted over v1 and made current (settled
    served first, as a job does) before the job died, its run unrecorded."""
    run_id, _ = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    registry = ModelRegistry(registry_dir)
    version = registry.register(
        trained,
        make_current=True,
        status=VersionStatus.PROMOTED,
        notes=VersionNotes(run_id=run_id, reason="better than v1", champion="v1"),
    )
    registry.settle_promotion(version, Promotion.SERVED, by=DEAD_HOLDER, reason="promoted")
    return run_id, registry, version


def test_recovery_does_not_undo_a_rollback_of_a_dead_jobs_promotion(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """A job killed after promoting its candidate (``CURRENT`` moved to it) and before
    recording its run; someone then rolls back to the champion. The next job records
    the run with its version but leaves ``CURRENT`` where the rollback put it: only a
    promotion cut short before ``CURRENT`` moved is completed."""
    run_id, registry, version = _served_by_a_dead_job(engine, registry_dir, trained)
    assert registry.rollback() == (version, "v1")

    assert make_job().run() is None

    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("promoted", version)
    assert registry.current_version() == "v1", "recovery undid the rollback"
    assert registry.record(version).status == "promoted", "it was served"


def test_a_dead_jobs_candidate_a_rollback_kept_from_being_served_is_recorded_rejected(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """The job registered its candidate promoted and died before settling it served
    (so before moving ``CURRENT``); an operator made another version current since. The
    recovery leaves ``CURRENT`` as they put it, and the candidate, never served, was
    recorded and counted ``promoted``: a later default rollback could pick it."""
    run_id, _ = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    registry = ModelRegistry(registry_dir)
    version = registry.register(
        trained,
        make_current=False,
        status=VersionStatus.PROMOTED,
        notes=VersionNotes(run_id=run_id, reason="better than v1", champion="v1"),
    )
    chosen = registry.register(trained, make_current=True)  # a manual train, made current

    assert make_job().run() is None

    assert registry.current_version() == chosen
    record = registry.record(version)
    assert record.status == "rejected", "a version never served is recorded promoted"
    assert record.notes.reason is not None and record.notes.reason.startswith("not served:")
    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("rejected", version)
    settled = registry.promotion_settlement(version)
    assert settled is not None and settled.outcome is Promotion.WITHDRAWN


@pytest.mark.parametrize("rollbacks", [1, 2])
def test_a_dead_jobs_candidate_is_served_though_its_champion_was_rolled_back_to_since(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel, rollbacks: int
) -> None:
    """The job registered its candidate promoted and died before moving ``CURRENT``; an
    operator then rolled back to the champion, current already (nothing served changed,
    and a live job would have moved on). The recovery took that write of ``CURRENT`` for
    a rollback, left the candidate unserved and recorded it rejected."""
    run_id, _, version = _promoted_candidate(engine, registry_dir, trained)
    registry = ModelRegistry(registry_dir)
    for _ in range(rollbacks):
        assert registry.rollback("v1") == ("v1", "v1")
    lease = Lease(engine, 60)
    assert lease.acquire()

    recover(engine, lease, registry)

    lease.release()
    assert registry.current_version() == version, "a no-op rollback kept it from being served"
    assert registry.record(version).status == "promoted"
    assert _runs(engine)[run_id]["outcome"] == "promoted"


def test_a_dead_jobs_candidate_is_not_served_after_a_rollback_reaffirmed_since(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """The job served its candidate and died; an operator rolled back to the champion,
    then (again) to the champion, current already: the reaffirm counts from the real
    rollback, made after the candidate, which stands."""
    run_id, registry, version = _served_by_a_dead_job(engine, registry_dir, trained)
    assert registry.rollback() == (version, "v1")
    assert registry.rollback("v1") == ("v1", "v1")

    assert make_job().run() is None

    assert registry.current_version() == "v1", "recovery undid the rollback"
    assert registry.record(version).status == "promoted", "it was served"


class _RolledBackToTheChampionBeforeServing(ModelRegistry):
    """An operator rolls back to the champion, current already, just as the recovery
    moves ``CURRENT`` to the candidate (after its checks)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.rolled_back = False

    def move_current(self, version: str, *, expected: CurrentPointer) -> CurrentMove:
        if not self.rolled_back:
            self.rolled_back = True
            assert ModelRegistry(self.root).rollback("v1") == ("v1", "v1")
        return super().move_current(version, expected=expected)


def test_a_rollback_to_the_champion_current_already_during_recovery_does_not_stop_it(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel
) -> None:
    run_id, _, version = _promoted_candidate(engine, registry_dir, trained)
    registry = _RolledBackToTheChampionBeforeServing(registry_dir)
    lease = Lease(engine, 60)
    assert lease.acquire()

    recover(engine, lease, registry)

    lease.release()
    assert registry.rolled_back
    assert registry.current_version() == version
    assert registry.record(version).status == "promoted"
    assert _runs(engine)[run_id]["outcome"] == "promoted"


def _started_at(engine: sa.Engine, run_id: int) -> datetime:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(retrain_runs.c.started_at).where(retrain_runs.c.id == run_id)
        ).scalar_one()


def test_a_version_naming_its_run_is_found_though_the_clock_stepped_back(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """The dead job's clock was an hour ahead when it recorded its run and was stepped
    back before it registered its candidate: the version's ``created_at`` is earlier
    than the run's ``started_at``. It names the run, so the run is still recorded with
    it rather than retrained."""
    run_id, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    with engine.begin() as connection:
        connection.execute(
            retrain_runs.update()
            .where(retrain_runs.c.id == run_id)
            .values(started_at=datetime.now(UTC) + timedelta(hours=1))
        )
    started = _started_at(engine, run_id)
    registry = ModelRegistry(registry_dir)
    version = registry.register(
        trained,
        make_current=False,
        status=VersionStatus.REJECTED,
        notes=VersionNotes(
            run_id=run_id,
            run_started_at=started.isoformat(),
            reason="MAE 15,500 does not beat the champion's 15,000 by 2% (needs < 14,700)",
            champion="v1",
        ),
    )
    assert datetime.fromisoformat(registry.record(version).created_at) < started

    assert make_job().run() is None, "the run's requests were trained again"

    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("rejected", version)
    assert _requests(engine) == {i: ("done", run_id) for i in request_ids}


def test_a_version_naming_an_older_run_of_the_same_id_is_not_taken_for_its_own(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """A registry reused with a new database: a version left by the old database's run
    of the same id, registered (by the clock) after this run started, is not this run's
    candidate. The run is abandoned and its requests queued again."""
    run_id, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    older_run = _started_at(engine, run_id) - timedelta(days=400)
    registry = ModelRegistry(registry_dir)
    version = registry.register(
        trained,
        make_current=False,
        status=VersionStatus.REJECTED,
        notes=VersionNotes(
            run_id=run_id, run_started_at=older_run.isoformat(), reason="old", champion="v1"
        ),
    )

    result = make_job().run()

    run = _runs(engine)[run_id]
    assert run["outcome"] == "failed" and run["decision_reason"].startswith("abandoned: ")
    assert run["candidate_version"] is None, f"{version} taken for the run's candidate"
    # queued again and taken by the next job (no labelled data here: it fails saying so)
    assert result is not None and result.run_id != run_id
    assert _requests(engine) == {i: ("failed", result.run_id) for i in request_ids}


class _WithdrawnAfterTheScan(ModelRegistry):
    """A registry in which the candidate's job, slow rather than dead, finds its lease
    lost and records its candidate as not served just after the recovery read it as
    promoted."""

    def __init__(self, root: Path, withdrawn: str) -> None:
        super().__init__(root)
        self.withdrawn = withdrawn
        self.reads = 0

    def record(self, version: str) -> VersionMetadata:
        record = super().record(version)
        if version == self.withdrawn:
            self.reads += 1
            if self.reads == 1:
                self.set_status(version, VersionStatus.REJECTED, reason="not served: lease lost")
        return record


def test_recovery_does_not_serve_a_candidate_its_job_withdrew_meanwhile(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel
) -> None:
    run_id, request_ids, version = _promoted_candidate(engine, registry_dir, trained)
    registry = _WithdrawnAfterTheScan(registry_dir, version)
    lease = Lease(engine, 60)
    assert lease.acquire()

    recovery = recover(engine, lease, registry)

    lease.release()
    assert registry.current_version() == "v1", "recovery served a withdrawn candidate"
    assert recovery.completed_runs == {run_id: version}
    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("rejected", version)
    assert _requests(engine) == {i: ("done", run_id) for i in request_ids}


def _promoted_candidate(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel, champion: str = "v1"
) -> tuple[int, list[int], str]:
    """A dead job's run and the candidate it registered as promoted over ``champion``,
    not yet current."""
    run_id, request_ids = _abandon(engine, lease_expires_in=timedelta(seconds=-5))
    version = ModelRegistry(registry_dir).register(
        trained,
        make_current=False,
        status=VersionStatus.PROMOTED,
        notes=VersionNotes(
            run_id=run_id,
            run_started_at=_started_at(engine, run_id).isoformat(),
            reason=f"better than {champion}",
            champion=champion,
        ),
    )
    return run_id, request_ids, version


def test_a_candidate_settled_withdrawn_by_a_job_that_then_died_is_recorded_rejected(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel
) -> None:
    """The slow job settled its candidate withdrawn and died before recording it
    rejected: the recovery neither serves it nor leaves it ``promoted``."""
    run_id, request_ids, version = _promoted_candidate(engine, registry_dir, trained)
    registry = ModelRegistry(registry_dir)
    reason = "not served: its job (run 1) lost the retraining lease"
    registry.settle_promotion(version, Promotion.WITHDRAWN, by=DEAD_HOLDER, reason=reason)
    lease = Lease(engine, 60)
    assert lease.acquire()

    recovery = recover(engine, lease, registry)

    lease.release()
    assert registry.current_version() == "v1", "recovery served a withdrawn candidate"
    record = registry.record(version)
    assert (record.status, record.notes.reason) == ("rejected", reason)
    assert recovery.completed_runs == {run_id: version}
    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("rejected", version)
    assert _requests(engine) == {i: ("done", run_id) for i in request_ids}


def test_a_candidate_settled_served_by_a_job_that_then_died_is_made_current(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel
) -> None:
    """The job settled its candidate served and died before moving ``CURRENT``: the
    recovery, told so when it settles, completes the promotion."""
    run_id, _, version = _promoted_candidate(engine, registry_dir, trained)
    registry = ModelRegistry(registry_dir)
    registry.settle_promotion(version, Promotion.SERVED, by=DEAD_HOLDER, reason="promoted")
    lease = Lease(engine, 60)
    assert lease.acquire()

    recover(engine, lease, registry)

    lease.release()
    assert registry.current_version() == version
    assert registry.record(version).status == "promoted"
    settled = registry.promotion_settlement(version)
    assert settled is not None and settled.by == DEAD_HOLDER
    assert _runs(engine)[run_id]["outcome"] == "promoted"


def test_a_candidate_settled_served_by_a_job_that_died_then_rolled_back_is_recorded_rejected(
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    registry_dir: Path,
    trained: TrainedModel,
) -> None:
    """The job settled its candidate v3 served and died before moving ``CURRENT`` off its
    champion v2; an operator then rolled back to v1. The recovery left ``CURRENT`` at
    v1, but v3, never served, stayed ``promoted`` and its run counted promoted, as if
    it had been served and rolled back."""
    registry = ModelRegistry(registry_dir)
    champion = registry.register(trained)  # v2, current
    run_id, request_ids, candidate = _promoted_candidate(engine, registry_dir, trained, champion)
    registry.settle_promotion(candidate, Promotion.SERVED, by=DEAD_HOLDER, reason="promoted")
    assert registry.rollback() == (champion, "v1")

    assert make_job().run() is None

    assert registry.current_version() == "v1"
    record = registry.record(candidate)
    assert record.status == "rejected", "never served, recorded promoted"
    assert record.notes.reason is not None
    assert record.notes.reason.startswith("not served: CURRENT was set since (to v1); ")
    assert f"its job ({DEAD_HOLDER}) settled it served" in record.notes.reason
    run = _runs(engine)[run_id]
    assert (run["outcome"], run["candidate_version"]) == ("rejected", candidate)
    assert _requests(engine) == {i: ("done", run_id) for i in request_ids}


def test_a_rollback_made_while_recovery_is_about_to_serve_a_candidate_stands(
    engine: sa.Engine, registry_dir: Path, trained: TrainedModel
) -> None:
    """The recovery has decided to complete a dead job's promotion (``CURRENT`` names
    the champion, unwritten since) and is about to move ``CURRENT``; an operator rolls
    back with the CLI (a process of its own) right then. Before the fix the recovery
    then moved ``CURRENT`` to the candidate over the rollback."""
    registry = ModelRegistry(registry_dir)
    champion = registry.register(trained, status=VersionStatus.REGISTERED)  # v2, current
    run_id, _, candidate = _promoted_candidate(engine, registry_dir, trained, champion)
    resume = threading.Event()
    # checked that CURRENT names the champion, settled the candidate served; not moved
    recovering = PausedAfterSettling(registry_dir, resume)
    lease = Lease(engine, 600)
    assert lease.acquire()
    errors: list[BaseException] = []

    def recovery() -> None:
        try:
            recover(engine, lease, recovering)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=recovery)
    thread.start()
    try:
        assert recovering.paused.wait(240), "the recovery never decided to serve"
        rolled_back = subprocess.run(
            [sys.executable, "-m", "watchkeeper_cli", "model", "rollback"],
            env={**os.environ, "WATCHKEEPER_REGISTRY_PATH": str(registry_dir)},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert rolled_back.returncode == 0, rolled_back.stderr
        assert "current model: v1 (was v2)" in rolled_back.stdout
    finally:
        resume.set()
        thread.join(240)
    lease.release()
    assert not thread.is_alive()
    assert errors == []

    assert registry.current_version() == "v1", "the recovery moved CURRENT over a rollback"
    run = _runs(engine)[run_id]
    # never served: recorded as a withdrawn candidate is
    assert (run["outcome"], run["candidate_version"]) == ("rejected", candidate)
    assert registry.record(candidate).status == "rejected"
