"""The ``predictions`` view reads each request's outputs as the tables before 0010 held
its rows: non-finite numbers compare and sort as numbers, not as their stored names."""

from __future__ import annotations

import math
from datetime import UTC

import pandas as pd
import pytest
import sqlalchemy as sa

from serving.log_store import LogStore
from tests.log_entries import log_entry
from watchkeeper.db.prediction_view import EARLIEST, LATEST
from watchkeeper.db.tables import predictions


def test_non_finite_scores_and_predictions_sort_as_numbers(engine: sa.Engine) -> None:
    values = [1.0, 2.0, math.nan, -math.inf, math.inf]
    scores = [0.1, 5.0, math.nan, -math.inf, math.inf]
    LogStore(engine).insert([log_entry(1, 5, values=values, ood=scores)])

    with engine.connect() as connection:
        ranked = connection.execute(
            sa.select(predictions.c.item_index, predictions.c.ood_score)
            .where(predictions.c.ood_score.is_not(None))
            .order_by(predictions.c.ood_score.desc(), predictions.c.seq)
        ).all()
        above_one = connection.execute(
            sa.select(predictions.c.item_index)
            .where(predictions.c.prediction > 1.5)
            .order_by(predictions.c.seq)
        ).scalars()
        read = dict(
            connection.execute(sa.select(predictions.c.item_index, predictions.c.prediction)).all()
        )

    finite_or_infinite = [(i, s) for i, s in ranked if not math.isnan(s)]
    # a NaN score ranks nowhere on SQLite (NULL, as it was stored before 0010); on
    # PostgreSQL, whose float8 holds it, it sorts above every number, as before 0010
    assert finite_or_infinite == [(4, math.inf), (1, 5.0), (0, 0.1), (3, -math.inf)]
    # a NaN prediction compares above every number on both (SQLite: the text NaN, as the
    # table before 0010 held it); an infinity as the number it is
    assert list(above_one) == [1, 2, 4]
    assert math.isnan(read[2]) and read[3] == -math.inf and read[4] == math.inf


STORED = {
    "150000.25": 150000.25,
    "-0.0001234": -0.0001234,
    "1.2345678901234567e-05": 1.2345678901234567e-05,
    "1e300": 1e300,
    "1.7976931348623157e308": 1.7976931348623157e308,
    "5e-324": 5e-324,
    '"NaN"': math.nan,
    '"Infinity"': math.inf,
    '"-Infinity"': -math.inf,
    '"2.5"': 2.5,  # a number's text reads as the number, as a cast read it
    # beyond a double's range: an infinity, or 0, as SQLite's JSON reads them
    "1e400": math.inf,
    "-1e400": -math.inf,
    "1e-400": 0.0,
    # an exponent of 5 digits, which PostgreSQL's numeric cannot hold: as 1e400, 1e-400
    "1e99999": math.inf,
    "-1e99999": -math.inf,
    "1e-99999": 0.0,
    "0e99999": 0.0,
    "1e00005": 100000.0,  # 5 digits, the number they say is not
    "1": 1.0,
    "0": 0.0,
    # over 300 characters (PostgreSQL read each as NULL): a number's value, an infinity
    # when its magnitude is beyond a double's, 0 when under it, as SQLite reads them
    "1" * 400: math.inf,
    "-" + "1" * 400: -math.inf,
    "0." + "1" * 400: 0.1111111111111111,
    "1.5" + "0" * 400: 1.5,
    "123.456" + "7" * 400 + "e2": 12345.677777777777,
    "1" + "0" * 400 + "e-400": 1.0,
    "0." + "0" * 400 + "1": 0.0,
    "0." + "0" * 400 + "15e402": 15.0,
    "1" + "0" * 20000 + "e-10000": math.inf,  # 1e10000: the exponent alone says 0
    "0." + "0" * 20000 + "1e20001": 1.0,
    # no number at all: NULL
    '"abc"': None,
    '""': None,
    '"Inf"': None,
    "null": None,
    "true": None,  # a JSON boolean is no number (SQLite's JSON reads it as 1)
    "false": None,
    "[1.0]": None,
    '{"a": 1}': None,
}
"""An output's first value as a writer may have stored it (JSON text), and what the view
reads of it."""


