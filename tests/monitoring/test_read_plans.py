"""The monitor's reads per cycle and per window stay index reads on a log of a few
thousand requests: the high mark, the index of new rows past the watermark, a window's
sampled rows, the OOD scores written back, and the labels joined to their predictions
find their requests by ``requests.seq`` or by request id, never by expanding every
request's predictions.

SQLite is checked as served (no statistics: the server and the monitor never run
``ANALYZE``), with the plan it chooses. PostgreSQL plans by statistics, which on a test
log of this size rightly prefer reading small tables whole; there statements are
planned with sequential scans disabled, so a condition that no index can answer (a bare
``predictions.seq > x``, new labels matched to predictions by prediction id alone)
shows as a ``Seq Scan``; a version's newest labels are checked as PostgreSQL plans them
with statistics, where a misestimate once chose to hash every label."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from monitoring import accuracy
from monitoring.log_reader import LogReader
from monitoring.ood_scores import store_ood_scores
from monitoring.window_features import ColumnCache
from serving.log_store import LogStore
from tests.log_entries import T0, log_entry
from tests.sqlite_plans import plans_as_served, watching_statements
from watchkeeper.db.engine import create_engine
from watchkeeper.db.prediction_seq import prediction_seq
from watchkeeper.db.tables import feedback
from watchkeeper.schema import Feature, FeatureSchema

REQUESTS = 3000
SCHEMA = FeatureSchema((Feature("area", "numeric"),), target="price")
LABELLED = datetime(2026, 3, 2, tzinfo=UTC)
"""When the labels arrived, one a second."""


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """3,000 requests, every third a batch of 10, of two versions; a label for every
    seventh prediction, and one for no prediction."""
    engine = create_engine(database_url)
    store = LogStore(engine)
    entries = [
        log_entry(n, 10 if n % 3 == 0 else 1, model_version="v1" if n <= 2000 else "v2")
        for n in range(1, REQUESTS + 1)
    ]
    for start in range(0, len(entries), 500):
        store.insert(entries[start : start + 500])
    ids = [
        e.request_id if e.single else f"{e.request_id}.{i}"
        for e in entries
        for i in range(e.n_items)
    ]
    labels = [
        {"prediction_id": pid, "actual": 1.0, "received_at": LABELLED + timedelta(seconds=i)}
        for i, pid in enumerate(ids[::7])
    ]
    labels.append({"prediction_id": "ghost.3", "actual": 1.0, "received_at": LABELLED})
    with engine.begin() as connection:
        connection.execute(feedback.insert(), labels)
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE")  # as autovacuum would have
    yield engine
    engine.dispose()


def _postgres_plans(
    engine: sa.Engine, call: Callable[[], Any], containing: str, *, as_planned: bool
) -> list[str]:
    """The ``EXPLAIN`` of every statement holding ``containing`` that ``call`` runs,
    planned without sequential scans unless ``as_planned``."""
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if containing in statement and not executemany:
            with cursor.connection.cursor() as own:
                own.execute(f"SET LOCAL enable_seqscan = {'on' if as_planned else 'off'}")
                own.execute("EXPLAIN " + statement, parameters)
                plans.append("\n".join(row[0] for row in own.fetchall()))
                own.execute("SET LOCAL enable_seqscan = on")

    watching_statements(engine, call, explain)
    return plans


def _plans(
    engine: sa.Engine, call: Callable[[], Any], containing: str, *, as_planned: bool = False
) -> list[str]:
    """Each plan as one text (SQLite's lines joined)."""
    if engine.dialect.name == "postgresql":
        return _postgres_plans(engine, call, containing, as_planned=as_planned)
    return ["\n".join(plan) for plan in plans_as_served(engine, call, containing)]


def _by_index(plan: str, sqlite: str, postgres: str) -> None:
    """SQLite's plan (its lines start ``SEARCH`` or ``SCAN``) begins with ``sqlite``;
    PostgreSQL's reads no table whole and holds ``postgres``, what an index answers."""
    if plan.startswith(("SEARCH", "SCAN")):
        assert plan.splitlines()[0] == sqlite, plan
        return
    assert "Seq Scan" not in plan, plan
    assert postgres in plan, plan


def test_the_high_mark_is_read_from_the_newest_request(engine: sa.Engine) -> None:
    reader = LogReader(engine, settle_seconds=0)

    [plan] = _plans(engine, reader.high_mark, "FROM requests")

    _by_index(plan, "SEARCH requests USING INDEX ix_requests_seq (seq>?)", "Index Scan Backward")
    assert reader.high_mark() == prediction_seq(REQUESTS, 9)  # the last batch's last item


def test_new_rows_are_read_by_the_requests_seq_and_a_limited_read_stops_early(
    engine: sa.Engine,
) -> None:
    reader = LogReader(engine, settle_seconds=0)
    after, up_to = prediction_seq(1000, 4), reader.high_mark()

    [plan] = _plans(engine, lambda: reader.read_index(after, up_to, limit=500), "FROM predictions")

    _by_index(
        plan, "SEARCH r USING INDEX ix_requests_seq (seq>? AND seq<?)", "Index Cond: ((seq >="
    )
    # ordered by the index, then by item: no sort of every row in range before the limit
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
    assert "Presorted Key" in plan or "RIGHT PART OF ORDER BY" in plan, plan
    [plan] = _plans(engine, lambda: reader.read(after, up_to, limit=50), "FROM predictions")
    _by_index(
        plan, "SEARCH r USING INDEX ix_requests_seq (seq>? AND seq<?)", "Index Cond: ((seq >="
    )


def test_a_windows_sampled_rows_are_read_by_seq_and_their_features_by_request(
    engine: sa.Engine,
) -> None:
    reader = LogReader(engine, settle_seconds=0)
    rows = reader.read_index(prediction_seq(100, 0), prediction_seq(400, 0))
    positions = np.arange(0, len(rows), 7)

    def read() -> Any:
        return reader.window_features(rows, SCHEMA, positions)

    [features] = _plans(engine, read, "FROM requests")
    reader.columns = ColumnCache()  # the requests' columns read again
    [sampled] = _plans(engine, read, "FROM predictions")

    _by_index(
        features,
        "SEARCH requests USING INDEX sqlite_autoindex_requests_1 (request_id=?)",
        "Index Cond: ((request_id)::text = ANY",
    )
    _by_index(sampled, "SEARCH r USING INDEX ix_requests_seq (seq=?)", "Index Cond: (seq = ANY")


def test_ood_scores_are_written_into_their_requests_found_by_seq(engine: sa.Engine) -> None:
    seqs = [prediction_seq(n, i) for n in (300, 301, 302) for i in range(2)][1:]

    def store() -> None:
        with engine.begin() as connection:
            store_ood_scores(connection, seqs, [0.25] * len(seqs))

    [read] = _plans(engine, store, "FROM requests")

    _by_index(read, "SEARCH requests USING INDEX ix_requests_seq (seq=?)", "Index Cond: (seq = ANY")
    if engine.dialect.name == "postgresql":
        [write] = _plans(engine, store, "UPDATE requests")
        assert "Seq Scan" not in write and "Index Cond: (seq = v.seq)" in write, write
    else:
        with engine.connect() as connection:
            write = connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN UPDATE requests SET outputs = ? WHERE seq = ?", ("[]", 1)
            ).all()
        assert [row[3] for row in write] == ["SEARCH requests USING INDEX ix_requests_seq (seq=?)"]


