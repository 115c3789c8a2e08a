"""The log's indexes and the plans that use them: migration 0009's indexes of the
``predictions`` table of its time (tested at revision 0009), and the prune's statements
on the per-request log (migration 0010), each reading ``requests`` and ``feedback``
through an index however large the log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from serving.log_store import LogStore
from tests.log_entries import log_entry
from tests.sqlite_plans import watching_statements
from tests.watchkeeper.test_partitions import OldLog
from tests.watchkeeper.test_retention import Log
from watchkeeper.db import partitions as parts
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import _config, upgrade
from watchkeeper.db.retention import Pruner, RetentionPolicy
from watchkeeper.db.tables import feedback, predictions, requests

NOW = datetime.now(UTC).replace(microsecond=0)

BEFORE_POSTGRES = {
    "predictions_pkey": ("btree", ["seq", "created_at"]),
    "predictions_prediction_id_key": ("btree", ["prediction_id", "created_at"]),
    "ix_predictions_request_id": ("btree", ["request_id"]),
    "ix_predictions_created_at": ("btree", ["created_at"]),
    "ix_predictions_model_version": ("btree", ["model_version"]),
}
BEFORE_SQLITE = {
    "ix_predictions_request_id",
    "ix_predictions_created_at",
    "ix_predictions_model_version",
}
AFTER_SQLITE = {"ix_predictions_created_at", "ix_predictions_model_version"}


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine_0009(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[sa.Engine]:
    """A new database of the run's kind at revision 0009 (the last with a
    ``predictions`` table)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'log-0009.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    engine = create_engine(url)
    upgrade(engine, "0009")
    yield engine
    engine.dispose()


def _postgres_indexes(connection: sa.Connection, table: str) -> dict[str, tuple[str, list[str]]]:
    rows = connection.exec_driver_sql(
        "SELECT c.relname, a.amname, array_agg(att.attname ORDER BY k.n)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am a ON a.oid = c.relam"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
        " JOIN pg_attribute att ON att.attrelid = i.indrelid AND att.attnum = k.attnum"
        f" WHERE i.indrelid = '{table}'::regclass GROUP BY c.relname, a.amname"
    ).all()
    return {name: (method, list(columns)) for name, method, columns in rows}


def _by_columns(indexes: dict[str, tuple[str, list[str]]]) -> set[tuple[str, tuple[str, ...]]]:
    """A partition's indexes are named after it: compare them by method and columns."""
    return {(method, tuple(columns)) for method, columns in indexes.values()}


def _sqlite_indexes(connection: sa.Connection) -> set[str]:
    return set(
        connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'predictions'"
            " AND name NOT LIKE 'sqlite_autoindex%'"
        ).scalars()
    )


def _assert_schema(engine: sa.Engine, *, after: bool) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            assert _sqlite_indexes(connection) == (AFTER_SQLITE if after else BEFORE_SQLITE)
            return
        expected = BEFORE_POSTGRES  # PostgreSQL keeps its indexes
        assert _postgres_indexes(connection, "predictions") == expected
        # every partition, those there before and one made now, has the same indexes
        made = parts.Partition(NOW.date() + timedelta(days=40), "predictions")
        parts.create_partition(connection, made, "created_at")
        names = [p.name for p in parts.partitions(connection, "predictions")]
        assert made.name in names and len(names) > 1
        for name in [*names, parts.default_name("predictions")]:
            assert _by_columns(_postgres_indexes(connection, name)) == _by_columns(expected)
        connection.rollback()


def _downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _write(engine: sa.Engine, first: int, count: int) -> None:
    """Requests of 3 predictions and single records, as the writer of the time stored
    them."""
    log = OldLog(engine)
    log.n = first
    for _ in range(count):
        log.requests(NOW, 1, items=3)
    for _ in range(count):
        log.requests(NOW, 1, items=1)


