"""Single flight across processes: one database row that one job at a time holds.

A job takes the lease with a conditional update (free, or expired) and gives it
back when done. A job that crashes keeps it only until ``expires_at``, after which
the next job takes it over. A job that runs longer than the lease renews it while it
runs (:meth:`Lease.kept`), so that no second job joins it; one that could not renew
in time and lost the lease to another finds out before it registers anything
(:meth:`Lease.check`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from watchkeeper.db.tables import retrain_lease
from watchkeeper.errors import WatchkeeperError

LEASE = "retrain"
# Renewed three times per lease duration: two renewals can fail (a database blip)
# before another job could take the lease over.
RENEWALS_PER_LEASE = 3

log = logging.getLogger(__name__)


def lease_held(connection: sa.Connection, now: datetime) -> bool:
    """Whether a live job holds the lease at ``now`` (held and not expired)."""
    held = connection.execute(
        sa.select(sa.func.count())
        .select_from(retrain_lease)
        .where(
            retrain_lease.c.name == LEASE,
            retrain_lease.c.holder.is_not(None),
            retrain_lease.c.expires_at >= now,
        )
    ).scalar()
    return bool(held)


def release_lease(connection: sa.Connection, holder: str) -> None:
    """Give the lease back if ``holder`` holds it, in the caller's transaction."""
    connection.execute(
        retrain_lease.update()
        .where(retrain_lease.c.name == LEASE, retrain_lease.c.holder == holder)
        .values(holder=None, expires_at=None)
    )


def lease_holder(connection: sa.Connection, now: datetime) -> str | None:
    """The live holder of the lease at ``now`` (held and not expired), if any."""
    return connection.execute(
        sa.select(retrain_lease.c.holder).where(
            retrain_lease.c.name == LEASE,
            retrain_lease.c.holder.is_not(None),
            retrain_lease.c.expires_at >= now,
        )
    ).scalar()


class LeaseLost(WatchkeeperError):
    """Another job holds the lease this job started with: this job must not register
    or promote anything."""

    status_code = 409
    code = "retrain_lease_lost"


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class TakenOver:
    """The holder whose expired lease :meth:`Lease.acquire` took, and when it expired."""

    holder: str
    expired_at: datetime


class Lease:
    def __init__(self, engine: sa.Engine, seconds: float, holder: str | None = None) -> None:
        self.engine = engine
        self.seconds = seconds
        self.holder = holder or holder_id()
        self.taken_over: TakenOver | None = None

    def acquire(self) -> bool:
        """Take the lease if it is free or expired. When it was another holder's, expired,
        :attr:`taken_over` then names that holder: it stopped renewing, so it is gone
        (or lost), and whatever it left running was abandoned."""
        now = datetime.now(UTC)
        with self.engine.connect() as connection:
            before = connection.execute(
                sa.select(retrain_lease.c.holder, retrain_lease.c.expires_at).where(
                    retrain_lease.c.name == LEASE
                )
            ).first()
        if before is None:
            return False
        if before.holder is not None and (before.expires_at is None or before.expires_at >= now):
            return False  # held, and renewed in time
        # Compare-and-set on the holder just read, in one statement (no read-then-write
        # transaction, which SQLite's WAL refuses once another writer committed): if
        # someone took or gave back the lease since, this attempt fails as if it had
        # been held, and the next poll tries again.
        same_holder = (
            retrain_lease.c.holder.is_(None)
            if before.holder is None
            else retrain_lease.c.holder == before.holder
        )
        with self.engine.begin() as connection:
            taken = connection.execute(
                retrain_lease.update()
                .where(
                    retrain_lease.c.name == LEASE,
                    same_holder,
                    sa.or_(retrain_lease.c.holder.is_(None), retrain_lease.c.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + timedelta(seconds=self.seconds))
            ).rowcount
        if taken == 1 and before.holder is not None:
            self.taken_over = TakenOver(before.holder, before.expires_at)
        return taken == 1

    def renew(self) -> bool:
        """Extend the lease by its duration from now; False when this holder no longer
        holds it (it expired and another job took it)."""
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            renewed = connection.execute(
                retrain_lease.update()
                .where(retrain_lease.c.name == LEASE, retrain_lease.c.holder == self.holder)
                .values(expires_at=now + timedelta(seconds=self.seconds))
            ).rowcount
        return renewed == 1

    def check(self) -> None:
        """Renew now, or raise :class:`LeaseLost`."""
        if not self.renew():
            raise LeaseLost(
                f"the retraining lease was lost ({self.holder_now()}): "
                "another job may be running, so this one stops without registering"
            )

    @contextmanager
    def kept(
        self,
        on_renew: Callable[[], None] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> Iterator[None]:
        """Renew the lease from a background thread while the block runs.

        ``on_renew`` is called after each renewal (the worker's heartbeat: a job that
        still holds its lease is making progress as far as liveness goes). ``alive`` is
        asked before each renewal: while it says no (the job has stopped making
        progress, :mod:`retrain.liveness`), the lease is neither renewed nor the
        heartbeat beaten, so that the lease expires and another job takes over."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(self.seconds / RENEWALS_PER_LEASE):
                if alive is not None and not alive():
                    continue  # asked again at the next tick: a job may move again
                try:
                    held = self.renew()
                except sa.exc.SQLAlchemyError as exc:  # try again at the next tick
                    log.warning("cannot renew the retraining lease: %s", exc)
                    continue
                if not held:
                    log.error(
                        "the retraining lease was lost (%s); no longer renewed", self.holder_now()
                    )
                    return
                if on_renew is not None:
                    on_renew()

        thread = threading.Thread(target=renew_until_stopped, name="retrain-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=max(self.seconds, 1.0))

    def release(self) -> None:
        with self.engine.begin() as connection:
            release_lease(connection, self.holder)

    def holder_now(self) -> str:
        """Who holds the lease this holder lost, said for a person. Nobody, when the job
        that took it over (only an expired lease is taken) has given it back since."""
        try:
            holder = self.current_holder()
        except sa.exc.SQLAlchemyError as exc:
            return f"its holder now cannot be read: {exc.__class__.__name__}"
        if holder is None:
            return (
                "no job holds it now: another took it over once it expired, and has given "
                "it back since"
            )
        return f"held by {holder!r} now"

    def current_holder(self) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(retrain_lease.c.holder).where(retrain_lease.c.name == LEASE)
            ).scalar()
