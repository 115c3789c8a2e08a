"""The long-running monitor's hold on its database: the monitor is built once the
database answers, and an outage is said once, not at every cycle.

A monitor started while PostgreSQL does not answer at all
(:func:`~watchkeeper.db.reachability.unreachable`: pods that start in any order, a
restart during an outage) starts anyway: its status server answers, ``/healthz`` says
what it waits for, and each cycle tries again, the first ones soon after each other
(from :data:`FIRST_RETRY` seconds, doubling up to the cycle interval). Its schema is
checked once the database answers (:mod:`watchkeeper.db.schema_check`), before the
monitor reads anything. An outage later is waited for the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor
from watchkeeper.db.reachability import unreachable
from watchkeeper.db.schema_check import SchemaCheck, SchemaState

log = logging.getLogger(__name__)

FIRST_RETRY = 0.5
"""Seconds before the first retry of a database that did not answer."""


class MonitorStart:
    def __init__(
        self,
        engine: sa.Engine,
        build: Callable[[], Monitor],
        collector: MonitorCollector,
        *,
        interval: float,
    ) -> None:
        """``build`` makes the monitor (it reads its stored state); ``collector``
        exports a status of no windows until then, and the monitor's after; retries
        back off up to ``interval``."""
        self._build = build
        self._collector = collector
        self._interval = interval
        self._schema = SchemaCheck(engine, migrate=False, who="the monitor")
        self._down = False
        self._delay = FIRST_RETRY
        self.monitor: Monitor | None = None

    def waiting(self) -> str | None:
        """What the monitor waits for, for its ``/healthz`` (None: nothing)."""
        if self._down:
            return "the database to answer"
        if self.monitor is not None:
            return None
        if self._schema.state is SchemaState.MISMATCH:
            return f"the database's schema: {self._schema.problem}"
        return "the database to answer (its schema is not checked yet)"

    def wait(self, stop: threading.Event) -> Monitor | None:
        """The monitor, built if it was not; None while the database does not answer
        (tried again, backing off, until a stop or the cycle interval) or answers with
        another schema (said once at ERROR by the schema check)."""
        if self.monitor is not None:
            return self.monitor
        while not stop.is_set():
            try:
                if not self._schema.verify():
                    break
                self.started(self._build())
                return self.monitor
            except Exception as exc:
                self.failed(exc)
                if not unreachable(exc):
                    log.exception("starting the monitor failed; tried again next cycle")
                    break
            if self._delay >= self._interval:
                break  # the loop's interval paces the retries from here
            stop.wait(self._delay)
            self._delay *= 2
        self._collector.status.errors += 1  # a cycle that failed, as a built one counts
        return None

    def failed(self, exc: BaseException) -> None:
        """Say once per outage that the database does not answer (its traceback says
        nothing more at every cycle); any other failure is the caller's to say."""
        if not unreachable(exc) or self._down:
            return
        self._down = True
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        log.warning(
            "monitor: the database does not answer (%s); waiting for it%s",
            cause,
            "" if self.monitor else ", its schema checked once it answers",
        )

    def answered(self) -> None:
        """A cycle reached the database: an outage, if any, is over."""
        self._delay = FIRST_RETRY
        if self._down:
            self._down = False
            log.warning("monitor: the database answers again")

    def started(self, monitor: Monitor) -> None:
        """``monitor`` is built: the database answered."""
        self.answered()
        # the failed cycles before stay counted
        monitor.status.errors += self._collector.status.errors
        self._collector.status = monitor.status
        self._collector.served = monitor.served_version
        self.monitor = monitor
