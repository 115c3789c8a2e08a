"""Migration 0009: the indexes of ``predictions``; on SQLite a request's rows found
through the prediction id index instead of an index on ``request_id``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from serving.log_entry import prediction_id
from serving.log_store import LogStore
from tests.log_entries import log_entry
from watchkeeper.db import partitions as parts
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import _config, upgrade
from watchkeeper.db.request_rows import of_request
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
        # the table definitions name the indexes PostgreSQL has
        assert {ix.name for ix in predictions.indexes} | {
            "predictions_pkey",
            "predictions_prediction_id_key",
        } == set(BEFORE_POSTGRES)
        expected = BEFORE_POSTGRES  # PostgreSQL keeps its indexes
        assert _postgres_indexes(connection, "predictions") == expected
        # every partition, those there before and one made now, has the same indexes
        made = parts.Partition(NOW.date() + timedelta(days=40), "predictions")
        parts.create_partition(connection, made)
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
    store = LogStore(engine)
    store.insert([log_entry(n, items=3, when=NOW) for n in range(first, first + count)])
    store.insert([log_entry(n, items=1, when=NOW) for n in range(first + count, first + 2 * count)])


def _rows(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        query = sa.select(predictions.c.prediction_id, predictions.c.request_id)
        return sorted(connection.execute(query).all())


def test_predictions_have_the_cheaper_indexes(engine: sa.Engine) -> None:
    """SQLite: ``created_at`` and ``model_version`` only; PostgreSQL as before, the two
    keys and ``request_id``, ``created_at``, ``model_version``, on every partition
    (those made by migration 0007 and one made later)."""
    _assert_schema(engine, after=True)


def test_migration_0009_downgrades_and_upgrades_again_keeping_the_rows(
    engine: sa.Engine,
) -> None:
    _write(engine, 1, 5)
    rows = _rows(engine)
    assert len(rows) == 20

    _downgrade(engine, "0008")
    _assert_schema(engine, after=False)
    assert _rows(engine) == rows
    _write(engine, 100, 2)  # the writer stores into the schema before too

    upgrade(engine)
    _assert_schema(engine, after=True)
    assert len(_rows(engine)) == 28


def _requests_of_adversarial_ids(engine: sa.Engine) -> list[str]:
    """Requests whose ids extend one another: ``ab`` (a batch), ``ab`` + a byte below
    ``/`` (a single record, its id inside ``ab``'s range), ``ab`` + a byte above it,
    ``ab.`` sorting right after ``ab``'s items."""
    ids = ["ab", "ab-1", "ab0", "ab.", "ab/", "aa", "ac", "abc"]
    entries = [
        log_entry(n, items=1 if i % 2 else 4, when=NOW, request_id=rid)
        for n, (i, rid) in enumerate(enumerate(ids), start=1)
    ]
    LogStore(engine).insert(entries)
    return ids


def test_a_requests_rows_are_found_by_the_prediction_id_range(engine: sa.Engine) -> None:
    """The same rows as the condition on ``request_id`` it replaces, whatever the ids
    around it; for ids as serving makes them (``serving.log_entry.prediction_id``)."""
    ids = _requests_of_adversarial_ids(engine)
    dialect = engine.dialect.name
    with engine.connect() as connection:
        for rid in ids:
            wanted = sa.select(predictions.c.prediction_id).order_by(predictions.c.seq)
            found = connection.execute(wanted.where(of_request(rid, dialect))).scalars().all()
            before = connection.execute(wanted.where(predictions.c.request_id == rid))
            assert found == before.scalars().all()
            single = len(found) == 1
            assert found == [prediction_id(rid, i, single) for i in range(len(found))]
            # in a correlated query, against the requests row
            correlated = sa.select(requests.c.request_id).where(
                requests.c.request_id == rid,
                sa.exists().where(of_request(requests.c.request_id, dialect)),
            )
            assert connection.execute(correlated).scalars().all() == [rid]


def test_the_prune_deletes_the_requests_whose_predictions_are_gone_and_only_those(
    engine: sa.Engine,
) -> None:
    """Retention reads a request's predictions through :func:`of_request` (on SQLite
    the id range): a request whose prediction is labelled (kept) stays, its neighbours
    in id order go."""
    old = NOW - timedelta(days=30)
    entries = [
        log_entry(n, items=3 if n % 2 else 1, when=old + timedelta(seconds=n), request_id=rid)
        for n, rid in enumerate(["ab", "ab-1", "ab0", "abc", "b"], start=1)
    ]
    # the newest prediction is never pruned (the monitor may not have read it)
    entries.append(log_entry(9, items=1, when=NOW, request_id="recent"))
    LogStore(engine).insert(entries)
    with engine.begin() as connection:  # a recent label keeps "ab.1" and request "ab"
        connection.execute(
            feedback.insert().values(prediction_id="ab.1", actual=1.0, received_at=NOW)
        )
    policy = RetentionPolicy(
        raw_days=7, labelled_days=90, history_days=None, batch_rows=2, without_monitor=True
    )
    Pruner(engine, policy, pause=False).run()
    with engine.connect() as connection:
        kept = connection.execute(sa.select(requests.c.request_id)).scalars().all()
        left = _rows(engine)
    assert sorted(kept) == ["ab", "recent"]
    assert left == [("ab.1", "ab"), ("recent", "recent")]


def test_the_requests_still_unlabelled_are_the_same_as_by_request_id(engine: sa.Engine) -> None:
    """The prune's check for requests with an unlabelled prediction (it stops there)
    finds what the condition on ``request_id`` found before migration 0009."""
    ids = _requests_of_adversarial_ids(engine)
    with engine.begin() as connection:  # every prediction of "ab" and "ab0" labelled
        labelled = connection.execute(
            sa.select(predictions.c.prediction_id).where(
                predictions.c.request_id.in_(["ab", "ab0"])
            )
        ).scalars()
        connection.execute(
            feedback.insert(),
            [{"prediction_id": i, "actual": 1.0, "received_at": NOW} for i in labelled],
        )
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(requests.c.request_id, requests.c.received_at).order_by(
                requests.c.received_at
            )
        ).all()
        found = Pruner._with_unlabelled(connection, rows)
        before = connection.execute(
            sa.select(predictions.c.request_id).where(
                predictions.c.request_id.in_(ids),
                ~sa.exists().where(feedback.c.prediction_id == predictions.c.prediction_id),
            )
        )
        assert found == set(before.scalars()) == set(ids) - {"ab", "ab0"}