def _rows(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return sorted(
            connection.exec_driver_sql("SELECT prediction_id, request_id FROM predictions").all()
        )


def test_predictions_had_the_cheaper_indexes_at_0009(engine_0009: sa.Engine) -> None:
    """SQLite: ``created_at`` and ``model_version`` only; PostgreSQL as before, the two
    keys and ``request_id``, ``created_at``, ``model_version``, on every partition
    (those made by migration 0007 and one made later)."""
    _assert_schema(engine_0009, after=True)


def test_migration_0009_downgrades_and_upgrades_again_keeping_the_rows(
    engine_0009: sa.Engine,
) -> None:
    engine = engine_0009
    _write(engine, 1, 5)
    rows = _rows(engine)
    assert len(rows) == 20

    _downgrade(engine, "0008")
    _assert_schema(engine, after=False)
    assert _rows(engine) == rows
    _write(engine, 100, 2)  # the writer of the time stored into the schema before too

    upgrade(engine, "0009")
    _assert_schema(engine, after=True)
    assert len(_rows(engine)) == 28


def test_the_prune_keeps_a_labelled_request_whole_and_deletes_its_neighbours_in_id_order(
    engine: sa.Engine,
) -> None:
    """A request's labels are found by its predictions' ids: a request holding a recent
    label stays whole, requests whose ids extend its id (inside its range of
    prediction ids in byte order, or not) go."""
    old = NOW - timedelta(days=30)
    entries = [
        log_entry(n, items=3 if n % 2 else 1, when=old + timedelta(seconds=n), request_id=rid)
        for n, rid in enumerate(["ab", "ab-1", "ab0", "abc", "b", "ab."], start=1)
    ]
    # the newest request is never pruned (the monitor may not have read it)
    entries.append(log_entry(9, items=1, when=NOW, request_id="recent"))
    LogStore(engine).insert(entries)
    with engine.begin() as connection:  # a recent label keeps request "ab" whole
        connection.execute(
            feedback.insert().values(prediction_id="ab.1", actual=1.0, received_at=NOW)
        )
    policy = RetentionPolicy(
        raw_days=7, labelled_days=90, history_days=None, batch_rows=2, without_monitor=True
    )
    Pruner(engine, policy, pause=False).run()
    with engine.connect() as connection:
        kept = connection.execute(sa.select(requests.c.request_id)).scalars().all()
        left = connection.execute(
            sa.select(predictions.c.prediction_id).order_by(predictions.c.seq)
        ).scalars()
        assert left.all() == ["ab.0", "ab.1", "ab.2", "recent"]
    assert sorted(kept) == ["ab", "recent"]


# -- the prune's plans ---------------------------------------------------------------------


def _plans(engine: sa.Engine, call: Any) -> list[tuple[str, list[str]]]:
    """Every statement ``call`` runs on the log's tables, with its plan: SQLite's
    ``EXPLAIN QUERY PLAN`` (no statistics, as served), PostgreSQL's ``EXPLAIN`` with
    sequential scans priced out, so that a plan left with one has no index to use."""
    plans: list[tuple[str, list[str]]] = []
    postgres = engine.dialect.name == "postgresql"

    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        words = statement.lstrip().split(None, 1)[0].upper()
        if executemany or words not in ("SELECT", "DELETE") or "requests" not in statement:
            return
        if postgres:
            cursor.connection.execute("SET enable_seqscan = off")
            rows = cursor.connection.execute("EXPLAIN " + statement, parameters)
            plans.append((statement, [row[0] for row in rows]))
            cursor.connection.execute("RESET enable_seqscan")
        else:
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.append((statement, [row[3] for row in rows]))

    watching_statements(engine, call, explain)
    return plans


def _full_scans(engine: sa.Engine, plan: list[str]) -> list[str]:
    if engine.dialect.name == "postgresql":
        return [line for line in plan if "Seq Scan" in line or "hashed SubPlan" in line]
    # json_each's rows (``o``) are a request's own items; ``anon_`` a bounded batch
    scans = [line.strip() for line in plan if line.strip().startswith("SCAN")]
    return [line for line in scans if line.split()[1] != "o" and "anon_" not in line]


@pytest.mark.parametrize("dry_run", [False, True])
def test_every_statement_of_a_prune_reads_the_requests_and_labels_through_an_index(
    engine: sa.Engine, dry_run: bool
) -> None:
    """The raw pass (by ``seq``), a request's recent labels (its own predictions, each
    label by its key), the aged labels (by time, each one's request by its key) and the
    deletes: none reads every request or every label, however long the log."""
    log = Log(engine)
    ago = lambda days: NOW - timedelta(days=days)  # noqa: E731
    for day in range(3):
        ids = log.requests(ago(50 - day), 30, items=3)
        for n, request in enumerate(ids):
            if n % 10 == 0:
                log.label(request[1], ago(20))  # recent: keeps its request
            elif n % 10 == 1:
                log.label(request[0], ago(400))  # aged: goes with it
    log.requests(ago(400), 5, items=0)  # rejected
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    policy = RetentionPolicy(raw_days=30, labelled_days=365, history_days=None, batch_rows=25)
    pruner = Pruner(engine, policy, clock=lambda: NOW, pause=False)

    plans = _plans(engine, lambda: pruner.run(dry_run=dry_run))

    assert plans
    scanning = {s[:120]: _full_scans(engine, p) for s, p in plans if _full_scans(engine, p)}
    # only the count of predictions for the log's size (log_stats) may read them all
    assert not scanning, scanning
    assert len(log.ids(requests, "request_id")) == (96 if dry_run else 1 + 9)


def test_the_log_stats_read_every_minute_use_the_requests_indexes(engine: sa.Engine) -> None:
    """The monitor reads the log's size and age every minute: the oldest rows through
    the ``seq`` index; on PostgreSQL the count of predictions from the newest requests
    only (SQLite counts them exactly, its logs stay small)."""
    from watchkeeper.db import log_stats

    log = Log(engine)
    log.requests(NOW - timedelta(days=3), 20, items=3)
    log.requests(NOW - timedelta(days=2), 5, items=0)
    log.request(NOW)

    plans = _plans(engine, lambda: log_stats.collect(engine))

    exact_counts = ("count(*)", "sum(requests.n_items)")  # SQLite's, by design
    of_requests = [
        (s, p)
        for s, p in plans
        if "FROM requests" in s
        and not (engine.dialect.name == "sqlite" and any(c in s for c in exact_counts))
    ]
    scanning = {s[:120]: _full_scans(engine, p) for s, p in of_requests if _full_scans(engine, p)}
    assert of_requests and not scanning, scanning
    stats = {t.table: t for t in log_stats.collect(engine).tables}
    if engine.dialect.name == "sqlite":
        assert (stats["predictions"].rows, stats["requests"].rows) == (61, 26)
    assert stats["predictions"].oldest == stats["requests"].oldest == NOW - timedelta(days=3)


# What leads each index a logged request enters, and why it grows at its end: keys in
# the order requests are stored, or few distinct ones (equal keys go in storage order).
_APPENDING = {
    "request_id": "time-ordered ids (serving.request_ids)",
    "received_at": "the time a request came in",
    "seq": "the order requests are stored in",
    "model_version": "a handful of versions",
}


def _requests_index_columns(engine: sa.Engine) -> dict[str, list[str]]:
    """Every index of ``requests`` (its partitions' included) and its key columns."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            tables = [p.name for p in parts.partitions(connection, "requests")]
            tables += ["requests", parts.default_name("requests")]
            return {
                name: columns
                for table in tables
                for name, (_, columns) in _postgres_indexes(connection, table).items()
            }
        names = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'"
        ).scalars()
        return {
            name: [row[2] for row in connection.exec_driver_sql(f"PRAGMA index_info('{name}')")]
            for name in list(names)
        }


def test_every_index_a_logged_request_enters_grows_at_its_end(engine: sa.Engine) -> None:
    """An index led by a value that comes in no order takes each logged request's entry
    at a random leaf: once it outgrows the cache, every insert reads and dirties a page
    of its own. Migration 0011's index of the OOD score did: at 3 M requests stored a
    busy SQLite writer spent 1.4–1.9× the CPU and twice the WAL (migration 0013)."""
    indexes = _requests_index_columns(engine)
    assert indexes, "no index found"
    scattered = {name: cols for name, cols in indexes.items() if cols[0] not in _APPENDING}
    assert scattered == {}
