"""Whether a running retraining job is still making progress, as the job itself says.

The lease is renewed from a thread of its own, so a renewal proves only that the
process lives, not that its job moves: a job hung in its own code (a read from a hung
network mount, a database lock never granted, a fit that never returns) would keep the
lease, and every later job waiting for it, for ever. So the job reports progress at
each step (:meth:`JobLiveness.beat`), and the renewal thread asks :meth:`JobLiveness.alive`
before each renewal: once a step has run longer than the stall deadline
(``WATCHKEEPER_RETRAIN_STALL_SECONDS``) the lease is no longer renewed, nor the worker's
liveness heartbeat beaten. The lease then expires, the next job to take it recovers the
run as abandoned (:mod:`retrain.recovery`), and the stuck process says so: one log line,
``watchkeeper_retrain_job_stalled`` 1, and a failing ``/healthz`` (its heartbeat stops).

A step is as long as its longest part, which may be the fit of a large model: the
deadline is generous by default (an hour, where a job on the Ames data takes seconds)
and is meant to be set above the longest step a deployment has seen. A job that moves
again after being called stalled renews again, if it still holds its lease; one whose
lease another job took over finds out before it registers anything
(:meth:`retrain.lease.Lease.check`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stall:
    """A job that has reported no progress for longer than its deadline."""

    step: str
    """What the job was doing when it last reported progress."""
    seconds: float
    """Since that report."""
    deadline: float


@dataclass(frozen=True)
class LivenessSnapshot:
    """What :class:`JobLiveness` says at one scrape."""

    running: bool
    seconds_since_progress: float | None
    stalled: bool
    stalls: int
    """Jobs of this process found stalled since it started."""


class JobLiveness:
    """The progress of the job a process is running (one at a time: the lease makes it
    so). Shared by the job, which beats, its lease's renewal thread, which asks whether
    it is alive, and the worker's metrics."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._step: str | None = None  # None: no job running
        self._last = clock()
        self._reported = False  # this stall was logged and counted
        self._stalls = 0

    def start(self, step: str) -> None:
        """A job starts (its first step)."""
        with self._lock:
            self._step, self._last, self._reported = step, self._clock(), False

    def beat(self, step: str) -> None:
        """The job made progress and now does ``step``."""
        with self._lock:
            if self._reported and self._step is not None:
                log.warning(
                    "the retraining job moved again after %.0fs without progress in %r; it "
                    "renews its lease again if it still holds it",
                    self._clock() - self._last,
                    self._step,
                )
            self._step, self._last, self._reported = step, self._clock(), False

    def finish(self) -> None:
        """The job ended, however it ended."""
        with self._lock:
            self._step, self._reported = None, False

    def stall(self) -> Stall | None:
        """The running job's stall, if it has made no progress within the deadline."""
        with self._lock:
            return self._stall()

    def _stall(self) -> Stall | None:
        if self._step is None:
            return None
        seconds = self._clock() - self._last
        if seconds <= self.stall_seconds:
            return None
        return Stall(self._step, seconds, self.stall_seconds)

    def alive(self) -> bool:
        """Whether the lease may be renewed: no job is stalled. The first time a job is
        found stalled, it is logged and counted."""
        with self._lock:
            stall = self._stall()
            if stall is None:
                return True
            if not self._reported:
                self._reported = True
                self._stalls += 1
                log.error(
                    "retraining job stuck: no progress for %.0fs in %r (deadline "
                    "WATCHKEEPER_RETRAIN_STALL_SECONDS=%g); no longer renewing its lease, "
                    "so that the next job recovers its run once the lease expires; this "
                    "process's /healthz fails, restart it",
                    stall.seconds,
                    stall.step,
                    stall.deadline,
                )
            return False

    def snapshot(self) -> LivenessSnapshot:
        with self._lock:
            running = self._step is not None
            return LivenessSnapshot(
                running=running,
                seconds_since_progress=self._clock() - self._last if running else None,
                stalled=self._stall() is not None,
                stalls=self._stalls,
            )