def test_any_stored_value_is_read_without_an_error(engine: sa.Engine) -> None:
    """A value no server writes (text, a number beyond a double's range: a buggy or
    foreign writer's) raised in PostgreSQL's cast, or SQLite's read, in every query over
    its row: the monitor failed every cycle on it. Both databases read each value the
    same: ``1e99999`` was NULL on PostgreSQL and an infinity on SQLite, ``true`` 1 on
    SQLite and NULL on PostgreSQL."""
    LogStore(engine).insert([log_entry(1, len(STORED))])
    outputs = ", ".join(f"[{stored}, 1.0, 2.0, {stored}]" for stored in STORED)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE requests SET outputs = :o"), {"o": f"[{outputs}]"})

    with engine.connect() as connection:
        read = connection.execute(
            sa.select(predictions.c.prediction, predictions.c.ood_score).order_by(predictions.c.seq)
        ).all()

    assert len(read) == len(STORED)
    sqlite = engine.dialect.name == "sqlite"
    for (stored, expected), (prediction, score) in zip(STORED.items(), read, strict=True):
        # SQLite reads a NaN score as no score, which ranks nowhere (see above)
        nan_score = sqlite and stored == '"NaN"'
        for value, wanted in ((prediction, expected), (score, None if nan_score else expected)):
            if wanted is None:
                assert value is None, stored
            elif math.isnan(wanted):
                assert value is not None and math.isnan(value), stored
            else:
                assert value == wanted, stored


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param("[[150000.0, 1.0", id="cut short"),
        pytest.param("not json", id="text"),
        pytest.param("", id="empty"),
        pytest.param('{"a": [150000.0, 1.0, 2.0]}', id="an object"),
        pytest.param("5", id="a number"),
        pytest.param('"x"', id="a string"),
        # PostgreSQL's parser runs out of stack before it finds the end
        pytest.param("[" * 100_000, id="nested too deep"),
    ],
)
def test_outputs_that_are_no_json_list_read_as_one_prediction_of_no_number(
    engine: sa.Engine, outputs: str
) -> None:
    """Outputs no server writes (a foreign writer's, a damaged row) raised in every query
    over the view that met their request (PostgreSQL's ``::json``, SQLite's
    ``json_each``): the monitor's cycle, the report, retraining's reads. They read as
    one prediction (item 0) with no number, on both databases; the requests around
    them as they are."""
    LogStore(engine).insert([log_entry(n, 1) for n in (1, 2, 3)])
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE requests SET outputs = :o WHERE request_id = :id"),
            {"o": outputs, "id": f"{2:032x}"},
        )

    with engine.connect() as connection:
        read = connection.execute(
            sa.select(
                predictions.c.request_id,
                predictions.c.item_index,
                predictions.c.prediction,
                predictions.c.lower,
                predictions.c.upper,
                predictions.c.ood_score,
                predictions.c.probabilities,
            ).order_by(predictions.c.seq)
        ).all()

    assert [tuple(row) for row in read] == [
        (f"{1:032x}", 0, 1.0, 0.0, 2.0, None, None),
        (f"{2:032x}", 0, None, None, None, None, None),
        (f"{3:032x}", 0, 3.0, 2.0, 4.0, None, None),
    ]


def test_an_item_that_is_no_list_reads_as_no_number(engine: sa.Engine) -> None:
    """A string item raised on SQLite (``json_extract`` of its unquoted text); any item
    that is no list reads as a prediction of no number, on both databases."""
    LogStore(engine).insert([log_entry(1, 4)])
    outputs = '["x", 5, {"a": 1.0}, [150000.0, 1.0, 2.0]]'
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE requests SET outputs = :o"), {"o": outputs})

    with engine.connect() as connection:
        read = connection.execute(
            sa.select(
                predictions.c.item_index, predictions.c.prediction, predictions.c.upper
            ).order_by(predictions.c.seq)
        ).all()

    assert [tuple(row) for row in read] == [
        (0, None, None),
        (1, None, None),
        (2, None, None),
        (3, 150000.0, 2.0),
    ]


def test_a_held_time_is_one_pandas_holds() -> None:
    """:func:`held_time`'s bounds are pandas' first and last microsecond."""
    assert pd.Timestamp(EARLIEST) == pd.Timestamp.min.ceil("us").tz_localize(UTC)
    assert pd.Timestamp(LATEST) == pd.Timestamp.max.floor("us").tz_localize(UTC)
