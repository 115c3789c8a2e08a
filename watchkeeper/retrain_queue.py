"""The retrain queue: the one owner of ``retrain_requests``. The monitor's trigger,
Alertmanager's webhook, ``POST /admin/retrain`` and the CLI put requests in; retraining
jobs take them out. It lives in the core so that serving and the monitor queue a
retrain without importing the retraining component.

A job claims the pending requests when it starts, so triggers that arrive while one
is pending coalesce into one job; requests that arrive while a job runs wait for the
next. A request may ask for training options (:mod:`watchkeeper.retrain_options`),
stored with it: a job claims only requests that ask for the same options, so each
request is trained as it asked, the others left for the next job. A request with a
``dedupe_key`` (an Alertmanager group and its firing alerts) is stored once however
often it is delivered; one with a ``cooldown`` is not stored when the same trigger asked
for the same version within it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError

from watchkeeper.db.tables import retrain_requests
from watchkeeper.errors import WatchkeeperError
from watchkeeper.record_problems import problems
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.retrain_status import RequestStatus

log = logging.getLogger(__name__)

Evidence = dict[str, Any]
"""What made someone ask (a window id, a figure and its limit, an alert's labels): a
free-form JSON object stored as is in the request's ``evidence`` column, for people and
alert text to read; no code branches on its keys."""


class StoredRequestError(WatchkeeperError):
    """A stored ``retrain_requests`` row is not shaped as the queue writes them."""

    code = "stored_request_invalid"


class UnknownOptions(StoredRequestError):
    """A stored request asks for training options this Watchkeeper does not know: a newer
    one queued it (its workers are being rolled out, or were rolled back). Trained
    without them, it would be trained as it did not ask."""

    code = "stored_request_unknown_options"

    def __init__(self, request_id: object, names: Sequence[str]) -> None:
        super().__init__(
            f"stored retrain request {request_id!r} asks for training options this "
            f"Watchkeeper does not know ({', '.join(names)}): queued by a newer one"
        )
        self.request_id = request_id
        self.names = tuple(names)


class RetrainRequest(BaseModel):
    """One ``retrain_requests`` row, validated where it is read."""

    model_config = ConfigDict(frozen=True)

    id: int
    requested_at: datetime
    trigger: str
    reason: str
    model_version: str | None
    evidence: Evidence
    status: RequestStatus
    dedupe_key: str | None
    run_id: int | None
    options: RetrainOptions | None = None
    """What it asks the job to train with; ``None``: the champion's choices."""

    @property
    def asked(self) -> RetrainOptions:
        return self.options or RetrainOptions()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RetrainRequest:
        """The row as a record; a missing or mistyped column is one
        :class:`StoredRequestError` naming the row and the column."""
        try:
            return cls.model_validate(dict(row))
        except ValidationError as exc:
            errors = exc.errors()
            # options unknown here, and nothing else wrong: a newer Watchkeeper's request
            if all(e["type"] == "extra_forbidden" and e["loc"][0] == "options" for e in errors):
                names = [".".join(map(str, e["loc"][1:])) for e in errors]
                raise UnknownOptions(row.get("id"), names) from exc
            raise StoredRequestError(
                f"stored retrain request {row.get('id')!r} is malformed: {problems(exc)}"
            ) from exc


def _requests(rows: Sequence[sa.Row[Any]]) -> list[RetrainRequest]:
    return [RetrainRequest.from_row(r._mapping) for r in rows]


# requests said to be left pending: said once per process, not at every poll
_LEFT_FOR_NEWER: set[object] = set()


def _trainable(rows: Sequence[sa.Row[Any]]) -> list[RetrainRequest]:
    """The pending requests of ``rows`` this Watchkeeper can train as they ask. One
    asking for options it does not know (:class:`UnknownOptions`) is left pending for a
    worker that knows them, and said so once, at WARNING: never trained without them,
    and never holding back the requests behind it."""
    found = []
    for row in rows:
        try:
            found.append(RetrainRequest.from_row(row._mapping))
        except UnknownOptions as exc:
            said = (row.id, row.requested_at)  # another database may reuse the id
            if said not in _LEFT_FOR_NEWER:
                _LEFT_FOR_NEWER.add(said)
                log.warning(
                    "%s; left pending for a worker of a Watchkeeper that knows them, "
                    "never trained without them",
                    exc,
                )
    return found


def enqueue(
    engine: sa.Engine,
    *,
    trigger: str,
    reason: str,
    evidence: Evidence | None = None,
    model_version: str | None = None,
    dedupe_key: str | None = None,
    cooldown: timedelta | None = None,
    options: RetrainOptions | None = None,
) -> int | None:
    """Record a pending request; ``None`` when ``dedupe_key`` was seen before, or when
    ``trigger`` asked for ``model_version`` less than ``cooldown`` ago. ``options`` are
    stored with it, for the job that claims it to train with."""
    now = datetime.now(UTC)
    row = {
        "requested_at": now,
        "trigger": trigger,
        "reason": reason,
        "evidence": evidence or {},
        "model_version": model_version,
        "status": RequestStatus.PENDING,
        "dedupe_key": dedupe_key,
        "options": options.stored() if options is not None else None,
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


def pending(engine: sa.Engine) -> list[RetrainRequest]:
    """The requests no job has claimed yet, oldest first: those this Watchkeeper can
    train as they ask (:func:`_trainable`)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(retrain_requests)
            .where(retrain_requests.c.status == RequestStatus.PENDING)
            .order_by(retrain_requests.c.id)
        ).all()
    return _trainable(rows)


def claim(engine: sa.Engine, run_id: int, *, first: int | None = None) -> list[RetrainRequest]:
    """Mark pending requests as taken by ``run_id`` and return them: request ``first``
    if it is still pending, else the oldest pending one, and every other pending request
    that asks for the same options (:attr:`RetrainRequest.asked`). Requests asking for
    other options stay pending for the next job: one job trains one way; and so do
    those asking for options this Watchkeeper does not know (:func:`_trainable`)."""
    with engine.begin() as connection:
        waiting = _trainable(
            connection.execute(
                sa.select(retrain_requests)
                .where(retrain_requests.c.status == RequestStatus.PENDING)
                .order_by(retrain_requests.c.id)
            ).all()
        )
        lead = next((r for r in waiting if r.id == first), waiting[0] if waiting else None)
        ids = [r.id for r in waiting if lead is not None and r.asked == lead.asked]
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
            sa.select(retrain_requests)
            .where(retrain_requests.c.run_id == run_id)
            .order_by(retrain_requests.c.id)
        ).all()
    return _requests(rows)


def finish(engine: sa.Engine, run_id: int, status: RequestStatus) -> None:
    """Mark the requests claimed by ``run_id`` with how its job ended."""
    with engine.begin() as connection:
        settle(connection, run_id, status)


def settle(connection: sa.Connection, run_id: int, status: RequestStatus) -> None:
    """:func:`finish`, in the caller's transaction."""
    connection.execute(
        retrain_requests.update().where(retrain_requests.c.run_id == run_id).values(status=status)
    )


def claimed_runs(connection: sa.Connection) -> set[int | None]:
    """The runs that requests still marked ``running`` name (``None``: a claimed request
    naming none)."""
    return set(
        connection.execute(
            sa.select(retrain_requests.c.run_id)
            .where(retrain_requests.c.status == RequestStatus.RUNNING)
            .distinct()
        ).scalars()
    )


def release_claims(connection: sa.Connection, run_ids: Sequence[int | None]) -> list[int]:
    """Put the requests the runs ``run_ids`` claimed back to ``pending``, in the caller's
    transaction, and return their ids: those runs' jobs died, so the next claim takes
    them. Their ``run_id`` is cleared so that a job that lost its lease but still lives
    cannot mark them done or failed for its own run."""
    named = [r for r in run_ids if r is not None]
    which = sa.or_(
        retrain_requests.c.run_id.in_(named),
        *([retrain_requests.c.run_id.is_(None)] if None in run_ids else []),
    )
    condition = sa.and_(retrain_requests.c.status == RequestStatus.RUNNING, which)
    ids = list(
        connection.execute(
            sa.select(retrain_requests.c.id).where(condition).order_by(retrain_requests.c.id)
        ).scalars()
    )
    if ids:
        connection.execute(
            retrain_requests.update()
            .where(retrain_requests.c.id.in_(ids), condition)
            .values(status=RequestStatus.PENDING, run_id=None)
        )
    return ids
