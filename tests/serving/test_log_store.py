"""The log store on its own, on real SQLite and PostgreSQL: what an insert stores, once,
whatever part of a batch is stored already, and how PostgreSQL is asked to store it."""

from __future__ import annotations

import math
import os
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from serving.log_entry import LogEntry
from serving.log_store import LogStore, Written
from tests.log_entries import journaled, log_entry
from watchkeeper.db.engine import create_engine
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import predictions, requests


def _entry(n: int, items: int = 3, **overrides: Any) -> LogEntry:
    """An entry with a text feature and served OOD scores besides the defaults."""
    columns = {"area": [100.0 * n + i for i in range(items)], "hood": ["north"] * items}
    return log_entry(n, items, **{"columns": columns, "ood": [0.5] * items, **overrides})


def _stored(engine: sa.Engine) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    with engine.connect() as connection:
        request_ids = connection.execute(
            sa.select(requests.c.request_id).order_by(requests.c.request_id)
        ).scalars()
        rows = connection.execute(sa.select(predictions).order_by(predictions.c.seq)).all()
        return list(request_ids), [r.prediction_id for r in rows], feature_records(connection, rows)


def test_a_batch_partly_stored_already_is_completed_once(engine: sa.Engine) -> None:
    """A replay after a crash may meet some of its entries in the database: those are
    skipped, the others stored, every row once, and only new rows are counted."""
    store = LogStore(engine)
    assert store.insert([journaled(_entry(n)) for n in (1, 3)]) == Written(2, 6)

    written = store.insert([journaled(_entry(n)) for n in range(5)])

    assert written == Written(3, 9)
    request_ids, prediction_ids, features = _stored(engine)
    assert request_ids == [f"{n:032x}" for n in range(5)]
    assert sorted(prediction_ids) == sorted(f"{n:032x}.{i}" for n in range(5) for i in range(3))
    assert len(features) == 15 and {"area", "hood"} == set(features[0])
    assert store.insert([journaled(_entry(n)) for n in range(5)]) == Written(0, 0)
    assert len(_stored(engine)[1]) == 15


def test_a_stored_classifier_entry_among_new_ones_is_skipped(engine: sa.Engine) -> None:
    """Regression and classifier rows of one batch, replayed over a stored classifier
    entry: both kinds of rows of the new entries are stored, once."""
    store = LogStore(engine)

    def classified(n: int) -> LogEntry:
        return _entry(n, items=2, probabilities=[[0.2, 0.8], [0.6, 0.4]])

    store.insert([classified(2)])

    written = store.insert([_entry(1), classified(2), classified(3)])

    assert written == Written(2, 5)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(predictions.c.prediction_id, predictions.c.probabilities).order_by(
                predictions.c.prediction_id
            )
        ).all()
    assert [(r.prediction_id, r.probabilities) for r in rows] == [
        (f"{1:032x}.{i}", None) for i in range(3)
    ] + [(f"{n:032x}.{i}", p) for n in (2, 3) for i, p in enumerate([[0.2, 0.8], [0.6, 0.4]])]


@pytest.mark.postgres
def test_postgres_stores_new_batches_by_direct_copy_and_replays_through_staging(
    postgres_engine: sa.Engine,
) -> None:
    """The staging tables are for replays only: a batch of new entries is copied straight
    into the tables; one that meets a stored row fails whole and goes through staging."""
    store = LogStore(postgres_engine)
    store.insert([journaled(_entry(n)) for n in range(3)])
    assert store.staged_batches == 0

    assert store.insert([journaled(_entry(n)) for n in range(2, 6)]) == Written(3, 9)
    assert store.staged_batches == 1
    assert len(_stored(postgres_engine)[0]) == 6


