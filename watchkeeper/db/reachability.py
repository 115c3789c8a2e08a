"""Whether a database error means the server did not answer at all.

A process that starts while PostgreSQL is away (a restart during an outage, pods that
start in any order) should start and wait for it, as it waits when the database goes
away later; one whose database answers with a refusal (a wrong password, a database
that does not exist, another schema) should refuse to start, saying why. psycopg gives
connection failures no SQLSTATE, so they are told apart by libpq's own messages: only
the ones listed here count as "no answer", anything else is an answer.
"""

from __future__ import annotations

import sqlalchemy as sa

# libpq's client-side messages for a server that could not be reached or timed out,
# psycopg's for a host name that does not resolve, and the server's own for a state
# it leaves by itself (starting, stopping, recovering).
_NO_ANSWER = (
    "connection refused",
    "timeout expired",
    "connection timed out",
    "could not translate host name",
    "failed to resolve host",
    "no route to host",
    "network is unreachable",
    "server closed the connection unexpectedly",
    "connection reset by peer",
    "no such file or directory",  # a Unix socket whose server is not running
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
)


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says a PostgreSQL server did not answer (refused, timed out,
    not found, starting or stopping); False for SQLite, whose file either opens or
    does not, and for every answer a server gave."""
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    cause = exc.orig
    if type(cause).__module__.split(".")[0] != "psycopg":
        return False
    text = str(cause).lower()
    return any(phrase in text for phrase in _NO_ANSWER)
