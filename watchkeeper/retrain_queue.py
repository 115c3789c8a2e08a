"""The retrain queue: the one owner of ``retrain_requests``. The monitor's trigger,
Alertmanager's webhook, ``POST /admin/retrain`` and the CLI put requests in; retraining
jobs take them out. It lives in the core so that serving and the monitor queue a
retrain without importing the retraining component.

A job claims every pending request when it starts, so triggers that arrive while one
is pending coalesce into one job; requests that arrive while a job runs wait for the
next. A request with a ``dedupe_key`` (an Alertmanager group and its firing alerts)
is stored once however often it is delivered; one with a ``cooldown`` is not stored
when the same trigger asked for the same version within it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from watchkeeper.db.tables import retrain_requests
from watchkeeper.retrain_status import RequestStatus


def enqueue(
    engine: sa.Engine,
    *,
    trigger: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    model_version: str | None = None,
    dedupe_key: str | None = None,
    cooldown: timedelta | None = None,
) -> int | None:
    """Record a pending request; ``None`` when ``dedupe_key`` was seen before, or when
    ``trigger`` asked for ``model_version`` less than ``cooldown`` ago."""
    now = datetime.now(UTC)
    row = {
        "requested_at": now,
        "trigger": trigger,
        "reason": reason,
        "evidence": evidence or {},
        "model_version": model_version,
        "status": RequestStatus.PENDING,
        "dedupe_key": dedupe_key,
    }
    try:
        with engine.begin() as connection:
            if cooldown is not None:
                last = connection.execute(
                    sa.select(sa.func.max(retrain_requests.c.requested_at)).where(
                        retrain_requests.c.model_version == model_version,
                        retrain_requests.c.trigger == trigger,
                    )
                ).scalar()
                if last is not None and now - last < cooldown:
                    return None
            result = connection.execute(retrain_requests.insert().values(**row))
            return int(result.inserted_primary_key[0])
    except sa.exc.IntegrityError:
        if dedupe_key is None:
            raise
        return None


def pending(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(retrain_requests)
            .where(retrain_requests.c.status == RequestStatus.PENDING)
            .order_by(retrain_requests.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def claim(engine: sa.Engine, run_id: int) -> list[dict[str, Any]]:
    """Mark every pending request as taken by ``run_id`` and return them."""
    with engine.begin() as connection:
        ids = list(
            connection.execute(
                sa.select(retrain_requests.c.id).where(
                    retrain_requests.c.status == RequestStatus.PENDING
                )
            ).scalars()
        )
        if ids:
            connection.execute(
                retrain_requests.update()
                .where(
                    retrain_requests.c.id.in_(ids),
                    retrain_requests.c.status == RequestStatus.PENDING,
                )
                .values(status=RequestStatus.RUNNING, run_id=run_id)
            )
        rows = connection.execute(
            sa.select(retrain_requests).where(retrain_requests.c.run_id == run_id)
        ).all()
    return [dict(r._mapping) for r in rows]


def finish(engine: sa.Engine, run_id: int, status: RequestStatus) -> None:
    """Mark the requests claimed by ``run_id`` with how its job ended."""
    with engine.begin() as connection:
        connection.execute(
            retrain_requests.update()
            .where(retrain_requests.c.run_id == run_id)
            .values(status=status)
        )
