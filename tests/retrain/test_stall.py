"""A retraining job hung in its own code while its process lives (a read from a hung
network mount, a lock never granted, a fit that never returns) no longer keeps the
lease for ever: past ``WATCHKEEPER_RETRAIN_STALL_SECONDS`` without progress it stops
renewing it, its worker says so (log, metric, ``/healthz``), and another worker takes
over through the recovery of abandoned runs. A job that moves again after that records
nothing over the run the other job recovered."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from retrain.lease import Lease, lease_held
from retrain.liveness import JobLiveness
from tests.processes import Process, metric, wait_for
from watchkeeper import retrain_queue
from watchkeeper.dataset import AMES_PERIOD, AMES_TARGET, Dataset
from watchkeeper.db.tables import retrain_requests, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import DataSource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_job_is_alive_while_it_reports_progress_within_the_deadline() -> None:
    clock = Clock()
    liveness = JobLiveness(stall_seconds=60, clock=clock)
    assert liveness.alive() and liveness.stall() is None  # no job: nothing to renew for

    liveness.start("reading the queue")
    clock.now = 59
    liveness.beat("training a candidate")
    clock.now = 59 + 60
    assert liveness.alive(), "a step as long as the deadline is not hung"
    clock.now = 59 + 61
    stall = liveness.stall()
    assert stall is not None and stall.step == "training a candidate"
    assert not liveness.alive() and not liveness.alive()
    assert liveness.snapshot().stalled and liveness.snapshot().stalls == 1  # counted once

    liveness.beat("judging the candidate against the champion")  # it moved again
    assert liveness.alive() and not liveness.snapshot().stalled
    liveness.finish()
    clock.now += 10_000
    assert liveness.alive() and liveness.snapshot().seconds_since_progress is None


def _requests(engine: sa.Engine) -> dict[int, tuple[str, int | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(retrain_requests.c.id, retrain_requests.c.status, retrain_requests.c.run_id)
        )
        return {row.id: (row.status, row.run_id) for row in rows}


def _runs(engine: sa.Engine) -> dict[int, tuple[str, str | None, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(retrain_runs).order_by(retrain_runs.c.id))
        return {r.id: (r.outcome, r.candidate_version, r.decision_reason) for r in rows}


def _held(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return lease_held(connection, datetime.now(UTC))


def _on_csv_behind_a_hung_mount(
    registry_dir: Path, ames: Dataset, trained: TrainedModel, data: Path
) -> tuple[Path, Path, Path]:
    """Register the model as trained on a CSV of the Ames sales, then put a FIFO no one
    writes to at the CSV's path: a job opening it blocks in the kernel, as on a hung
    network mount, while its other threads run on. Returns the CSV's path, the data
    moved aside, and a second name of the FIFO (to release the reader at the end)."""
    data.mkdir()
    csv = data / "ames-sales.csv"
    ames.frame.to_csv(csv, index=False)
    source = DataSource(
        dataset="ames-sales",
        location=str(csv),
        sha256=hashlib.sha256(csv.read_bytes()).hexdigest(),
        target=AMES_TARGET,
        period_column=AMES_PERIOD,
        exclude=("Year_Sold", "Mo_Sold", AMES_PERIOD),
    )
    assert ModelRegistry(registry_dir).register(trained, data_source=source) == "v2"
    aside = data / "ames-sales.aside"
    os.rename(csv, aside)
    os.mkfifo(csv)
    fifo = data / "hung-mount"
    os.link(csv, fifo)
    return csv, aside, fifo


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_hung_job_gives_up_its_lease_and_another_worker_takes_over(
    start_watchkeeper: Callable[..., Process],
    settings: Settings,
    engine: sa.Engine,
    labelled_log: int,
    registry_dir: Path,
    ames: Dataset,
    trained: TrainedModel,
    tmp_path: Path,
) -> None:
    csv, aside, fifo = _on_csv_behind_a_hung_mount(registry_dir, ames, trained, tmp_path / "data")
    env = {
        "WATCHKEEPER_DATABASE_URL": settings.storage.database_url,
        "WATCHKEEPER_RETRAIN_POLL_SECONDS": "0.2",
        "WATCHKEEPER_RETRAIN_LEASE_SECONDS": "3",  # renewed every second
        "WATCHKEEPER_RETRAIN_STALL_SECONDS": "5",
    }
    hung = start_watchkeeper("retrain worker", **env)
    request_id = retrain_queue.enqueue(engine, trigger="manual", reason="before the hang")

    assert wait_for(lambda: _requests(engine)[request_id][0] == "running", timeout=120), (
        hung.log_path.read_text()[-2000:]
    )
    [(run_id, (outcome, _, _))] = _runs(engine).items()
    assert outcome == "running"
    # the hung job's lease expires although its process lives and its renewal thread runs
    assert wait_for(lambda: not _held(engine), timeout=120, interval=0.2), (
        f"the hung job still holds its lease: {hung.log_path.read_text()[-2000:]}"
    )
    assert hung.process.poll() is None
    text = hung.get("/metrics").text
    assert metric(text, "watchkeeper_retrain_job_stalled") == 1
    assert metric(text, "watchkeeper_retrain_job_stalls_total") == 1
    assert metric(text, "watchkeeper_retrain_job_seconds_since_progress") > 5
    log = hung.log_path.read_text()
    assert "retraining job stuck: no progress for" in log, log[-2000:]
    assert "'reading the original training data'" in log
    # its heartbeat is no longer beaten: the orchestrator restarts it
    assert wait_for(lambda: hung.get("/healthz").status_code == 503, timeout=60, interval=0.2)
    assert hung.get("/healthz").json()["status"] == "stalled"

    os.replace(aside, csv)  # the mount comes back for the next worker
    successor = start_watchkeeper("retrain worker", **env)

    def served() -> bool:
        return _requests(engine)[request_id][0] == "done"

    assert wait_for(served, timeout=300, interval=0.5), successor.log_path.read_text()[-3000:]
    runs = _runs(engine)
    [new_run] = [r for r in runs if r != run_id]
    dead_outcome, _, dead_reason = runs[run_id]
    assert dead_outcome == "failed" and dead_reason is not None
    assert dead_reason.startswith("abandoned: ")
    assert f":{hung.process.pid}:" in dead_reason  # the hung holder's id
    assert runs[new_run][0] in {"promoted", "rejected"}
    assert _requests(engine) == {request_id: ("done", new_run)}
    text = successor.get("/metrics").text
    assert metric(text, "watchkeeper_retrain_runs_abandoned_total") == 1
    assert metric(text, "watchkeeper_retrain_job_stalled") == 0
    assert wait_for(lambda: Lease(engine, 60).current_holder() is None, timeout=60)
    versions = ModelRegistry(registry_dir).versions()
    assert versions == ["v1", "v2", "v3"]

    # the hung read returns at last (empty: the data changed under it), and the job fails;
    # the run the successor recovered keeps its record, nothing is registered
    descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO if no reader waits
    os.close(descriptor)
    assert wait_for(
        lambda: metric(hung.get("/metrics").text, "watchkeeper_retrain_job_stalled") == 0,
        timeout=60,
        interval=0.2,
    ), hung.log_path.read_text()[-2000:]
    assert wait_for(lambda: "was recovered by another job meanwhile" in hung.log_path.read_text())
    assert _runs(engine) == runs
    assert _requests(engine) == {request_id: ("done", new_run)}
    assert ModelRegistry(registry_dir).versions() == versions
    assert wait_for(lambda: hung.get("/healthz").status_code == 200, timeout=60, interval=0.2)
