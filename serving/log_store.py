"""Stores log entries in the ``requests`` and ``predictions`` tables, fast.

The writer moves tens of thousands of rows a second, so rows go to the driver as
plain tuples with the JSON already encoded, and a request's features once, by column,
in ``requests.features`` rather than one object per prediction row:
``executemany`` on SQLite; on PostgreSQL ``COPY`` straight into the tables (a few round
trips whatever the batch size). SQLAlchemy Core's bind processing per row cost as much
as the model's own prediction on large batches. Both paths store a batch replayed
after a crash once: SQLite ignores rows already present; on PostgreSQL, where ``COPY``
cannot, a batch that meets a row already stored fails whole (one transaction, nothing
kept) and is stored again through staging tables and ``INSERT … SELECT … ON CONFLICT
DO NOTHING``. Only replays meet stored rows, so the direct ``COPY`` is the usual path:
the staging copy and the second insert were a sixth of PostgreSQL's CPU per batch.

PostgreSQL compresses a large ``features`` value before storing it; its default
(pglz) cost about a third of PostgreSQL's CPU per 1,000-row request, LZ4 a tenth of
that, so the writer's transactions ask for LZ4 where the server has it (14 and later,
built with it). Reads decompress either transparently. Rows go by binary ``COPY``.
The features value is ``text`` there (migration 0008): PostgreSQL no longer parses it.

The column lists here must match ``watchkeeper.db.tables``; a test writes through
this module and reads back through the Core tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from typing import Any

import orjson
import sqlalchemy as sa

from serving.copy_rows import FEW_ROWS, PredictionRows, copy_stream, prediction_rows
from serving.log_entry import LogEntry, prediction_id

# Column widths of the ``requests`` table; longer client-supplied strings are cut
# rather than failing the insert.
_MAX_CLIENT_ID = 128
_MAX_ENDPOINT = 64
_MAX_METHOD = 8
_SMALLINT_MIN, _SMALLINT_MAX = -32768, 32767
_NAN_TEXT = "NaN"

_REQUEST_COLUMNS = (
    "request_id, received_at, endpoint, method, status_code, latency_seconds,"
    " model_version, n_items, error, body, client_request_id, features"
)
_PREDICTION_COLUMNS = (
    "prediction_id, request_id, item_index, created_at, model_version, prediction, lower, upper,"
    " ood_score"
)
# A classifier's rows add their probabilities; a regression model's rows leave the
# column out rather than bind a NULL per row (a tenth more of the writer's time).
_CLASS_PREDICTION_COLUMNS = f"{_PREDICTION_COLUMNS}, probabilities"
_ALL_PREDICTION_COLUMNS = _CLASS_PREDICTION_COLUMNS

_SQLITE_REQUESTS = (
    f"INSERT INTO requests ({_REQUEST_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT DO NOTHING"
)
_SQLITE_PREDICTIONS = (
    f"INSERT INTO predictions ({_PREDICTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT DO NOTHING"
)
_SQLITE_CLASS_PREDICTIONS = (
    f"INSERT INTO predictions ({_CLASS_PREDICTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT DO NOTHING"
)
# PostgreSQL: COPY into session-local staging tables, then one INSERT … SELECT that
# skips rows already present (COPY itself cannot ignore conflicts).
_POSTGRES_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS wk_requests_in ("
    " request_id varchar, received_at timestamptz, endpoint varchar, method varchar,"
    " status_code smallint, latency_seconds float8, model_version varchar, n_items int,"
    " error json, body text, client_request_id varchar, features text)"
    " ON COMMIT DELETE ROWS;"
    " CREATE TEMP TABLE IF NOT EXISTS wk_predictions_in ("
    " prediction_id varchar, request_id varchar, item_index int, created_at timestamptz,"
    " model_version varchar, prediction float8, lower float8, upper float8, ood_score float8,"
    " probabilities json)"
    " ON COMMIT DELETE ROWS"
)
# Binary COPY: PostgreSQL reads numbers and times as they are, without parsing their
# text, and psycopg writes them without formatting it (together ~4 ms of CPU a 1,000-row
# request). Binary rows must say each column's type, in the column lists' order. JSON
# columns go as ``text``: the values are JSON text already, which PostgreSQL's binary
# json input takes as it is (psycopg's json type would encode the text as a JSON string).
_REQUEST_TYPES = (
    "varchar", "timestamptz", "varchar", "varchar", "int2", "float8", "varchar", "int4",
    "text", "text", "varchar", "text",
)  # fmt: skip
_PREDICTION_TYPES = (
    "varchar", "varchar", "int4", "timestamptz", "varchar", "float8", "float8", "float8",
    "float8",
)  # fmt: skip
_CLASS_PREDICTION_TYPES = (*_PREDICTION_TYPES, "text")


_POSTGRES_MERGE_REQUESTS = (
    f"INSERT INTO requests ({_REQUEST_COLUMNS}) SELECT {_REQUEST_COLUMNS} FROM wk_requests_in"
    " ON CONFLICT DO NOTHING"
)
_POSTGRES_MERGE_PREDICTIONS = (
    f"INSERT INTO predictions ({_ALL_PREDICTION_COLUMNS})"
    f" SELECT {_ALL_PREDICTION_COLUMNS} FROM wk_predictions_in ON CONFLICT DO NOTHING"
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
class _Copy:
    """One binary ``COPY`` into a table: rows psycopg formats, or the input made already."""

    statement: str
    types: tuple[str, ...]
    rows: list[Any]
    data: bytes | None = None


def _copy_statement(table: str, columns: str) -> str:
    return f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"


@dataclass(slots=True)
class _PostgresRows:
    """A batch as PostgreSQL's ``COPY`` takes it."""

    requests: list[Any] = field(default_factory=list)
    # A regression model's rows: binary, entry by entry, or tuples (one or the other)
    binary: list[bytes] = field(default_factory=list)
    in_binary: int = 0
    regression: list[Any] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)  # a classifier's rows, as tuples

    @property
    def predictions(self) -> int:
        return self.in_binary + len(self.regression) + len(self.classes)