@pytest.mark.postgres
def test_a_reset_closes_a_connection_another_thread_had_checked_out_once_it_comes_back(
    postgres_engine: sa.Engine,
) -> None:
    """The writer resets the pool when it finds the database down, and the readiness
    probe shares its engine: a connection the probe had checked out then was left in a
    discarded pool, open until the garbage collector deleted it (psycopg's
    ResourceWarning, failing whichever later test it was collected in)."""
    store = LogStore(postgres_engine)
    with postgres_engine.connect() as other:  # as the probe's thread holds it
        held = other.connection.dbapi_connection
        store.reset()
    with postgres_engine.connect() as after:
        assert after.connection.dbapi_connection is not held  # replaced, as reset says
    assert held.closed


@pytest.mark.postgres
def test_postgres_compresses_features_with_lz4(postgres_engine: sa.Engine) -> None:
    """A large request's features are compressed with LZ4 (pglz cost PostgreSQL about a
    third of its CPU per 1,000-row request), and read back unchanged."""
    entry = _entry(1, items=1000)
    LogStore(postgres_engine).insert([journaled(entry)])
    with postgres_engine.connect() as connection:
        method = connection.exec_driver_sql(
            "SELECT pg_column_compression(features) FROM requests"
        ).scalar()
        stored = connection.execute(sa.select(requests.c.features)).scalar()
    assert method == "lz4"
    assert stored == entry.columns


def test_every_column_reads_back_as_it_was_sent(engine: sa.Engine) -> None:
    """What the binary COPY (PostgreSQL) and executemany (SQLite) store, column by column:
    times to the microsecond, floats exactly, NULL scores, JSON as JSON, a refused
    request's error, body and client id; a client id longer than its column is cut."""
    when = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    batch = _entry(1, items=2, received_at=when, latency_seconds=0.000123, ood=None)
    batch.values, batch.lower, batch.upper = [0.1, 1e300], [-2.5, 0.0], [3.25, 1e-300]
    classified = _entry(2, items=1, probabilities=[[0.25, 0.75]], client_request_id="c" * 200)
    refused = _entry(
        3,
        items=0,
        status_code=400,
        error={"code": "invalid_body", "message": 'n\u00e9e \\ "x"'},
        body='{"features": 1}',
        columns={},
        model_version=None,
    )
    LogStore(engine).insert([journaled(e) for e in (batch, classified, refused)])

    with engine.connect() as connection:
        stored = {r.request_id: r._mapping for r in connection.execute(sa.select(requests)).all()}
        rows = {
            r.prediction_id: r._mapping for r in connection.execute(sa.select(predictions)).all()
        }
    first = stored[f"{1:032x}"]
    assert (first["received_at"], first["latency_seconds"], first["n_items"]) == (
        when,
        0.000123,
        2,
    )
    assert first["features"] == batch.columns and first["error"] is None
    assert [rows[f"{1:032x}.{i}"]["created_at"] for i in range(2)] == [when, when]
    assert [
        (r["prediction"], r["lower"], r["upper"], r["ood_score"], r["item_index"])
        for r in (rows[f"{1:032x}.0"], rows[f"{1:032x}.1"])
    ] == [(0.1, -2.5, 3.25, None, 0), (1e300, 0.0, 1e-300, None, 1)]
    assert rows[f"{2:032x}"]["probabilities"] == [0.25, 0.75]
    assert rows[f"{2:032x}"]["ood_score"] == 0.5
    assert stored[f"{2:032x}"]["client_request_id"] == "c" * 128
    third = stored[f"{3:032x}"]
    assert (third["status_code"], third["error"], third["body"]) == (
        400,
        refused.error,
        '{"features": 1}',
    )
    assert (third["n_items"], third["features"], third["model_version"]) == (0, None, None)


def _non_finite(n: int) -> LogEntry:
    """Predictions a model returned as NaN, infinity and minus infinity."""
    odd = [math.nan, math.inf, -math.inf]
    return _entry(n, values=list(odd), lower=list(odd), upper=[math.nan, math.inf, 1.0])


