"""How big and how old the log's tables are: rows, oldest row, database size.

Cheap enough to read every minute on a log of hundreds of millions of rows. Row
counts are PostgreSQL's planner estimate (``pg_class.reltuples``, kept by autovacuum;
summed over partitions) and an exact ``COUNT`` on SQLite, whose databases stay small
(about 0.1 s per million rows here). The oldest row is read through the time index.

For ``predictions`` and ``requests`` the oldest row is the oldest one the prune has not
passed yet (:mod:`watchkeeper.db.retention`): labelled rows, deliberately kept
longer, would otherwise hide a prune that has stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from watchkeeper.db.positions import from_micros, read_position
from watchkeeper.db.retention import PREDICTIONS_POSITION, REQUESTS_POSITION
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
    if connection.dialect.name == "postgresql":
        return int(connection.execute(_POSTGRES_ROWS, {"name": table.name}).scalar_one())
    return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _oldest(connection: sa.Connection, table: sa.Table) -> datetime | None:
    if table is predictions:
        after = read_position(connection, PREDICTIONS_POSITION) or 0
        return connection.execute(
            sa.select(predictions.c.created_at)
            .where(predictions.c.seq > after)
            .order_by(predictions.c.seq)
            .limit(1)
        ).scalar()
    if table is requests:
        query = sa.select(sa.func.min(requests.c.received_at))
        since = read_position(connection, REQUESTS_POSITION)
        if since is not None:
            query = query.where(requests.c.received_at >= from_micros(since))
        return connection.execute(query).scalar()
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
