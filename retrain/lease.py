"""Single flight across processes: one database row that one job at a time holds.

A job takes the lease with a conditional update (free, or expired) and gives it
back when done. A job that crashes keeps it only until ``expires_at``, after which
the next job takes it over.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from watchkeeper.db.tables import retrain_lease

LEASE = "retrain"


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, engine: sa.Engine, seconds: float, holder: str | None = None) -> None:
        self.engine = engine
        self.seconds = seconds
        self.holder = holder or holder_id()

    def acquire(self) -> bool:
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            taken = connection.execute(
                retrain_lease.update()
                .where(
                    retrain_lease.c.name == LEASE,
                    sa.or_(retrain_lease.c.holder.is_(None), retrain_lease.c.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + timedelta(seconds=self.seconds))
            ).rowcount
        return taken == 1

    def release(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                retrain_lease.update()
                .where(retrain_lease.c.name == LEASE, retrain_lease.c.holder == self.holder)
                .values(holder=None, expires_at=None)
            )

    def current_holder(self) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(retrain_lease.c.holder).where(retrain_lease.c.name == LEASE)
            ).scalar()