def _numbers(engine: sa.Engine) -> dict[str, tuple[float, float, float]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(predictions)).all()
    return {r.prediction_id: (r.prediction, r.lower, r.upper) for r in rows}


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_non_finite_predictions_are_stored_as_they_are_by_every_insert_path(
    engine: sa.Engine,
) -> None:
    """NaN and both infinities, through the journal line, stored and read back as they
    were: by SQLite's insert, and by PostgreSQL's direct COPY and its staged COPY (the
    second insert meets a stored row). Such an entry is never refused."""
    store = LogStore(engine)
    assert store.insert([journaled(_non_finite(1))]) == Written(1, 3)

    assert store.insert([journaled(_non_finite(n)) for n in (1, 2)]) == Written(1, 3)

    numbers = _numbers(engine)
    assert len(numbers) == 6
    for n in (1, 2):
        assert _same(numbers[f"{n:032x}.0"], (math.nan, math.nan, math.nan))
        assert _same(numbers[f"{n:032x}.1"], (math.inf, math.inf, math.inf))
        assert _same(numbers[f"{n:032x}.2"], (-math.inf, -math.inf, 1.0))
    if engine.dialect.name == "postgresql":
        assert store.staged_batches == 1


def test_a_non_finite_value_journaled_as_null_is_stored_as_nan(engine: sa.Engine) -> None:
    """A journal line written before non-finite values were named holds ``null`` for
    them (orjson's spelling): replayed, the row is stored with NaN, not dead-lettered."""
    line = _non_finite(1).to_line()[:-1]
    for name in (b'"NaN"', b'"Infinity"', b'"-Infinity"'):
        line = line.replace(name, b"null")

    LogStore(engine).insert([LogEntry.from_line(line)])

    numbers = _numbers(engine)
    assert _same(numbers[f"{1:032x}.1"], (math.nan, math.nan, math.nan))
    assert _same(numbers[f"{1:032x}.2"], (math.nan, math.nan, 1.0))


def test_a_classifiers_nan_probability_is_stored_as_null(engine: sa.Engine) -> None:
    """JSON has no NaN: a class probability the model returned as NaN is stored as
    ``null`` in the probabilities JSON, and the row is stored."""
    entry = _entry(1, items=2, probabilities=[[math.nan, 0.5], [0.25, 0.75]])

    assert LogStore(engine).insert([journaled(entry)]) == Written(1, 2)

    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(predictions.c.probabilities).order_by(predictions.c.item_index)
        ).scalars()
        assert list(stored) == [[None, 0.5], [0.25, 0.75]]


def test_every_prediction_row_of_large_and_small_batches_reads_back_as_sent(
    engine: sa.Engine,
) -> None:
    """Rows made in bulk (PostgreSQL's binary rows built by NumPy for a batch, by
    ``struct`` for a few rows; SQLite's tuples made as ``executemany`` takes them),
    every column of every row: ids whose index crosses from 1 to 4 digits, NaN and
    infinities, scores or NULL, a version in UTF-8, in one insert with a single record."""
    n = 1234
    values = [float(i) / 3 for i in range(n)]
    values[9], values[10], values[999] = math.nan, math.inf, -math.inf
    big = log_entry(
        1,
        n,
        model_version="v-\u00e9t\u00e9",
        values=values,
        lower=[v - 1 for v in values],
        upper=[v + 2 for v in values],
        ood=[i / 7 for i in range(n)],
    )
    small = log_entry(2, 20, ood=None)
    single = log_entry(3, 1, ood=[0.25])
    store = LogStore(engine)
    assert store.insert([journaled(e) for e in (big, small, single)]) == Written(3, n + 21)

    with engine.connect() as connection:
        rows = connection.execute(sa.select(predictions).order_by(predictions.c.seq)).all()
    expected = [
        (
            e.request_id if e.single else f"{e.request_id}.{i}",
            e.request_id,
            i,
            e.received_at,
            e.model_version,
            e.values[i],
            e.lower[i],
            e.upper[i],
            None if e.ood is None else e.ood[i],
        )
        for e in (big, small, single)
        for i in range(len(e.values))
    ]
    stored = [
        (
            r.prediction_id,
            r.request_id,
            r.item_index,
            r.created_at,
            r.model_version,
            r.prediction,
            r.lower,
            r.upper,
            r.ood_score,
        )
        for r in rows
    ]
    assert len(stored) == len(expected)
    for got, want in zip(stored, expected, strict=True):
        assert got[:5] == want[:5]
        assert _same(got[5:8], want[5:8]) and got[8] == want[8], (got, want)


