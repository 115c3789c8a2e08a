"""The database's state as readiness sees it, checked off the request path.

A readiness probe must answer within its timeout whatever the database does: a
stalled server holds a new connection for seconds (longer with ``pool_pre_ping``).
So a background thread checks reachability and the schema revision every
``interval`` seconds and readiness reads the last result; a check that hangs only
makes that result older, which readiness reports.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from watchkeeper.db.migrate import current_revision

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """The last completed check; ``None`` fields are not known yet."""

    reachable: bool | None = None
    revision: str | None = None
    checked_at: float | None = None  # time.monotonic() of the check

    def age(self) -> float | None:
        return None if self.checked_at is None else time.monotonic() - self.checked_at


class DatabaseProbe:
    def __init__(self, engine: sa.Engine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._state = DatabaseState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> DatabaseState:
        return self._state

    def start(self) -> DatabaseProbe:
        self._thread = threading.Thread(target=self._run, name="database-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop probing; waits for a check in flight (not longer than ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def check(self) -> DatabaseState:
        """Check once now (the thread calls this every ``interval``)."""
        try:
            revision = current_revision(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            if self._state.reachable is not False:
                reason = getattr(exc, "orig", None) or exc
                log.warning("database unreachable: %s", str(reason).splitlines()[0])
            self._state = DatabaseState(False, self._state.revision, time.monotonic())
        else:
            self._state = DatabaseState(True, revision, time.monotonic())
        return self._state

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # keep probing whatever one check raised
                log.exception("database check failed")
            self._stop.wait(self._interval)
