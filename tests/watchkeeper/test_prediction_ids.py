"""Prediction ids read back into their requests: which ids the log holds, found by the
request's key (never by expanding requests' predictions), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from serving.log_entry import prediction_id
from serving.log_store import LogStore
from tests.log_entries import T0, log_entry
from tests.sqlite_plans import plans_as_served
from watchkeeper.db.prediction_seq import ITEMS_PER_REQUEST
from watchkeeper.db.tables import predictions, requests
from watchkeeper.prediction_ids import (
    PREDICTION_ID_PATTERN,
    PredictionKey,
    logged_ids,
    logged_requests,
    parse_prediction_id,
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("abc", PredictionKey("abc", 0, single=True)),
        ("abc.0", PredictionKey("abc", 0, single=False)),
        ("abc.17", PredictionKey("abc", 17, single=False)),
        (f"abc.{ITEMS_PER_REQUEST - 1}", PredictionKey("abc", ITEMS_PER_REQUEST - 1, False)),
    ],
)
def test_an_id_serving_makes_names_its_request_and_item(text: str, key: PredictionKey) -> None:
    assert parse_prediction_id(text) == key


@pytest.mark.parametrize(
    "text", ["abc.", "abc.07", "abc.+7", "abc. 7", "abc.-1", "abc.1.2", "abc.\u0667", ".1", ""]
)
def test_an_id_serving_never_makes_names_nothing(text: str) -> None:
    """``int()`` would read ``07``, ``+7``, `` 7`` and an Arabic-Indic digit; serving
    writes none of them, so the view holds no such id."""
    assert parse_prediction_id(text) is None
    assert parse_prediction_id(f"abc.{ITEMS_PER_REQUEST}") is None


def _log(engine: sa.Engine) -> None:
    store = LogStore(engine)
    store.insert(
        [
            log_entry(1, items=3),  # a batch
            log_entry(2, items=1),  # a single record
            log_entry(3, items=1, single=False),  # a batch of one
            log_entry(4, items=0, status_code=400, columns={}, model_version=None),  # refused
        ]
    )


def test_the_ids_the_log_holds_are_those_the_view_holds(engine: sa.Engine) -> None:
    """Every form of id, present or not: exactly the ids ``predictions`` holds."""
    _log(engine)
    candidates = [
        *(prediction_id(f"{n:032x}", i, single) for n in (1, 2, 3, 4, 5) for i in range(4)
          for single in (True, False)),
        f"{1:032x}.01",
        f"{1:032x}.{ITEMS_PER_REQUEST + 1}",
        "nothing",
    ]  # fmt: skip
    with engine.connect() as connection:
        found = logged_ids(connection, candidates)
        in_view = set(
            connection.execute(
                sa.select(predictions.c.prediction_id).where(
                    predictions.c.prediction_id.in_(candidates)
                )
            ).scalars()
        )
    assert found == in_view
    assert found == {
        *(f"{1:032x}.{i}" for i in range(3)),
        f"{2:032x}",
        f"{3:032x}.0",
    }


def test_a_batch_with_gaps_holds_only_its_remaining_items(engine: sa.Engine) -> None:
    """A request logged before migration 0010 whose other predictions a prune deleted
    holds ``null`` where they were (``n_items`` counts those it holds): its remaining
    items are found at their index, the gone ones are not, as the view has them."""
    item = [1.0, 0.0, 2.0]
    with engine.begin() as connection:
        connection.execute(
            requests.insert().values(
                request_id="gaps",
                received_at=T0,
                endpoint="/predict",
                method="POST",
                status_code=200,
                latency_seconds=0.01,
                model_version="v1",
                n_items=2,
                single=False,
                outputs=[None, item, None, item],
                features={"area": [None, 1.0, None, 3.0]},
            )
        )
    candidates = [f"gaps.{i}" for i in range(5)]
    with engine.connect() as connection:
        found = logged_ids(connection, candidates)
        in_view = set(
            connection.execute(
                sa.select(predictions.c.prediction_id).where(predictions.c.request_id == "gaps")
            ).scalars()
        )
    assert found == {"gaps.1", "gaps.3"}
    assert found == in_view


@pytest.mark.parametrize("outputs", ["[[1.0, 0.0", '{"a": 1}', "[1e400]"])
def test_outputs_that_are_no_json_list_hold_item_0_as_the_view_has_it(
    engine: sa.Engine, outputs: str
) -> None:
    """Outputs no server writes raised in orjson (labels for their request failed the
    read that met them: the monitor's cycle, a label's lookup); they hold what the
    view reads of them."""
    LogStore(engine).insert([log_entry(1, 3)])
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE requests SET outputs = :o"), {"o": outputs})
    candidates = [f"{1:032x}.{i}" for i in range(3)]
    with engine.connect() as connection:
        found = logged_ids(connection, candidates)
        in_view = set(connection.execute(sa.select(predictions.c.prediction_id)).scalars())
    assert found == in_view == {f"{1:032x}.0"}


def test_a_request_is_read_with_its_position_and_features(engine: sa.Engine) -> None:
    _log(engine)
    with engine.connect() as connection:
        found = logged_requests(connection, [f"{n:032x}" for n in (1, 4)], features=True)
        seq = connection.execute(
            sa.select(predictions.c.seq).where(predictions.c.prediction_id == f"{1:032x}.2")
        ).scalar_one()
    assert set(found) == {f"{1:032x}"}  # the refused request holds no prediction
    request = found[f"{1:032x}"]
    assert (request.items, request.single) == ((True, True, True), False)
    assert request.features == {"area": [100.0, 101.0, 102.0]}
    assert request.position(PredictionKey(request.request_id, 2, single=False)) == seq


def test_sqlite_finds_the_requests_by_their_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import upgrade

    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    _log(engine)

    def read() -> set[str]:
        with engine.connect() as connection:
            return logged_ids(connection, [f"{1:032x}.1", f"{2:032x}"])

    try:
        [plan] = plans_as_served(engine, read, "FROM requests")
    finally:
        engine.dispose()
    assert plan == ["SEARCH requests USING INDEX sqlite_autoindex_requests_1 (request_id=?)"], plan


@pytest.mark.postgres
def test_postgresql_finds_the_requests_by_their_key(postgres_engine: sa.Engine) -> None:
    """With statistics of a log of thousands of requests, the primary key of the
    partition holding them answers, not a scan of its requests."""
    store = LogStore(postgres_engine)
    for first in range(1, 3001, 500):
        store.insert([log_entry(n, items=2) for n in range(first, first + 500)])
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM requests" in statement:
            rows = cursor.connection.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in rows))

    with postgres_engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE requests")
        sa.event.listen(postgres_engine, "before_cursor_execute", explain)
        try:
            assert logged_ids(connection, [f"{7:032x}.1", f"{9:032x}.5"]) == {f"{7:032x}.1"}
        finally:
            sa.event.remove(postgres_engine, "before_cursor_execute", explain)
    [plan] = plans
    # the log's rows are in the default partition (their day has none); the empty day
    # partitions may be scanned, at no cost
    assert "Index Scan using requests_default_pkey" in plan, plan
    assert not [line for line in plan.splitlines() if "Seq Scan on requests_default" in line]


def test_more_ids_than_one_statement_takes_are_all_looked_up(engine: sa.Engine) -> None:
    """Ids are looked up in bounded statements: those past the first are found too."""
    LogStore(engine).insert([log_entry(n, items=1) for n in range(1, 1201)])
    wanted = [f"{n:032x}" for n in range(1, 1301)]
    with engine.connect() as connection:
        found = logged_ids(connection, wanted)
    assert found == set(wanted[:1200])


@pytest.mark.parametrize(
    "value",
    ["a", "a.0", "a.7", "a.01", "a.+1", "a.", ".1", "a..1", "a.b", "a.٣", "a.999999"]
    + [f"a.{n}" for n in (1_000_000, 1_039_999, 1_040_000, 1_047_999, 1_048_000)]
    + [f"a.{n}" for n in (1_048_499, 1_048_500, 1_048_569, 1_048_570)]
    + [f"a.{ITEMS_PER_REQUEST - 1}", f"a.{ITEMS_PER_REQUEST}", f"a.{10 * ITEMS_PER_REQUEST}"],
)
def test_the_documented_id_pattern_takes_what_the_parser_takes(value: str) -> None:
    """The OpenAPI document's pattern for a feedback id, written for 2**20 items."""
    assert ITEMS_PER_REQUEST == 1 << 20
    assert bool(re.match(PREDICTION_ID_PATTERN, value)) == (parse_prediction_id(value) is not None)
