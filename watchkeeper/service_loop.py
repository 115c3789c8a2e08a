"""The loop of a long-running component (the monitor, the retraining worker): a status
server with metrics and a heartbeat, one cycle every interval until SIGTERM or SIGINT.

A stop request is honoured between units of work, not only between cycles: a cycle gets
the stop event and checks it between its units (the monitor: between windows), so a
component far behind exits within one unit of the signal instead of after its whole
backlog (a container runtime kills it after its grace period). The unit in hand is
finished, so nothing is left half stored; the next start resumes after it.

The cycle runs on a thread of its own, so that the signal is seen while it waits in C:
SQLite's busy wait for a write lock another process holds (up to its 30 s timeout) is
interrupted by nothing, ``Connection.interrupt()`` included, and a signal handler runs
only once the main thread is back in Python. A component whose every database write is
one transaction, idempotent to redo, sets ``stop_grace``: a cycle still running that
long after the stop is left behind, and the process exits without it. What it had not
committed is rolled back (SQLite ignores a transaction never committed; PostgreSQL
rolls back one whose connection closed), and the next start resumes after what it had.

A cycle that raises must not end the process (the next cycle tries again) nor stall the
heartbeat: ``/healthz`` fails only when cycles stop coming, which is what a container
runtime should restart. Each cycle reports its own failures (a metric, a log line)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from watchkeeper.listen_address import ListenAddress
from watchkeeper.status_server import Heartbeat, start_status_server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLoop:
    name: str
    address: ListenAddress
    """Where the status server listens: a failure to listen names the component's settings."""
    interval: float
    """Seconds between the end of one cycle and the start of the next."""
    stall_seconds: float
    """No heartbeat for this long: ``/healthz`` fails."""
    stop_grace: float | None = None
    """Seconds a cycle may go on after a stop request before the process exits without
    it; None: the cycle is always finished (a retraining job records its end)."""

    def run(
        self,
        metrics: CollectorRegistry,
        cycle: Callable[[Heartbeat, threading.Event], object],
        *,
        on_start: Callable[[threading.Event], object] | None = None,
        waiting: Callable[[], str | None] | None = None,
    ) -> int:
        """Serve metrics and health, then run ``cycle`` (given the heartbeat, to beat
        during long work, and the stop event, to return early once it is set) until
        stopped; ``on_start`` gets the stop event, for threads of the component's own;
        ``waiting`` says what the component waits for (its database), for ``/healthz``."""
        heartbeat = Heartbeat(self.stall_seconds)
        address = self.address
        try:
            server = start_status_server(
                address.host, address.port, metrics, heartbeat, waiting=waiting
            )
        except OSError as exc:
            raise address.refusal(exc) from exc
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if on_start is not None:
            on_start(stop)
        log.info(
            "%s metrics and health on http://%s:%d, a cycle every %gs",
            self.name,
            address.host,
            address.port,
            self.interval,
        )
        while not stop.is_set():
            heartbeat.beat()
            if not self._run_cycle(cycle, heartbeat, stop):
                break
            stop.wait(self.interval)
        server.shutdown()
        return 0

    def _run_cycle(
        self,
        cycle: Callable[[Heartbeat, threading.Event], object],
        heartbeat: Heartbeat,
        stop: threading.Event,
    ) -> bool:
        """Run one cycle on its thread until it ends, or until ``stop_grace`` after a
        stop request: False if it was left behind."""
        done = threading.Event()

        def body() -> None:
            try:
                cycle(heartbeat, stop)
            except Exception:  # reported by the cycle itself; the next one tries again
                pass
            finally:
                done.set()

        # A daemon: one left behind must not hold the process's exit.
        threading.Thread(target=body, name=f"{self.name} cycle", daemon=True).start()
        # Short waits: the main thread runs the signal handler between them.
        while not done.wait(0.1):
            if stop.is_set():
                if done.wait(self.stop_grace):
                    return True
                log.warning(
                    "%s: the cycle in hand has not ended %gs after the stop request "
                    "(waiting for the database?); exiting without it: what it had not "
                    "committed is rolled back, the next start resumes",
                    self.name,
                    self.stop_grace,
                )
                return False
        return True
