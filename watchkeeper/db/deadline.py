"""A deadline on database work, kept by the client.

A frozen PostgreSQL server (its processes stopped, its VM paused, its storage stalled)
still has a kernel that acknowledges what is sent to it: TCP keepalives and
``tcp_user_timeout`` never fire and its ``lock_timeout`` cannot run, so a call waiting
for it waits for the whole freeze (40 s of SIGSTOP held every ``/feedback`` 40 s). In a
:func:`deadline` scope, each connection the thread takes from a :func:`bounded_engine`
has its socket shut down when the deadline passes: the waiting call fails at once as
a lost connection, which SQLAlchemy discards, and the server, once it runs again,
reads the end of the connection and rolls back the transaction it held, unless the
COMMIT had reached it: work cut off while it waited for its COMMIT may have been
committed, which its caller cannot tell.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from math import ceil
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from watchkeeper.db.engine import POSTGRES_CONNECT_ARGS, create_engine

# libpq waits at least this long for a connection whatever ``connect_timeout`` says.
_MIN_CONNECT_TIMEOUT = 2


class DeadlinePassed(sa.exc.SQLAlchemyError):
    """A connection was taken after its thread's deadline had passed."""


class Deadline:
    """One scope's deadline and the connections it holds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._held: dict[int, Any] = {}  # DBAPI connections by id
        self._expired = False
        self._done = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        """Whether the deadline passed while the scope ran (its connections were cut)."""
        return self._expired

    def hold(self, dbapi_connection: Any) -> None:
        """Cut ``dbapi_connection`` when the deadline passes, at once if it has."""
        with self._lock:
            if self._done:
                return
            if self._expired:
                _cut(dbapi_connection)
                raise DeadlinePassed(f"the deadline of {self.seconds:g} s passed")
            self._held[id(dbapi_connection)] = dbapi_connection

    def release(self, dbapi_connection: Any) -> None:
        """Forget ``dbapi_connection``: it goes back to the pool or is being closed, and
        its file descriptor may soon belong to another socket."""
        with self._lock:
            self._held.pop(id(dbapi_connection), None)

    def _start(self) -> None:
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._expired = True
            for dbapi_connection in self._held.values():
                _cut(dbapi_connection)

    def _finish(self) -> None:
        self._timer.cancel()
        with self._lock:  # a timer already running waits here, then does nothing
            self._done = True
            self._held.clear()


_current: ContextVar[Deadline | None] = ContextVar("watchkeeper_db_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Cut the connections this thread takes from a :func:`bounded_engine` (and makes
    for it) in this scope, ``seconds`` after it starts."""
    limit = Deadline(seconds)
    token = _current.set(limit)
    limit._start()
    try:
        yield limit
    finally:
        limit._finish()
        _current.reset(token)


def _cut(dbapi_connection: Any) -> None:
    """Shut down the connection's socket (not close it: the driver owns the descriptor
    and closes it when SQLAlchemy discards the connection)."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None or dbapi_connection.closed:
        return
    try:
        with socket.socket(fileno=os.dup(pgconn.socket)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except Exception:  # already reset or closed (psycopg raises): nothing waits on it
        pass


def can_bound(url: str | sa.URL) -> bool:
    """Whether :func:`bounded_engine` can keep deadlines for ``url``: PostgreSQL through
    psycopg, whose connection exposes its socket. SQLite is a local file: its waits are
    bounded by its busy timeout."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg"


def bounded_engine(url: str | sa.URL, *, seconds: float, pool_size: int) -> sa.Engine:
    """An engine for work in :func:`deadline` scopes of ``seconds``, with at most
    ``pool_size`` connections (:func:`can_bound` must hold for ``url``).

    Its connections are checked with a ping when taken, as ``pool_pre_ping`` would,
    but under the deadline (SQLAlchemy's own ping runs before a checkout can be seen,
    where a frozen server would hold it); a new connection gives up within ``seconds``
    too (at least libpq's 2 s), unless the URL sets ``connect_timeout``."""
    parsed = make_url(url)
    connect_args = {
        name: value for name, value in POSTGRES_CONNECT_ARGS.items() if name not in parsed.query
    }
    if "connect_timeout" in connect_args:
        connect_args["connect_timeout"] = min(
            connect_args["connect_timeout"], max(_MIN_CONNECT_TIMEOUT, ceil(seconds))
        )
    engine = create_engine(
        parsed,
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=seconds,
        connect_args=connect_args,
    )
    pool = engine.pool
    dialect = engine.dialect

    def hold_and_ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        _hold(dbapi_connection, record)
        try:
            dialect.do_ping(dbapi_connection)  # in autocommit: no transaction left open
        except Exception as exc:
            limit = record.info.get("deadline")
            if limit is not None and limit.expired:
                raise DeadlinePassed(f"the deadline of {limit.seconds:g} s passed") from exc
            # A connection the server dropped (restarted, idle too long): the pool makes
            # a new one and tries again.
            raise sa.exc.DisconnectionError() from exc

    # First, before the dialect's own "connect" listener, which queries the server.
    sa.event.listen(pool, "connect", _hold, insert=True)
    sa.event.listen(pool, "checkout", hold_and_ping)
    for name in ("checkin", "invalidate", "close"):
        sa.event.listen(pool, name, _release)
    return engine


def _hold(dbapi_connection: Any, record: Any) -> None:
    limit = _current.get()
    if limit is not None:
        record.info["deadline"] = limit
        limit.hold(dbapi_connection)


def _release(dbapi_connection: Any, record: Any, *_: Any) -> None:
    limit = record.info.pop("deadline", None)
    if limit is not None:
        limit.release(dbapi_connection)
