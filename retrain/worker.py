"""``watchkeeper retrain worker``: runs a job whenever retrain requests are pending."""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry

from retrain.job import RetrainJob
from retrain.liveness import JobLiveness
from retrain.metrics import LivenessCollector, RetrainCollector
from retrain.recovery import left_behind
from watchkeeper import retrain_queue
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import require_current
from watchkeeper.listen_address import ListenAddress
from watchkeeper.registry import ModelRegistry
from watchkeeper.service_loop import ServiceLoop
from watchkeeper.settings import Settings
from watchkeeper.status_server import Heartbeat

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    engine = create_engine(settings.storage.database_url)
    require_current(engine)
    registry = ModelRegistry(
        settings.storage.registry_path, trusted_types=settings.storage.trusted_types
    )
    liveness = JobLiveness(settings.retrain.stall_seconds)
    metrics = CollectorRegistry()
    metrics.register(RetrainCollector(engine))
    metrics.register(LivenessCollector(liveness))

    def cycle(heartbeat: Heartbeat, _stop: threading.Event) -> None:
        # One job takes every pending request, so a cycle is one unit of work: a stop
        # is honoured after it. A job in progress finishes (its run and requests
        # recorded, its lease released) rather than leaving a run marked running.
        try:
            # a job also runs for what a dead job left running: its requests are
            # pending again only once a job holding the lease has recovered them
            if retrain_queue.pending(engine) or left_behind(engine):
                RetrainJob(
                    settings, engine, registry, on_progress=heartbeat.beat, liveness=liveness
                ).run()
        except Exception:  # recorded in retrain_runs when it got that far; try again later
            log.exception("retraining worker cycle failed")

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
    return loop.run(metrics, cycle)
