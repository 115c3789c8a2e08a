"""Database work in request threads (``/feedback``, ``/admin/retrain``, ``/alerts``),
bounded in threads and in time.

A worker has ``WATCHKEEPER_THREADS`` request threads. With PostgreSQL frozen, every
request that wrote to it waited for the whole freeze (40 s, 81 s), and 16 clients
sending labels took all four threads of a worker: ``/predict``, which never waits for
the database, waited for a thread (10 predictions in 40 s instead of ~640). So:

* at most half of a worker's threads (at least one) are in such work at once, the
  others are left to ``/predict`` and the probes. A request beyond them waits for a
  slot while the database answers (a slot comes free within milliseconds; up to
  half a second), and is answered 503 at once while a slot's work has waited longer:
  its waiting would hold a thread the cap keeps for ``/predict``;
* each such work has a deadline, ``WATCHKEEPER_REQUEST_DATABASE_TIMEOUT``, after which
  its connection is cut (:mod:`watchkeeper.db.deadline`; on SQLite, the busy timeout
  of its own connections) and it answers 503. Work cut
  off while it waited for its COMMIT may have been stored: the answer says so, and a
  retry is safe (the same labels again are accepted, a retrain requested twice runs
  once, an alert's notification is stored once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from watchkeeper.db.deadline import bounded_engine, can_bound, deadline
from watchkeeper.db.engine import create_engine
from watchkeeper.errors import DatabaseUnavailable, database_errors

SLOT_PATIENCE = 0.5
"""Seconds a request waits for a slot at most, and only while every slot's work began
less than this long ago."""


def database_slots(threads: int) -> int:
    """How many of a worker's ``threads`` may work on the database at once."""
    return max(1, threads // 2)


class RequestDatabase:
    """One worker's way to the database for request threads."""

    def __init__(self, shared: sa.Engine, *, threads: int, timeout: float) -> None:
        self.slots = database_slots(threads)
        self.timeout = timeout
        self._changed = threading.Condition()
        self._started: dict[int, float] = {}  # when each slot's work began, by thread
        # Its own pool, one connection per slot, whose connections keep the deadline.
        # SQLite is a local file: what it waits for is another connection's write lock,
        # for its busy timeout (30 s for the log writer and the monitor), which here is
        # the deadline.
        if can_bound(shared.url):
            self.engine = bounded_engine(shared.url, seconds=timeout, pool_size=self.slots)
        elif shared.url.get_backend_name() == "sqlite":
            self.engine = create_engine(shared.url, connect_args={"timeout": timeout})
        else:  # another driver: no deadline it could keep
            self.engine = shared
        self._own = self.engine is not shared

    @contextmanager
    def work(self, action: str) -> Iterator[sa.Engine]:
        """The engine for ``action`` in this request, within a slot and the deadline;
        :class:`DatabaseUnavailable` when no slot is free, the database fails or the
        deadline passes."""
        if not self._take_slot():
            raise DatabaseUnavailable(
                f"{self.slots} requests of this worker already wait for the database; "
                f"{action} was not done; retry later"
            )
        try:
            with deadline(self.timeout) as limit:
                try:
                    with database_errors(action):
                        yield self.engine
                except (DatabaseUnavailable, sa.exc.SQLAlchemyError) as exc:
                    if not limit.expired:
                        raise
                    raise DatabaseUnavailable(
                        f"the database did not answer within {self.timeout:g} s; {action} "
                        "was cut off and may have been done or not; retry"
                    ) from exc
        finally:
            with self._changed:
                del self._started[threading.get_ident()]
                self._changed.notify()

    def _take_slot(self) -> bool:
        until = time.monotonic() + SLOT_PATIENCE
        with self._changed:
            while len(self._started) >= self.slots:
                # no longer than the oldest work may take while the database answers
                wake = min(until, min(self._started.values()) + SLOT_PATIENCE)
                now = time.monotonic()
                if now >= wake:
                    return False
                self._changed.wait(wake - now)
            self._started[threading.get_ident()] = time.monotonic()
        return True

    def dispose(self) -> None:
        """Close this worker's own connections (the shared engine is not ours)."""
        if self._own:
            self.engine.dispose()