def _span(first: int, last: int) -> accuracy.WindowSpan:
    return accuracy.WindowSpan("w", "v1", first, last, 0, T0, T0)


def test_a_windows_labels_are_read_by_its_requests_seq(engine: sa.Engine) -> None:
    span = _span(prediction_seq(600, 0), prediction_seq(900, 9))

    def read() -> Any:
        with engine.connect() as connection:
            return accuracy.read_window_labels(connection, span)

    [plan] = _plans(engine, read, "feedback.actual")

    _by_index(plan, "SEARCH r USING INDEX ix_requests_seq (seq>? AND seq<?)", "(seq >=")
    assert "feedback" in plan and "ix_requests_model_version" not in plan, plan
    assert len(read()) > 0


def test_new_labels_find_their_requests_by_key(engine: sa.Engine) -> None:
    """Labels are read by their arrival time, their predictions' requests by key: never
    the ``predictions`` view, which SQLite expanded a whole request per label for (4.7 s
    for 20,000 labels of 1,000-row requests)."""
    after, up_to = LABELLED, LABELLED + timedelta(seconds=60)

    def read() -> Any:
        with engine.connect() as connection:
            return (
                accuracy.read_new_labels(connection, after, up_to),
                accuracy.unmatched_labels(connection, LABELLED - timedelta(1), up_to),
            )

    labels = _plans(engine, read, "FROM feedback")
    keyed = _plans(engine, read, "FROM requests")

    assert len(labels) == 3 and len(keyed) == 2
    for plan in labels:
        if plan.startswith(("SEARCH", "SCAN")):
            assert plan.startswith("SEARCH feedback USING"), plan
        assert "ix_feedback_received_at" in plan, plan
        assert "Seq Scan" not in plan, plan
    for plan in keyed:
        _by_index(
            plan,
            "SEARCH requests USING INDEX sqlite_autoindex_requests_1 (request_id=?)",
            "Index Cond: ((request_id)::text = ANY",
        )
    assert not any("predictions" in plan or "json_each" in plan for plan in labels + keyed)
    found, orphans = read()
    assert len(found.matched) == 60 and orphans == ["ghost.3"]


def test_a_versions_recent_labels_walk_back_from_the_newest_request(engine: sa.Engine) -> None:
    def read() -> Any:
        with engine.connect() as connection:
            return accuracy.read_recent_labels(connection, "v1", 100)

    # as PostgreSQL plans it with statistics: a hash join of every label with every
    # prediction of the version is what a misestimate of the join chose
    [plan] = _plans(engine, read, "feedback.actual", as_planned=True)

    if plan.startswith(("SEARCH", "SCAN")):  # SQLite: not every label, not every request
        assert plan.splitlines()[0] == "SCAN r USING INDEX ix_requests_seq", plan
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
    else:
        assert "Index Scan Backward" in plan and "Presorted Key: r.seq" in plan, plan
        assert "Seq Scan on feedback" not in plan and "Hash" not in plan, plan
    labels = read()
    assert len(labels) == 100 and labels["seq"].is_monotonic_decreasing