def _outputs(engine: sa.Engine) -> dict[str, tuple[bool | None, int, Any]]:
    """Each request's ``single``, ``n_items`` and ``outputs`` as stored (the JSON
    parsed, non-finite numbers' names left as the strings they are)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                requests.c.request_id, requests.c.single, requests.c.n_items, requests.c.outputs
            )
        ).all()
    return {r.request_id: (r.single, r.n_items, r.outputs) for r in rows}


def test_outputs_hold_one_array_per_item_scores_fourth_when_served(engine: sa.Engine) -> None:
    """A single record, a batch without OOD scores and one with them: ``[prediction,
    lower, upper]`` per item, the score fourth only when served; a refused request has
    no outputs and no ``single``."""
    single = log_entry(1, 1, ood=[0.25])
    batch = log_entry(2, 3, values=[1.5, 2.5, 3.5], lower=[1.0, 2.0, 3.0], upper=[2.0, 3.0, 4.0])
    scored = log_entry(3, 2, ood=[0.5, 0.75])
    refused = log_entry(4, 0, status_code=422, columns={}, model_version=None)

    LogStore(engine).insert([journaled(e) for e in (single, batch, scored, refused)])

    assert _outputs(engine) == {
        f"{1:032x}": (True, 1, [[1.0, 0.0, 2.0, 0.25]]),
        f"{2:032x}": (False, 3, [[1.5, 1.0, 2.0], [2.5, 2.0, 3.0], [3.5, 3.0, 4.0]]),
        f"{3:032x}": (False, 2, [[3.0, 2.0, 4.0, 0.5], [3.0, 2.0, 4.0, 0.75]]),
        f"{4:032x}": (None, 0, None),
    }


@pytest.mark.parametrize("journal", [False, True], ids=["as built", "journaled"])
def test_a_requests_highest_ood_score_is_stored_beside_its_outputs(
    engine: sa.Engine, journal: bool
) -> None:
    """``max_ood_score``: the highest score of the request's items, NaN left out, NULL
    without one; few scores and many (a NumPy path) alike."""
    many = [float(i % 17) for i in range(100)]
    entries = [
        log_entry(1, 4, ood=[1.0, math.nan, 3.0, -math.inf]),
        log_entry(2, 1),
        log_entry(3, 2, ood=[math.nan, math.nan]),
        log_entry(4, 100, ood=[*many[:50], math.inf, *many[51:]]),
        log_entry(5, 100, ood=[math.nan, *many[1:]]),
        log_entry(6, 1, ood=[-math.inf]),
        log_entry(7, 0, status_code=422, columns={}, model_version=None),
    ]

    LogStore(engine).insert([journaled(e) if journal else e for e in entries])

    with engine.connect() as connection:
        stored = dict(
            connection.execute(sa.select(requests.c.request_id, requests.c.max_ood_score)).all()
        )
    assert stored == {
        f"{n:032x}": top
        for n, top in [(1, 3.0), (2, None), (3, None), (4, math.inf), (5, 16.0), (6, -math.inf)]
    } | {f"{7:032x}": None}


def test_a_classifiers_probabilities_are_fifth_after_its_score_or_null(
    engine: sa.Engine,
) -> None:
    """Probabilities in the version's classes order, fifth: after the OOD score, or
    after ``null`` when none was served, so the view reads them in one place."""
    probabilities = [[0.2, 0.8], [0.6, 0.4]]
    scored = log_entry(1, 2, values=[1.0, 0.0], ood=[0.5, 0.25], probabilities=probabilities)
    unscored = log_entry(2, 1, values=[0.0], probabilities=[[0.9, 0.1]])

    LogStore(engine).insert([journaled(scored), journaled(unscored)])

    outputs = _outputs(engine)
    assert outputs[f"{1:032x}"][2] == [
        [1.0, 0.0, 2.0, 0.5, [0.2, 0.8]],
        [0.0, 0.0, 2.0, 0.25, [0.6, 0.4]],
    ]
    assert outputs[f"{2:032x}"][2] == [[0.0, 1.0, 3.0, None, [0.9, 0.1]]]
    with engine.connect() as connection:
        read = connection.execute(
            sa.select(predictions.c.prediction_id, predictions.c.ood_score).where(
                predictions.c.request_id == f"{2:032x}"
            )
        ).one()
    assert read == (f"{2:032x}", None)


def test_non_finite_numbers_are_stored_by_name_and_probabilities_as_null(
    engine: sa.Engine,
) -> None:
    """JSON has no NaN or infinity: values, bounds and scores are stored as ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"`` (the view reads them back as floats; a NaN score as
    NULL on SQLite, whose REAL cannot hold it); a class probability that is not finite
    is ``null``."""
    odd = [math.nan, math.inf, -math.inf]
    regression = log_entry(1, 3, values=list(odd), lower=[0.0] * 3, upper=list(odd), ood=odd)
    classifier = log_entry(
        2, 1, values=[1.0], lower=[1.0], upper=[1.0], probabilities=[[math.nan, math.inf]]
    )

    LogStore(engine).insert([journaled(regression), journaled(classifier)])

    outputs = _outputs(engine)
    names = ["NaN", "Infinity", "-Infinity"]
    assert outputs[f"{1:032x}"][2] == [[n, 0.0, n, n] for n in names]
    assert outputs[f"{2:032x}"][2] == [[1.0, 1.0, 1.0, None, [None, None]]]
    with engine.connect() as connection:
        scores = connection.execute(
            sa.select(predictions.c.ood_score).order_by(predictions.c.seq)
        ).scalars()
        first, *infinite = tuple(scores)[:3]
        assert first is None if engine.dialect.name == "sqlite" else math.isnan(first)
        assert infinite == [math.inf, -math.inf]


def test_a_replayed_batch_is_stored_once_and_counted_once(engine: sa.Engine) -> None:
    """A journal replayed after a crash (its checkpoint behind what was stored) meets
    its own rows: singles, batches and refused requests are each stored once, with the
    ``seq`` and outputs of their first insert, and ``Written`` counts only what this
    insert stored, requests and the predictions they hold (on PostgreSQL through the
    staged path)."""
    entries = [
        journaled(log_entry(1, 1)),
        journaled(log_entry(2, 4)),
        journaled(log_entry(3, 0, status_code=400, columns={}, model_version=None)),
        journaled(log_entry(4, 1)),
    ]
    store = LogStore(engine)
    assert store.insert(entries[:3]) == Written(3, 5)
    first = _outputs(engine)
    with engine.connect() as connection:
        seqs = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())

    assert store.insert(entries) == Written(1, 1)
    assert store.insert(entries) == Written(0, 0)

    stored = _outputs(engine)
    assert len(stored) == 4
    assert {rid: stored[rid] for rid in first} == first
    with engine.connect() as connection:
        after = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())
        count = connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()
    assert {rid: after[rid] for rid in seqs} == seqs
    # stored in order: the replayed request after those stored before it
    assert [after[f"{n:032x}"] for n in (1, 2, 3)] == sorted(seqs.values())
    assert after[f"{4:032x}"] > max(seqs.values())
    assert count == 6
    if engine.dialect.name == "postgresql":
        assert store.staged_batches == 2


def test_predictions_without_a_model_version_are_refused(engine: sa.Engine) -> None:
    """As the former ``predictions`` table's NOT NULL column refused them (the writer
    then sets the entry aside): a prediction no version made cannot be monitored. A
    refused request has none and is stored."""
    store = LogStore(engine)
    with pytest.raises(ValueError, match="no model version"):
        store.insert([journaled(log_entry(1, 2, model_version=None))])
    refused = log_entry(2, 0, status_code=400, columns={}, model_version=None)
    assert store.insert([journaled(refused)]) == Written(1, 0)


def test_a_partly_replayed_batch_counts_only_its_own_predictions(
    tmp_path: Any, engine: sa.Engine
) -> None:
    """SQLite: another worker's writer may store a request between the writer's read of
    the highest ``seq`` and its insert; that request's predictions are not this
    insert's."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite numbers requests in the writer; PostgreSQL counts what it stores")
    import sqlite3

    store = LogStore(engine)
    stored = _entry(1)
    store.insert([stored])
    other = sqlite3.connect(engine.url.database, timeout=30)
    fired: list[bool] = []

    @sa.event.listens_for(engine, "connect")
    def _other_writer_commits_at_begin(dbapi: Any, _: Any) -> None:
        def trace(statement: str) -> None:
            if statement.strip().upper().startswith("BEGIN") and not fired:
                fired.append(True)
                other.execute(
                    "INSERT INTO requests (request_id, received_at, endpoint, method,"
                    " status_code, latency_seconds, model_version, n_items, single, outputs,"
                    " seq) VALUES ('f' || hex(randomblob(15)), '2026-01-01 00:00:00.000000',"
                    " '/predict', 'POST', 200, 0, 'v1', 1000, 0, '[]',"
                    " (SELECT max(seq) + 1 FROM requests))"
                )
                other.commit()

        dbapi.set_trace_callback(trace)

    engine.dispose()
    written = store.insert([stored, _entry(2, items=2)])

    assert fired
    assert written == Written(1, 2)
    other.close()


