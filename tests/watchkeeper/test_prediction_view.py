"""The ``predictions`` view reads each request's outputs as the tables before 0010 held
its rows: non-finite numbers compare and sort as numbers, not as their stored names."""

from __future__ import annotations

import math

import sqlalchemy as sa

from serving.log_store import LogStore
from tests.log_entries import log_entry
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
