"""How big and how old the log's tables are: rows, oldest row, database size.

Cheap enough to read every minute on a log of hundreds of millions of predictions. Row
counts are PostgreSQL's planner estimate (``pg_class.reltuples``, kept by autovacuum;
summed over partitions) and an exact ``COUNT`` on SQLite, whose databases stay small
(about 0.1 s per million rows here). ``predictions`` is a view over the requests that
hold them (migration 0010): its count is the sum of their ``n_items`` on SQLite, and on
PostgreSQL the requests' estimate times the mean ``n_items`` of the newest
:data:`SAMPLE` requests (read through the ``seq`` index). The oldest row is read
through an index.

For ``predictions`` and ``requests`` the oldest row is the oldest one the prune has not
passed yet (:mod:`watchkeeper.db.retention`): the first request after its resume point
(holding predictions, for ``predictions``), or a rejected request from before 0010 (no
``seq``). Requests kept for their labels, deliberately kept longer, would otherwise
hide a prune that has stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from watchkeeper.db.positions import read_position
from watchkeeper.db.retention import REQUESTS_POSITION
from watchkeeper.db.tables import (
    feedback,
    predictions,
    requests,
    retrain_requests,
    retrain_runs,
    window_results,
)

_TIME_COLUMNS = {
    feedback: feedback.c.received_at,
    window_results: window_results.c.evaluated_at,
    retrain_requests: retrain_requests.c.requested_at,
    retrain_runs: retrain_runs.c.started_at,
}

SAMPLE = 10_000
"""Newest requests whose mean ``n_items`` scales PostgreSQL's estimate of requests to
one of predictions."""

_POSTGRES_ROWS = sa.text(
    "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_class c"
    # a partitioned parent's own estimate (set by ANALYZE) is its partitions' total
    " WHERE (c.oid = to_regclass(:name) AND c.relkind <> 'p')"
    " OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(:name))"
)


@dataclass(frozen=True)
class TableStats:
    table: str
    rows: int
    oldest: datetime | None
    """The oldest row's time (see the module docstring); None for an empty table."""


@dataclass(frozen=True)
class LogStats:
    tables: tuple[TableStats, ...]
    database_bytes: int | None
    """Size of the whole database on disk, if the backend tells."""


def _rows(connection: sa.Connection, table: sa.Table) -> int:
    if table is predictions:
        return _predictions(connection)
    if connection.dialect.name == "postgresql":
        return int(connection.execute(_POSTGRES_ROWS, {"name": table.name}).scalar_one())
    return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _predictions(connection: sa.Connection) -> int:
    if connection.dialect.name != "postgresql":
        return int(
            connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(requests.c.n_items), 0)).where(
                    requests.c.outputs.is_not(None)
                )
            ).scalar_one()
        )
    estimate = int(connection.execute(_POSTGRES_ROWS, {"name": "requests"}).scalar_one())
    newest = (
        sa.select(sa.case((requests.c.outputs.is_(None), 0), else_=requests.c.n_items).label("n"))
        .where(requests.c.seq.is_not(None))
        .order_by(requests.c.seq.desc())
        .limit(SAMPLE)
        .subquery()
    )
    mean = connection.execute(sa.select(sa.func.avg(newest.c.n))).scalar()
    return round(estimate * float(mean or 0))


def _oldest(connection: sa.Connection, table: sa.Table) -> datetime | None:
    if table in (predictions, requests):
        after = read_position(connection, REQUESTS_POSITION) or 0
        query = sa.select(requests.c.received_at).where(requests.c.seq > after)
        if table is predictions:
            query = query.where(requests.c.outputs.is_not(None))
        first = connection.execute(query.order_by(requests.c.seq).limit(1)).scalar()
        if table is predictions:
            return first
        unnumbered = connection.execute(
            sa.select(sa.func.min(requests.c.received_at)).where(requests.c.seq.is_(None))
        ).scalar()
        return min((t for t in (first, unnumbered) if t is not None), default=None)
    column = _TIME_COLUMNS[table]
    return connection.execute(sa.select(sa.func.min(column))).scalar()


def _database_bytes(connection: sa.Connection) -> int | None:
    if connection.dialect.name == "postgresql":
        return int(
            connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        )
    pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
    size = connection.exec_driver_sql("PRAGMA page_size").scalar()
    return None if pages is None or size is None else int(pages) * int(size)


def collect(engine: sa.Engine) -> LogStats:
    tables = (predictions, requests, *_TIME_COLUMNS)
    with engine.connect() as connection:
        stats = tuple(
            TableStats(t.name, _rows(connection, t), _oldest(connection, t)) for t in tables
        )
        size = _database_bytes(connection)
    return LogStats(stats, size)