def _sqlite_only(engine: sa.Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL takes a batch by one COPY")


def test_sqlite_stores_a_batch_many_rows_to_a_statement(engine: sa.Engine) -> None:
    """A statement per row (``executemany``) made the driver give up and take back the
    interpreter lock around every row, which under load cost the writer more than the
    rows themselves: 195 entries take five inserts (one that numbers itself, then 62,
    62, 62 and 8 rows)."""
    _sqlite_only(engine)
    import sqlite3

    from watchkeeper.db.engine import create_engine

    runs: list[int] = []  # rows of each insert statement run

    class Cursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
            if sql.lstrip().upper().startswith("INSERT"):
                runs.append(sql.count("),(") + 1)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, seq_of_parameters: Any, /) -> Cursor:
            rows = list(seq_of_parameters)
            runs.extend([1] * len(rows))  # a run of the statement per row
            return super().executemany(sql, rows)

    class Connection(sqlite3.Connection):
        def cursor(self, factory: Any = Cursor) -> Any:  # type: ignore[override]
            return super().cursor(factory)

    counted = create_engine(str(engine.url), connect_args={"timeout": 30, "factory": Connection})
    try:
        written = LogStore(counted).insert([journaled(log_entry(n, 1)) for n in range(195)])
    finally:
        counted.dispose()

    assert written == Written(195, 195)
    assert runs == [1, 62, 62, 62, 8]


