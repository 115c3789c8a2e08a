"""``watchkeeper retrain worker``: runs a job whenever retrain requests are pending.

It starts whether or not the database answers: one that does not answer at all
(:func:`~watchkeeper.db.reachability.unreachable`) is waited for, each cycle checking
the schema first (:mod:`watchkeeper.db.schema_check`), as the start does when it
answers; one that answers with another schema stops it. A job the database went away
under is recorded by the worker once it answers (:mod:`retrain.unfinished`), before
anything else runs.
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from retrain.job import RetrainJob
from retrain.liveness import JobLiveness
from retrain.metrics import LivenessCollector, RetrainCollector
from retrain.recovery import left_behind
from retrain.unfinished import JobUnrecorded, UnfinishedJob, record
from watchkeeper import retrain_queue
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import require_current
from watchkeeper.db.reachability import unreachable
from watchkeeper.db.schema_check import SchemaCheck, SchemaState
from watchkeeper.listen_address import ListenAddress
from watchkeeper.registry import ModelRegistry
from watchkeeper.service_loop import ServiceLoop
from watchkeeper.settings import Settings
from watchkeeper.status_server import Heartbeat

log = logging.getLogger(__name__)


class RetrainWorker:
    """One worker process's cycle, and what it remembers between cycles."""

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        registry: ModelRegistry,
        liveness: JobLiveness,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = registry
        self.liveness = liveness
        self.schema = SchemaCheck(engine, migrate=False, who="the retraining worker")
        self.unfinished: UnfinishedJob | None = None
        """A job of this worker that could not record its end: no run of it is in
        progress, whatever the database says until it is recorded."""

    def waiting(self) -> str | None:
        """What the worker waits for, for its ``/healthz`` (None: nothing)."""
        if self.schema.state is SchemaState.PENDING:
            return "the database to answer (its schema is not checked yet)"
        if self.schema.state is SchemaState.MISMATCH:
            return f"the database's schema: {self.schema.problem}"
        if self.unfinished is not None:
            return "the database, to record its last job, which the database failed"
        return None

    def idle_holder(self) -> str | None:
        """The lease holder of this worker's unrecorded job, which runs nothing."""
        return None if self.unfinished is None else self.unfinished.holder

    def cycle(self, heartbeat: Heartbeat, _stop: threading.Event) -> None:
        # One job takes every pending request, so a cycle is one unit of work: a stop
        # is honoured after it. A job in progress finishes (its run and requests
        # recorded, its lease released) rather than leaving a run marked running.
        try:
            if not self.schema.verify():
                return  # said once at ERROR; checked again next cycle
            if self.unfinished is not None:
                record(self.engine, self.unfinished)
                self.unfinished = None
            # a job also runs for what a dead job left running: its requests are
            # pending again only once a job holding the lease has recovered them
            if retrain_queue.pending(self.engine) or left_behind(self.engine):
                RetrainJob(
                    self.settings,
                    self.engine,
                    self.registry,
                    on_progress=heartbeat.beat,
                    liveness=self.liveness,
                ).run()
        except JobUnrecorded as exc:  # recorded by the next cycles, once the database answers
            log.error("retraining worker: %s", exc)
            self.unfinished = exc.unfinished
        except Exception as exc:  # recorded in retrain_runs when it got that far; try again later
            if unreachable(exc):
                log.warning("retraining worker: the database does not answer: %s", exc.orig)
            else:
                log.exception("retraining worker cycle failed")


def run_worker(settings: Settings) -> int:
    engine = create_engine(settings.storage.database_url)
    try:
        require_current(engine)
    except sa.exc.OperationalError as exc:
        if not unreachable(exc):
            raise
        log.warning(
            "retraining worker: the database does not answer (%s); starting anyway, its "
            "schema is checked once it does, before anything runs",
            str(exc.orig).strip().splitlines()[0],
        )
    registry = ModelRegistry(
        settings.storage.registry_path, trusted_types=settings.storage.trusted_types
    )
    liveness = JobLiveness(settings.retrain.stall_seconds)
    worker = RetrainWorker(settings, engine, registry, liveness)
    metrics = CollectorRegistry()
    metrics.register(RetrainCollector(engine, idle_holder=worker.idle_holder))
    metrics.register(LivenessCollector(liveness))
    # A job renews its lease, and beats the heartbeat as it does, while it makes progress
    # (retrain.liveness): a worker that has not done either for a whole lease (plus a
    # poll) is stuck, and so is one whose job made none for WATCHKEEPER_RETRAIN_STALL_SECONDS
    # (its /healthz fails a lease and a poll later).
    loop = ServiceLoop(
        name="retraining worker",
        address=ListenAddress(
            settings.retrain.host, settings.retrain.port, "retrain_host", "retrain_port"
        ),
        interval=settings.retrain.poll_seconds,
        stall_seconds=settings.retrain.lease_seconds + settings.retrain.poll_seconds,
    )
    return loop.run(metrics, worker.cycle, waiting=worker.waiting)
