"""The monitor's retention thread: reads the log's size and age every minute, keeps the
log's day partitions ahead created (PostgreSQL: :class:`PartitionsAhead`, whatever the
prune interval) and prunes it every ``retention_prune_interval`` seconds (0: never).

Its own thread and its own database connection, so that a long prune never delays
the monitor's cycles, nor a cycle a prune.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from monitoring.retention_metrics import RetentionCollector, RetentionStatus
from watchkeeper.db import log_stats
from watchkeeper.db.engine import create_engine
from watchkeeper.db.partitions import PartitionsAhead, PartitionsMissing
from watchkeeper.db.reachability import unreachable
from watchkeeper.db.retention import Pruner, RetentionPolicy
from watchkeeper.settings import Settings

log = logging.getLogger(__name__)

STATS_INTERVAL = 60.0
"""Seconds between readings of the log's size and age."""


class RetentionLoop:
    def __init__(
        self,
        settings: Settings,
        *,
        stats_interval: float = STATS_INTERVAL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = create_engine(settings.storage.database_url)
        policy = RetentionPolicy.from_settings(settings)
        self.pruner = Pruner(self.engine, policy, clock=clock)
        self.partitions = PartitionsAhead(self.engine, clock=clock)
        self.prune_interval = settings.retention.prune_interval
        self.stats_interval = stats_interval
        self.status = RetentionStatus(limits=policy.limits())
        self._away = False  # the database did not answer: said until it answers again

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(RetentionCollector(self.status))

    def start(
        self, stop: threading.Event, read_once: threading.Event | None = None
    ) -> threading.Thread:
        """Run in a thread until ``stop``; the first prune waits for ``read_once``
        (the monitor's first cycle), so that the log it prunes has been read."""
        thread = threading.Thread(
            target=self.run, args=(stop, read_once), name="retention", daemon=True
        )
        thread.start()
        return thread

    def run(self, stop: threading.Event, read_once: threading.Event | None = None) -> None:
        next_prune = time.monotonic() if self.prune_interval > 0 else float("inf")
        while not stop.is_set():
            self.keep_partitions()  # not behind the first read: it deletes nothing
            ready = read_once is None or read_once.is_set()
            if ready and time.monotonic() >= next_prune:
                self.prune()
                next_prune = time.monotonic() + self.prune_interval
            self.read_stats()
            wait = max(0.0, min(self.stats_interval, next_prune - time.monotonic()))
            stop.wait(wait if ready else min(wait, 1.0))  # not read yet: look again soon
        self.engine.dispose()

    def prune(self) -> None:
        try:
            report = self.pruner.run()
        except Exception as exc:  # counted; the next prune tries again
            self._failed("pruning the log failed", exc)
            with self.status.lock:
                self.status.prune_errors += 1
            return
        self.status.record_prune(report)
        if report.rows == 0:  # the usual case: one quiet line, not one per table
            log.debug("prune: nothing past its retention")
            return
        for line in report.lines():
            log.info("prune: %s", line)

    def keep_partitions(self) -> None:
        try:
            self.partitions.keep()
        except PartitionsMissing as exc:  # a lock refused: no traceback to show
            log.warning("creating the log's partitions ahead failed: %s", exc)
        except Exception as exc:  # the next wake checks again
            self._failed("creating the log's partitions ahead failed", exc)
        else:
            return
        # Either way a day ahead is not there: the count behind the alert that tells
        # before the days created ahead run out.
        with self.status.lock:
            self.status.partition_errors += 1

    def read_stats(self) -> None:
        try:
            stats = log_stats.collect(self.engine)
        except Exception as exc:  # counted; read again next time
            self._failed("reading the log's size failed", exc)
            with self.status.lock:
                self.status.stats_errors += 1
            return
        self._away = False
        with self.status.lock:
            self.status.stats = stats

    def _failed(self, what: str, exc: Exception) -> None:
        """Log a failure; a database that does not answer once per outage (the
        monitor's cycle says so too), not with a traceback every minute."""
        if not unreachable(exc):
            log.exception("%s", what)
        elif not self._away:
            self._away = True
            log.warning("%s: the database does not answer; tried again until it does", what)