@pytest.mark.parametrize("stored_first", [(), (0,), (5, 70, 130, 199), tuple(range(0, 200, 2))])
def test_sqlite_numbers_a_batch_in_order_past_every_stored_request(
    engine: sa.Engine, stored_first: tuple[int, ...]
) -> None:
    """Whatever part of a 200-entry batch is stored already (a replay), the rest is
    stored once, numbered in the batch's order past every request stored before, and
    counted; the stored ones keep their numbers."""
    _sqlite_only(engine)
    store = LogStore(engine)
    store.insert([journaled(log_entry(n, 1)) for n in (1000, 1001)])
    store.insert([journaled(log_entry(n, 1)) for n in stored_first])
    with engine.connect() as connection:
        before = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())

    written = store.insert([journaled(log_entry(n, 2)) for n in range(200)])

    new = [n for n in range(200) if n not in stored_first]
    assert written == Written(len(new), 2 * len(new))
    with engine.connect() as connection:
        after = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())
    assert len(after) == 202
    assert {rid: after[rid] for rid in before} == before
    numbers = [after[f"{n:032x}"] for n in new]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert numbers[0] > max(before.values())


def test_sqlite_writers_side_by_side_number_every_request_once_and_each_batch_in_order(
    engine: sa.Engine,
) -> None:
    """Two workers' writers store into one SQLite file at once, and a third replays
    the first one's batches as they come (a replayed journal): every request is stored
    and counted once, no two share a number, and each batch's rows are numbered in the
    batch's order (a writer numbers the rest of its batch from the highest number it
    reads under the write lock its first row took)."""
    _sqlite_only(engine)
    batches = {
        writer: [
            [log_entry(writer * 100_000 + b * 50 + i, 1) for i in range(50)] for b in range(20)
        ]
        for writer in (1, 2)
    }
    written: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def write(name: str, entries: list[list[LogEntry]]) -> None:
        own = create_engine(engine.url.render_as_string(hide_password=False))  # as a worker's
        try:
            store = LogStore(own)
            start.wait(timeout=60)
            written[name] = sum(store.insert([journaled(e) for e in b]).requests for b in entries)
        except BaseException as exc:  # asserted below, in the test's thread
            errors.append(exc)
        finally:
            own.dispose()

    threads = [
        threading.Thread(target=write, args=("first", batches[1])),
        threading.Thread(target=write, args=("second", batches[2])),
        threading.Thread(target=write, args=("replay", batches[1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert written["first"] + written["replay"] == 1000 and written["second"] == 1000
    with engine.connect() as connection:
        seq = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())
    assert len(seq) == 2000 and len(set(seq.values())) == 2000
    for batch in batches[1] + batches[2]:
        numbers = [seq[entry.request_id] for entry in batch]
        assert numbers == sorted(numbers), numbers


def _thread_written_bytes() -> int:
    """Bytes this thread has passed to ``write``-family calls (``wchar``)."""
    with open("/proc/thread-self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))


def test_sqlite_writes_a_batch_as_its_wal_frames_and_nothing_else(engine: sa.Engine) -> None:
    """A batch's transaction writes its pages to the WAL and nothing beside them. With
    ``ON CONFLICT DO NOTHING`` each multi-row statement could abort halfway (a NOT NULL
    column's ABORT), so SQLite copied the pages it changed that earlier statements of
    the transaction had written to a statement journal, a temporary file: 356 KB beside
    515 KB of WAL for 200 single records of Ames' size."""
    _sqlite_only(engine)
    store = LogStore(engine)
    store.hold()  # the writer's connection: opened, prepared and warm before measuring
    features = {f"feature_{i:02d}": [1000.5 + i] for i in range(70)}  # ~1.6 KB a row
    wal = engine.url.database + "-wal"
    try:
        for batch in range(4):
            entries = [
                journaled(log_entry(batch * 200 + n, 1, columns=features)) for n in range(200)
            ]
            wal_before = os.path.getsize(wal) if batch else 0
            written_before = _thread_written_bytes()
            assert store.insert(entries) == Written(200, 200)
            written = _thread_written_bytes() - written_before
            wal_growth = os.path.getsize(wal) - wal_before
            if batch:  # the first batch wrote the WAL's header and the file's first pages
                assert written == wal_growth, (
                    f"batch {batch}: {written - wal_growth} bytes beside the WAL"
                )
    finally:
        store.release()


def test_a_request_without_a_latency_is_refused_not_skipped(engine: sa.Engine) -> None:
    """SQLite stores a NaN float as NULL, and its insert skips a row that breaks a NOT
    NULL column rather than failing: the row would be counted as stored before and be
    lost. Such an entry is refused (the writer sets it aside, dead-lettered)."""
    store = LogStore(engine)
    with pytest.raises(ValueError, match="latency"):
        store.insert([log_entry(1, 1, latency_seconds=math.nan)])
    store.insert([log_entry(2, 1)])
    with engine.connect() as connection:
        assert connection.execute(sa.select(requests.c.request_id)).scalars().all() == [f"{2:032x}"]
