"""Adversarial cases for the PostgreSQL log writer's binary COPY into the time
partitions: extreme floats, a batch failing half-way through its COPY, a column added by
a later migration, a replay of rows moved out of the default partition, and several
workers' writers meeting a prune on a day that has no partition yet."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from serving.log_store import LogStore, Written
from tests.log_entries import journaled, log_entry
from tests.postgres import PostgresServer
from watchkeeper.db import partitions as parts
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import predictions, requests

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    url = postgres_server.create_database()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def _counts(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(sa.select(sa.func.count()).select_from(requests)).scalar_one(),
            connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one(),
        )


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


def test_binary_copy_stores_extreme_floats_bit_for_bit(pg_engine: sa.Engine) -> None:
    """NaN, infinities, the largest and smallest doubles, a negative zero and integer
    arrays (a classifier's class index) go through psycopg's binary float8 unchanged."""
    extremes = [math.nan, math.inf, -math.inf, 1.7976931348623157e308, 5e-324, -0.0]
    n = len(extremes)
    entries = [
        log_entry(1, n, values=extremes, lower=extremes[::-1], upper=extremes, ood=extremes),
        log_entry(
            2,
            2,
            values=np.array([0, 1], dtype=np.int64),
            lower=np.array([0, 1]),
            upper=np.array([0, 1]),
            latency_seconds=0,
            probabilities=np.array([[1.0, 0.0], [5e-324, 1 - 5e-324]]),
        ),
    ]
    assert LogStore(pg_engine).insert(entries) == Written(2, n + 2)

    with pg_engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                predictions.c.prediction,
                predictions.c.lower,
                predictions.c.upper,
                predictions.c.ood_score,
                predictions.c.probabilities,
            ).order_by(predictions.c.seq)
        ).all()
    for i, row in enumerate(rows[:n]):
        assert _same(row.prediction, extremes[i]) and _same(row.upper, extremes[i])
        assert _same(row.lower, extremes[::-1][i]) and _same(row.ood_score, extremes[i])
    assert [r.prediction for r in rows[n:]] == [0.0, 1.0]
    assert [r.probabilities for r in rows[n:]] == [[1.0, 0.0], [5e-324, 1 - 5e-324]]


@pytest.mark.parametrize(
    "poison",
    [
        {"body": "\ud800"},  # psycopg cannot encode it: fails in the client, mid-COPY
        {"client_request_id": "a\x00b"},  # PostgreSQL refuses it: fails in the server
        {"status_code": 70000},  # refused before the COPY starts
    ],
    ids=["client-side", "server-side", "before-copy"],
)
def test_a_batch_failing_during_its_copy_stores_nothing_and_the_next_one_is_stored(
    pg_engine: sa.Engine, poison: dict[str, Any]
) -> None:
    store = LogStore(pg_engine)
    good = [log_entry(n) for n in range(1, 40)]
    bad = log_entry(40, items=0, values=[], lower=[], upper=[], columns={}, **poison)

    with pytest.raises(Exception):  # noqa: B017 - whatever the layer that refuses it raises
        store.insert([*good[:20], bad, *good[20:]])

    assert _counts(pg_engine) == (0, 0)
    # the same pooled connection stores the next batch, on the direct path
    assert store.insert(good) == Written(39, 78)
    assert store.staged_batches == 0
    assert store.insert([journaled(e) for e in good]) == Written(0, 0)  # a replay
    assert _counts(pg_engine) == (39, 78)


def test_a_column_added_by_a_later_migration_does_not_shift_the_copy(
    pg_engine: sa.Engine,
) -> None:
    """COPY names its columns: a column a later migration adds (at the end, or between
    by a rebuild) takes its default, on the direct and on the staged path."""
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE requests ADD COLUMN note int DEFAULT 7")
    store = LogStore(pg_engine)
    entries = [log_entry(1), log_entry(2)]

    assert store.insert(entries[:1]) == Written(1, 2)
    assert store.insert([journaled(e) for e in entries]) == Written(1, 2)  # staged

    with pg_engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT p.prediction, p.lower, p.upper, r.note, r.status_code"
            " FROM predictions p JOIN requests r USING (request_id) ORDER BY p.seq"
        ).all()
    assert [tuple(r) for r in rows] == [
        (1.0, 0.0, 2.0, 7, 200),
        (1.0, 0.0, 2.0, 7, 200),
        (2.0, 1.0, 3.0, 7, 200),
        (2.0, 1.0, 3.0, 7, 200),
    ]


def test_a_replay_of_rows_moved_out_of_the_default_partition_stores_them_once(
    pg_engine: sa.Engine,
) -> None:
    day = datetime(2026, 1, 10, 23, 59, 59, 999999, tzinfo=UTC)
    entries = [log_entry(n, when=day) for n in range(1, 4)]
    store = LogStore(pg_engine)
    assert store.insert(entries) == Written(3, 6)  # no partition for the day: default
    assert parts.ensure_partitions(pg_engine, day, days_ahead=0)  # moves them

    assert store.insert([journaled(e) for e in entries]) == Written(0, 0)

    with pg_engine.connect() as connection:
        where = connection.exec_driver_sql(  # predictions are their requests' rows
            "SELECT DISTINCT tableoid::regclass::text FROM requests"
        ).scalars()
        assert list(where) == ["requests_p20260110"]
    assert _counts(pg_engine) == (3, 6)


def test_workers_writing_a_day_without_partition_while_a_prune_creates_it(
    pg_url: str,
) -> None:
    """Three workers' writers (one engine each, as in gunicorn) write a day with no
    partition while prunes create it: every row is stored once, every prune finishes,
    and the rows end in the day's partition."""
    day = datetime(2026, 1, 20, 6, tzinfo=UTC)
    engines = [create_engine(pg_url) for _ in range(4)]
    stop = threading.Event()
    errors: list[BaseException] = []
    written = [0, 0, 0]

    def write(worker: int) -> None:
        store = LogStore(engines[worker])
        n = 0
        try:
            while not stop.is_set() or n < 20:
                n += 1
                key = worker * 1_000_000 + n
                when = day + timedelta(microseconds=key)
                written[worker] += store.insert([log_entry(key, when=when)]).predictions
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(3)]
    for thread in writers:
        thread.start()
    try:
        created: list[parts.Partition] = []
        for _ in range(50):  # each prune makes the day, or leaves it to the next
            created += parts.ensure_partitions(engines[3], day, days_ahead=0)
            if created:  # PostgreSQL partitions requests only (migration 0010)
                break
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=120)
    assert not errors, errors
    assert {p.table for p in created} == {"requests"}
    with engines[3].connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT count(*), count(DISTINCT prediction_id) FROM predictions"
        ).one()
        where = set(
            connection.exec_driver_sql(
                "SELECT DISTINCT tableoid::regclass::text FROM requests"
            ).scalars()
        )
    assert tuple(stored) == (sum(written), sum(written))
    assert where == {"requests_p20260120"}
    for engine in engines:
        engine.dispose()
