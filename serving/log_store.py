"""Stores log entries in the ``requests`` table, fast: one row per request, its
predictions in it (``requests.outputs``, :mod:`serving.log_outputs`; migration 0010).

The writer moves tens of thousands of predictions a second, so rows go to the driver
as plain tuples with the JSON already encoded, a request's features once, by column:
multi-row ``INSERT`` statements on SQLite (62 rows each); on PostgreSQL binary ``COPY``
(one round trip whatever the batch size). Both paths store a batch replayed after a
crash once: SQLite ignores rows already present; on PostgreSQL, where ``COPY`` cannot,
a batch that meets a row already stored fails whole (one transaction, nothing kept) and
is stored again through a staging table and ``INSERT … SELECT … ON CONFLICT DO
NOTHING``. Only replays meet stored rows, so the direct ``COPY`` is the usual path.

PostgreSQL compresses a large ``features`` value before storing it; its default
(pglz) cost about a third of PostgreSQL's CPU per 1,000-row request, LZ4 a tenth of
that, so the writer's transactions ask for LZ4 where the server has it (14 and later,
built with it). Reads decompress either transparently. Rows go by binary ``COPY``.
The features value is ``text`` there (migration 0008): PostgreSQL no longer parses it.

The column lists here must match ``watchkeeper.db.tables``; a test writes through
this module and reads back through the Core tables.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from serving.log_entry import LogEntry
from serving.log_outputs import max_ood_score, outputs_text
from watchkeeper.db.engine import retire_connections

# Column widths of the ``requests`` table; longer client-supplied strings are cut
# rather than failing the insert.
_MAX_CLIENT_ID = 128
_MAX_ENDPOINT = 64
_MAX_METHOD = 8
_SMALLINT_MIN, _SMALLINT_MAX = -32768, 32767

_REQUEST_COLUMNS = (
    "request_id, received_at, endpoint, method, status_code, latency_seconds,"
    " model_version, n_items, error, body, client_request_id, features, single, outputs,"
    " max_ood_score"
)
# SQLite numbers requests itself: one past the highest, read in the insert's own
# statement (under the write lock, so writers in other processes take turns); a
# request already stored is left as it is, number and all.
# ``OR IGNORE`` rather than ``ON CONFLICT DO NOTHING``: both skip a request already
# stored (the primary key is the table's only unique constraint), but with the latter
# a NOT NULL column's default ABORT let each statement fail halfway, so SQLite first
# copied every page it changed that an earlier statement of the transaction had
# written to a statement journal (a temporary file): under single-record load ~1.4
# extra page writes an entry, two fifths of the writer's writes. A statement that cannot
# abort needs none. A NULL in a NOT NULL column would then skip its row silently:
# ``_request_tuple`` gives each of them a value, and refuses the one value SQLite
# stores as NULL (a NaN float).
_SQLITE_INSERT = "INSERT OR IGNORE INTO requests"
_SQLITE_REQUESTS = (
    f"{_SQLITE_INSERT} ({_REQUEST_COLUMNS}, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM requests))"
)
_SQLITE_MAX_SEQ = "SELECT coalesce(max(seq), 0) FROM requests"
# The rest of a batch goes many rows to a statement, numbered from the highest ``seq``
# read under the lock the first row's statement took. ``executemany`` runs a statement
# per row: the driver gives up the interpreter lock around each one's step and must
# take it back from busy request threads, and each statement copied the pages it
# changed to a statement journal (1.8 pages an entry; 0.4 with statements of many rows,
# none since they are ``OR IGNORE``, above). Under single-record load the writer thread
# cost 76 µs of CPU an entry that way, 69 µs with statements of many rows
# (bench/README.md). Statements of 62 rows (992 parameters: SQLite before 3.32 binds at
# most 999), then 32, … 1: a handful of texts for the driver's statement cache.
_SQLITE_ROWS_PER_STATEMENT = 62
_SQLITE_ROW = "(" + ",".join("?" * (_REQUEST_COLUMNS.count(",") + 2)) + ")"
_SQLITE_STORED_ITEMS = (
    "SELECT coalesce(sum(n_items), 0) FROM requests WHERE seq > ? AND request_id IN ({})"
)
_IDS_PER_STATEMENT = 500
# PostgreSQL: COPY into a session-local staging table, then one INSERT … SELECT that
# skips rows already present (COPY itself cannot ignore conflicts). ``seq`` comes from
# the column's sequence either way.
_POSTGRES_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS wk_requests_in ("
    " request_id varchar, received_at timestamptz, endpoint varchar, method varchar,"
    " status_code smallint, latency_seconds float8, model_version varchar, n_items int,"
    " error json, body text, client_request_id varchar, features text, single boolean,"
    " outputs text, max_ood_score float8)"
    " ON COMMIT DELETE ROWS"
)
# Binary COPY: PostgreSQL reads numbers and times as they are, without parsing their
# text, and psycopg writes them without formatting it. Binary rows must say each
# column's type, in the column list's order. JSON columns go as ``text``: the values
# are JSON text already.
_REQUEST_TYPES = (
    "varchar", "timestamptz", "varchar", "varchar", "int2", "float8", "varchar", "int4",
    "text", "text", "varchar", "text", "bool", "text", "float8",
)  # fmt: skip
_POSTGRES_MERGE_REQUESTS = (
    f"INSERT INTO requests ({_REQUEST_COLUMNS}) SELECT {_REQUEST_COLUMNS} FROM wk_requests_in"
    " ON CONFLICT DO NOTHING RETURNING n_items"
)


_POSTGRES_HAS_LZ4 = (
    "SELECT count(*) FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)
# For the writer's session (see LogStore.hold): once per connection rather than a
# round trip per transaction. Other users of the connection once it is back in the pool
# then compress with LZ4 too, which changes nothing but the CPU it costs.
_POSTGRES_USE_LZ4 = "SET default_toast_compression = 'lz4'"
_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True, slots=True)
class Written:
    """Rows an insert stored (rows already present are not counted): requests, and
    the predictions they hold."""

    requests: int
    predictions: int


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return getattr(cause, "sqlstate", None)


def _sqlite_time(value: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime writes and parses back (stored as UTC):
    # "%Y-%m-%d %H:%M:%S.%f", which isoformat writes in half the time of strftime.
    return value.isoformat(" ", "microseconds")[:26]


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _columns_text(entry: LogEntry) -> str:
    if entry.columns_json is not None:
        return entry.columns_json  # as journaled: already JSON
    return entry.columns_bytes().decode()


def _smallint(value: int) -> int:
    """``value`` if a SMALLINT column holds it. Binary COPY needs the check: psycopg's
    binary int2 wraps larger numbers silently (70,000 would be stored as 4,464) where
    PostgreSQL refused them in text."""
    if not _SMALLINT_MIN <= value <= _SMALLINT_MAX:
        raise ValueError(f"{value} is out of range for a SMALLINT column")
    return value


@functools.cache
def _sqlite_numbered_rows(count: int) -> str:
    """An insert of ``count`` requests whose ``seq`` the caller gives (last)."""
    values = ",".join([_SQLITE_ROW] * count)
    return f"{_SQLITE_INSERT} ({_REQUEST_COLUMNS}, seq) VALUES {values}"


def _statement_sizes(count: int) -> Iterator[int]:
    """``count`` rows as statements of :data:`_SQLITE_ROWS_PER_STATEMENT` rows, then
    the rest in powers of two."""
    full, rest = divmod(count, _SQLITE_ROWS_PER_STATEMENT)
    yield from [_SQLITE_ROWS_PER_STATEMENT] * full
    size = 1 << rest.bit_length()
    while rest:
        size //= 2
        if rest >= size:
            yield size
            rest -= size


def _insert_numbered(cursor: Any, rows: list[tuple[Any, ...]]) -> int:
    """Insert request ``rows`` (without ``seq``), numbered in order past every stored
    request; returns how many were stored (rows already present are left as they are,
    and their numbers unused: positions need not be dense)."""
    if not rows:
        return 0
    # The first row numbers itself in its own statement, which takes the database's
    # write lock: no other process's writer stores a request until this one commits.
    cursor.execute(_SQLITE_REQUESTS, rows[0])
    stored = max(cursor.rowcount, 0)
    seq = cursor.execute(_SQLITE_MAX_SEQ).fetchone()[0]
    start = 1
    for size in _statement_sizes(len(rows) - 1):
        parameters: list[Any] = []
        for row in rows[start : start + size]:
            seq += 1
            parameters.extend(row)
            parameters.append(seq)
        cursor.execute(_sqlite_numbered_rows(size), parameters)
        stored += max(cursor.rowcount, 0)
        start += size
    return stored


def _stored_items(cursor: Any, before: int, request_ids: list[str]) -> int:
    """Predictions of the batch's requests numbered past ``before``: those this insert
    stored. Its own ids only: another worker's writer may have stored requests between
    the read of ``before`` (outside the write transaction) and this insert."""
    total = 0
    for start in range(0, len(request_ids), _IDS_PER_STATEMENT):
        ids = request_ids[start : start + _IDS_PER_STATEMENT]
        statement = _SQLITE_STORED_ITEMS.format(",".join("?" * len(ids)))
        total += cursor.execute(statement, (before, *ids)).fetchone()[0]
    return total


class LogStore:
    """Inserts batches of entries; raises what the database or driver raises.

    Each insert is one transaction on a connection from the engine's pool, or, while
    the caller holds one (:meth:`hold`, the writer while entries keep coming), on that
    connection: a checkout costs a ping of the server (``pool_pre_ping``) and PostgreSQL
    a ``SET`` per transaction, 2 of its 8 round trips, and at single-record rates a
    transaction stores only a few requests, so such fixed costs were most of the
    writer's and of PostgreSQL's CPU per request."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"the prediction log does not support {self._dialect}")
        self._lz4: bool | None = None  # PostgreSQL: known after the first connection
        self._holding = False
        self._held: sa.Connection | None = None
        self.staged_batches = 0  # PostgreSQL batches that met rows already stored

    def hold(self) -> None:
        """Keep one connection between inserts until :meth:`release`. A connection that
        fails is dropped, and the next insert opens a new one."""
        self._holding = True

    def release(self) -> None:
        """Give the held connection back to the pool (call it from the thread that
        inserts); inserts check one out each again."""
        self._holding = False
        self._drop_held(close=False)

    def reset(self) -> None:
        """Drop the held connection and retire the pool's: each is replaced at its next
        checkout, including those other users of the engine have checked out now."""
        self._drop_held(close=True)
        retire_connections(self._engine)

    def probe(self) -> None:
        """A statement that writes nothing but must be allowed to write, in a
        transaction: whether entries could be stored now, asked by a writer that saw the
        database down and has nothing of its own to store. A ``SELECT`` would not do: a
        read-only server (after a failover), or a SQLite file that cannot be written,
        answers it."""
        with self._transaction() as connection:
            connection.exec_driver_sql("DELETE FROM requests WHERE 1 = 0")

    def insert(self, entries: Sequence[LogEntry]) -> Written:
        if self._dialect == "sqlite":
            return self._insert_sqlite(entries)
        return self._insert_postgres(entries)

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A transaction on the held connection, or on one from the pool."""
        if not self._holding:
            with self._engine.begin() as connection:
                self._prepare(connection)
                yield connection
            return
        try:
            if self._held is None:
                self._held = self._engine.connect()
                self._prepare(self._held)
                # A session setting must outlive a batch that is rolled back.
                self._held.connection.dbapi_connection.commit()
            with self._held.begin():
                yield self._held
        except Exception as exc:
            # The insert runs on the driver's connection, below SQLAlchemy, which then
            # cannot tell whether it still works: keep it only after a replayed batch
            # met stored rows (the caller stores that batch again at once).
            if _sqlstate(exc) != _UNIQUE_VIOLATION:
                self._drop_held(close=True)
            raise

    def _drop_held(self, *, close: bool) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if close and not held.invalidated:
            held.invalidate()  # its server may be gone: do not hand it back to the pool
        held.close()

    def _prepare(self, connection: sa.Connection) -> None:
        """Ask PostgreSQL to compress with LZ4 where it can (per session)."""
        if self._dialect != "postgresql":
            return
        driver = connection.connection.driver_connection
        if self._lz4 is None:
            self._lz4 = bool(driver.execute(_POSTGRES_HAS_LZ4).fetchone()[0])
        if self._lz4:
            driver.execute(_POSTGRES_USE_LZ4)

    def _request_tuple(self, entry: LogEntry, received: Any) -> tuple[Any, ...]:
        client_id = entry.client_request_id or None
        accepted = bool(entry.n_items)
        if accepted and entry.model_version is None:
            # Refused as the former predictions table's NOT NULL column did: the monitor
            # reads predictions by version, so one without it could never be judged.
            raise ValueError(f"request {entry.request_id} has predictions but no model version")
        if entry.latency_seconds != entry.latency_seconds:  # NaN: NULL to SQLite
            raise ValueError(f"request {entry.request_id} has no latency (NaN)")
        return (
            entry.request_id,
            received,
            entry.endpoint[:_MAX_ENDPOINT],
            entry.method[:_MAX_METHOD],
            entry.status_code,
            entry.latency_seconds,
            entry.model_version,
            entry.n_items,
            _json_text(entry.error),
            entry.body,
            client_id and client_id[:_MAX_CLIENT_ID],
            # Features once per request, by column, and its predictions in the same
            # row (serving.log_outputs): a row per prediction was two thirds of what
            # logging a large batch cost.
            _columns_text(entry) if accepted else None,
            entry.single if accepted else None,
            outputs_text(entry) if accepted else None,
            max_ood_score(entry) if accepted else None,
        )

    def _insert_sqlite(self, entries: Sequence[LogEntry]) -> Written:
        requests = [self._request_tuple(e, _sqlite_time(e.received_at)) for e in entries]
        with self._transaction() as connection:
            cursor = connection.connection.driver_connection.cursor()
            try:
                before = cursor.execute(_SQLITE_MAX_SEQ).fetchone()[0]
                stored = _insert_numbered(cursor, requests)
                if stored == len(entries):
                    items = sum(e.n_items for e in entries)
                elif stored == 0:
                    items = 0
                else:  # part of a replayed batch: what this insert numbered
                    items = _stored_items(cursor, before, [e.request_id for e in entries])
            finally:
                cursor.close()
        return Written(stored, int(items))

    def _insert_postgres(self, entries: Sequence[LogEntry]) -> Written:
        rows = []
        for entry in entries:
            _smallint(entry.status_code)  # SQLite stores any integer there
            rows.append(self._request_tuple(entry, entry.received_at))
        try:
            with self._transaction() as connection:
                self._copy(connection, "requests", rows)
                return Written(len(rows), sum(e.n_items for e in entries))
        except Exception as exc:
            if _sqlstate(exc) != _UNIQUE_VIOLATION:
                raise
        # Some request is already stored (a replay): nothing of the batch was kept.
        self.staged_batches += 1
        with self._transaction() as connection:
            self._copy(connection, "wk_requests_in", rows, staging=True)
            driver = connection.connection.driver_connection
            with driver.cursor() as cursor:
                cursor.execute(_POSTGRES_MERGE_REQUESTS)
                stored = cursor.fetchall()
        return Written(len(stored), sum(n for (n,) in stored))

    @staticmethod
    def _copy(
        connection: sa.Connection, table: str, rows: list[Any], *, staging: bool = False
    ) -> None:
        """Binary ``COPY`` of request rows into ``table``."""
        driver = connection.connection.driver_connection  # psycopg: COPY is not DBAPI
        with driver.cursor() as cursor:
            if staging:
                cursor.execute(_POSTGRES_STAGING)
            statement = f"COPY {table} ({_REQUEST_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with cursor.copy(statement) as copy:
                copy.set_types(_REQUEST_TYPES)
                for row in rows:
                    copy.write_row(row)
