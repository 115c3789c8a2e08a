"""One prune at a time per database.

Prunes run from the monitor's retention thread, ``watchkeeper db prune`` and, during a
rolling update, two monitors at once. Each alone keeps every row in the database or in
the archive: its archive write takes a batch's rows out of the older files before it
deletes them from the database. Two at once could not: one that had read rows another
had just archived and deleted took them out of that prune's file, then failed before
writing its own (a full disk, a kill), and the rows were nowhere.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

# Key of the PostgreSQL advisory lock a prune holds for its run ("PRUNE").
_PRUNE_LOCK = 0x5052554E45


@contextmanager
def one_prune_at_a_time(engine: sa.Engine) -> Iterator[None]:
    """Hold the database's prune lock for the block, waiting for a prune under way:
    PostgreSQL's session advisory lock on a connection of its own (let go if that
    connection dies with its process), or for a SQLite file a lock on a file beside it
    (let go when the process ends)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PRUNE_LOCK})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PRUNE_LOCK})
                connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # one process holds the whole database
        return
    descriptor = os.open(Path(f"{database}.prune-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # lets the lock go
