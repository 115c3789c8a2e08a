"""The schema check of a process that started before its database answered.

``watchkeeper serve`` (and the retraining worker) check the schema revision before they
start, and refuse to run against another one. When PostgreSQL does not answer at all
then (:func:`~watchkeeper.db.reachability.unreachable`), they start anyway, and the
check moves here: whoever stores (the prediction log's writer, the worker's cycle) asks
:meth:`SchemaCheck.verify` before it stores anything, and stores only once it says
yes. Until the database answers the check is *pending*; when it answers with another
schema (or the check fails there) it is a *mismatch*, said once at ERROR, and asked
again later (an operator may run ``watchkeeper db upgrade``); once the schema is the
code's the check is done for the life of the process, as the start-up check was.
"""

from __future__ import annotations

import logging
import threading
from enum import StrEnum

import sqlalchemy as sa
from alembic.util import CommandError

from watchkeeper.db.migrate import current_revision, head_revision, require_current, upgrade
from watchkeeper.db.reachability import unreachable

log = logging.getLogger(__name__)


class SchemaState(StrEnum):
    PENDING = "pending"
    """The database has not answered since the process started."""
    CURRENT = "current"
    """The database's schema is the code's: storing is allowed."""
    MISMATCH = "mismatch"
    """The database answered with another schema, or the check failed there."""


class SchemaCheck:
    def __init__(self, engine: sa.Engine, *, migrate: bool, who: str) -> None:
        """``migrate``: apply pending migrations first (``WATCHKEEPER_AUTO_MIGRATE``);
        ``who`` names the caller in the log."""
        self._engine = engine
        self._migrate = migrate
        self._who = who
        self._lock = threading.Lock()
        self._state = SchemaState.PENDING
        self._problem = ""

    @property
    def state(self) -> SchemaState:
        return self._state

    @property
    def problem(self) -> str:
        """Why the last check found a mismatch ("" otherwise)."""
        return self._problem

    @property
    def current(self) -> bool:
        return self._state is SchemaState.CURRENT

    def verify(self) -> bool:
        """True once the schema is the code's. False (state ``mismatch``) when the
        database answered and the schema is another, or migrating or reading it
        failed there. Raises the database's error while it does not answer (the
        state stays as it was: pending, or the last mismatch)."""
        if self._state is SchemaState.CURRENT:
            return True
        with self._lock:  # a caller's threads (a writer and a drain) check once
            if self._state is SchemaState.CURRENT:
                return True
            try:
                if self._migrate and current_revision(self._engine) != head_revision():
                    try:
                        upgrade(self._engine)
                    except CommandError:
                        pass  # a newer schema than this code's: the check below says so
                require_current(self._engine)
            except Exception as exc:
                if unreachable(exc):
                    raise
                problem = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                if problem != self._problem:  # once per finding, not at every retry
                    log.error(
                        "%s stores nothing: %s; what it has waits (checked again until the "
                        "schema is the code's)",
                        self._who,
                        problem,
                    )
                self._state, self._problem = SchemaState.MISMATCH, problem
                return False
            if self._state is not SchemaState.PENDING or self._problem:
                log.warning("%s: the database schema is the code's now; storing", self._who)
            self._state, self._problem = SchemaState.CURRENT, ""
            return True