@dataclass(frozen=True, slots=True)
class Written:
    """Rows an insert stored (rows already present are not counted)."""

    requests: int
    predictions: int


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return getattr(cause, "sqlstate", None)


def _sqlite_time(value: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime writes and parses back (stored as UTC).
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


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


def _floats(values: Any) -> list[float]:
    """Numbers as journaled: a non-finite one is its name (``NaN``, ``Infinity``,
    ``-Infinity``, see :func:`serving.log_entry.journal_numbers`), which ``float()``
    reads; ``null`` is one journaled before names were, whose kind is lost: NaN."""
    if hasattr(values, "tolist"):
        return values.tolist()
    try:
        return [float(v) for v in values]
    except TypeError:
        return [math.nan if v is None else float(v) for v in values]


def _sqlite_nan(values: list[float]) -> list[Any]:
    """SQLite stores a NaN bound as a number as NULL, which the NOT NULL prediction
    columns refuse: bind it as the text ``NaN`` instead, which SQLite keeps as it is
    and :class:`watchkeeper.db.tables.LoggedFloat` reads back as NaN. Infinities are
    REAL values there. One ``sum`` finds out whether there is anything to replace."""
    total = sum(values)
    if total == total:
        return values
    return [v if v == v else _NAN_TEXT for v in values]


def _probability_texts(probabilities: Any, n: int) -> list[str]:
    """Each row's class probabilities as JSON text."""
    rows = probabilities.tolist() if hasattr(probabilities, "tolist") else probabilities
    if len(rows) != n:
        raise ValueError(f"{len(rows)} rows of probabilities for {n} predictions")
    return [orjson.dumps(row).decode() for row in rows]


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
        """Drop pooled connections, the held one included; the next insert opens a
        new one."""
        self._drop_held(close=True)
        self._engine.dispose()

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
            # Features once per request, by column: per-row JSON objects were most of
            # the log's cost on large batches (watchkeeper.db.features reads them).
            _columns_text(entry) if entry.n_items else None,
        )

    @staticmethod
    def _numbers(entry: LogEntry) -> tuple[list[float], list[float], list[float], list[Any]]:
        """The entry's values, lower and upper bounds, and OOD scores (NULL when none
        were served: the monitor scores them)."""
        values, lower, upper = _floats(entry.values), _floats(entry.lower), _floats(entry.upper)
        ood = [None] * len(values) if entry.ood is None else _floats(entry.ood)
        return values, lower, upper, ood

    def _sqlite_predictions(self, entry: LogEntry, created: str) -> Iterator[tuple[Any, ...]]:
        """The entry's prediction rows: :data:`_PREDICTION_COLUMNS`, and a classifier's
        probabilities after them (:data:`_CLASS_PREDICTION_COLUMNS`), made one by one as
        ``executemany`` takes them (a list of a batch's tuples cost as much again)."""
        values, lower, upper, ood = self._numbers(entry)
        values, lower, upper = _sqlite_nan(values), _sqlite_nan(lower), _sqlite_nan(upper)
        n, request_id = len(values), entry.request_id
        rows = zip(
            [prediction_id(request_id, i, entry.single) for i in range(n)],
            repeat(request_id, n),
            range(n),
            repeat(created, n),
            repeat(entry.model_version, n),
            values,
            lower,
            upper,
            ood,
            strict=True,
        )
        if entry.probabilities is None:
            return rows
        texts = _probability_texts(entry.probabilities, n)
        return ((*row, text) for row, text in zip(rows, texts, strict=True))

    def _postgres_tuples(self, entry: LogEntry) -> list[tuple[Any, ...]]:
        """The entry's rows for PostgreSQL's ``COPY`` by psycopg: :data:`_PREDICTION_COLUMNS`,
        and a classifier's probabilities after them (:data:`_CLASS_PREDICTION_COLUMNS`).
        Non-finite values are stored as they are (PostgreSQL's float8 holds NaN and both
        infinities)."""
        values, lower, upper, ood = self._numbers(entry)
        request_id, version, single = entry.request_id, entry.model_version, entry.single
        rows = [
            (
                prediction_id(request_id, i, single),
                request_id,
                i,
                entry.received_at,
                version,
                values[i],
                lower[i],
                upper[i],
                ood[i],
            )
            for i in range(len(values))
        ]
        if entry.probabilities is None:
            return rows
        texts = _probability_texts(entry.probabilities, len(values))
        return [(*row, text) for row, text in zip(rows, texts, strict=True)]

    @staticmethod
    def _binary_rows(entry: LogEntry) -> bytes:
        """A regression model's rows, in binary ``COPY`` format (serving.copy_rows)."""
        if entry.model_version is None:
            raise ValueError("an entry with predictions has no model version")
        return prediction_rows(
            PredictionRows(
                request_id=entry.request_id,
                single=entry.single,
                created_at=entry.received_at,
                model_version=entry.model_version,
                values=_floats(entry.values),
                lower=_floats(entry.lower),
                upper=_floats(entry.upper),
                ood=None if entry.ood is None else _floats(entry.ood),
            )
        )

    def _sqlite_rows(
        self, entries: Sequence[LogEntry]
    ) -> tuple[list[Any], Iterator[Any], Iterator[Any]]:
        """Request rows, regression prediction rows and classifier prediction rows."""
        requests: list[Any] = []
        predictions: list[Iterator[Any]] = []
        class_predictions: list[Iterator[Any]] = []
        for entry in entries:
            when = _sqlite_time(entry.received_at)
            requests.append(self._request_tuple(entry, when))
            if entry.n_items:
                rows = self._sqlite_predictions(entry, when)
                (predictions if entry.probabilities is None else class_predictions).append(rows)
        return requests, chain.from_iterable(predictions), chain.from_iterable(class_predictions)

    def _postgres_rows(self, entries: Sequence[LogEntry]) -> _PostgresRows:
        """The batch's rows: a regression model's as binary ``COPY`` input made here when
        an entry is a batch of more than a few rows, else as tuples for psycopg (which
        formats single records for less); either way in the entries' order, which
        ``seq`` then follows."""
        rows = _PostgresRows()
        binary = any(e.n_items > FEW_ROWS and e.probabilities is None for e in entries)
        for entry in entries:
            _smallint(entry.status_code)  # SQLite stores any integer there
            rows.requests.append(self._request_tuple(entry, entry.received_at))
            if entry.probabilities is not None:
                rows.classes.extend(self._postgres_tuples(entry))
            elif binary and entry.n_items:
                rows.binary.append(self._binary_rows(entry))
                rows.in_binary += entry.n_items
            elif entry.n_items:
                rows.regression.extend(self._postgres_tuples(entry))
        return rows

    def _insert_sqlite(self, entries: Sequence[LogEntry]) -> Written:
        requests, predictions, class_predictions = self._sqlite_rows(entries)
        with self._transaction() as connection:
            cursor = connection.connection.driver_connection.cursor()
            try:
                cursor.executemany(_SQLITE_REQUESTS, requests)
                stored = max(cursor.rowcount, 0)
                stored_predictions = 0
                for statement, rows in (
                    (_SQLITE_PREDICTIONS, predictions),
                    (_SQLITE_CLASS_PREDICTIONS, class_predictions),
                ):
                    cursor.executemany(statement, rows)
                    stored_predictions += max(cursor.rowcount, 0)
            finally:
                cursor.close()
        return Written(stored, stored_predictions)

    def _insert_postgres(self, entries: Sequence[LogEntry]) -> Written:
        rows = self._postgres_rows(entries)
        try:
            with self._transaction() as connection:
                return self._copy_direct(connection, rows)
        except Exception as exc:
            if _sqlstate(exc) != _UNIQUE_VIOLATION:
                raise
        # Some row is already stored (a replay): nothing of the batch was kept.
        self.staged_batches += 1
        with self._transaction() as connection:
            return self._copy_staged(connection, rows)

    @staticmethod
    def _copies(tables: tuple[str, str], rows: _PostgresRows) -> list[_Copy]:
        into_requests, into_predictions = tables
        regression = _copy_statement(into_predictions, _PREDICTION_COLUMNS)
        copies = [
            _Copy(_copy_statement(into_requests, _REQUEST_COLUMNS), _REQUEST_TYPES, rows.requests),
            _Copy(regression, _PREDICTION_TYPES, rows.regression),
            _Copy(
                _copy_statement(into_predictions, _CLASS_PREDICTION_COLUMNS),
                _CLASS_PREDICTION_TYPES,
                rows.classes,
            ),
        ]
        copies = [copy for copy in copies if copy.rows]
        if rows.binary:
            copies.append(_Copy(regression, _PREDICTION_TYPES, [], copy_stream(rows.binary)))
        return copies

    @staticmethod
    def _run_copies(cursor: Any, copies: list[_Copy]) -> None:
        for job in copies:
            with cursor.copy(job.statement) as copy:
                if job.data is not None:
                    copy.write(job.data)  # the whole binary input, signature and trailer
                    continue
                copy.set_types(job.types)
                for row in job.rows:
                    copy.write_row(row)

    def _copy_direct(self, connection: sa.Connection, rows: _PostgresRows) -> Written:
        """COPY into the tables; raises a unique violation if any row is stored already."""
        driver = connection.connection.driver_connection  # psycopg: COPY is not DBAPI
        with driver.cursor() as cursor:
            self._run_copies(cursor, self._copies(("requests", "predictions"), rows))
        return Written(len(rows.requests), rows.predictions)

    def _copy_staged(self, connection: sa.Connection, rows: _PostgresRows) -> Written:
        """COPY into staging tables and insert what is not stored yet."""
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute(_POSTGRES_STAGING)
            self._run_copies(cursor, self._copies(("wk_requests_in", "wk_predictions_in"), rows))
            cursor.execute(_POSTGRES_MERGE_REQUESTS)
            stored = cursor.rowcount
            cursor.execute(_POSTGRES_MERGE_PREDICTIONS)
            stored_predictions = cursor.rowcount
        return Written(stored, stored_predictions)
