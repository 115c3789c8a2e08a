"""A label's arrival time, taken so that labels become visible in the order of their
arrival times.

The monitor finds new labels by a watermark on ``feedback.received_at``: it reads those
that arrived in ``(watermark, now - settle]`` and moves the watermark to the newest it
saw. A label stamped before its transaction waited for the database (SQLite's write
lock, for up to the 30 s busy timeout) could commit after labels stamped later, once the
watermark had passed it: its window's accuracy was never computed. Stamped under the
lock that orders feedback writers, a label commits before any label stamped after it.

Under that lock a label is also stamped after every label stored: a clock that stepped
back (an NTP step, a VM resumed from a snapshot) stamped labels behind the watermark,
never read. The newest stored stamp comes from the database, so the order holds across
workers, processes and pods.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from watchkeeper.db.prediction_view import LATEST
from watchkeeper.db.tables import feedback

# Key of the PostgreSQL advisory lock that orders feedback writers ("LABEL").
_FEEDBACK_LOCK = 0x4C4142454C
LOCK_TIMEOUT_SECONDS = 10
"""Longest wait for that lock (SQLite's write lock waits for its busy timeout, 30 s)."""
_TICK = timedelta(microseconds=1)
"""The finest step both backends store: the least a stamp can follow the newest by."""
MOST_TRUSTED_AHEAD = timedelta(hours=1)
"""How far ahead of the clock the newest stored stamp may be and still be followed.
Following it delays every later label's reading (the monitor reads labels once its own
clock has passed them) by as much as it is ahead: a step back of minutes costs minutes.
A stamp further ahead was written by a clock far wrong (a host booted with its clock in
another year), and following it would hold every later label until that date; past
this the clock is taken, and only labels written during a step back this long are
left behind the watermark."""


def now() -> datetime:
    """This host's clock (a function apart, so that tests can step it back)."""
    return datetime.now(UTC)


def arrival_time(connection: sa.Connection) -> datetime:
    """Take the lock that orders feedback writers for the rest of ``connection``'s
    transaction, of which this must be the first statement, and the time under it:
    the clock's, or just after the newest label stored if the clock is behind it.
    SQLite: its write lock (``BEGIN IMMEDIATE``, waiting up to the busy timeout) and
    this host's clock, which every worker shares. PostgreSQL: a transaction-scoped
    advisory lock and the server's clock, one clock for every pod."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        clock = now()
    else:
        # A holder stuck on a dead connection must not hold every pod's feedback for
        # the kernel's TCP timeout: past this, the write fails (a 503 to retry) instead.
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEEDBACK_LOCK})
        stamp: datetime = connection.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        clock = stamp.astimezone(UTC)
    # The newest stamp, by the index on received_at: one row read. A stamp beyond what
    # pandas holds (a foreign writer's 'infinity', which no reader can read) is passed
    # over: read, it raised in every later label's write.
    newest = connection.execute(
        sa.select(sa.func.max(feedback.c.received_at)).where(feedback.c.received_at <= LATEST)
    ).scalar()
    if newest is not None and clock <= newest <= clock + MOST_TRUSTED_AHEAD:
        return newest + _TICK
    return clock
