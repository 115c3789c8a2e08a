"""The report's rows furthest out of distribution, on SQLite and PostgreSQL logs: the
top scored predictions of the period across requests, a NaN score nowhere."""

from __future__ import annotations

import math
from datetime import timedelta

import sqlalchemy as sa

from monitoring.report import log_rows
from monitoring.report.records import Period
from serving.log_store import LogStore
from tests.log_entries import T0, log_entry


def test_the_top_rows_come_from_every_request_that_holds_one_and_nan_ranks_nowhere(
    engine: sa.Engine,
) -> None:
    LogStore(engine).insert(
        [
            log_entry(1, 3, ood=[10.0, 9.0, 8.0]),
            log_entry(2, 1, ood=[9.5]),
            log_entry(3, 2, ood=[math.nan, 1.0]),
            log_entry(4, 2),  # not scored
            log_entry(5, 1, ood=[math.inf], model_version="v2"),
            log_entry(6, 1, ood=[-math.inf], model_version="v2"),
        ]
    )

    def top(limit: int, period: Period | None = None) -> list[tuple[str, float]]:
        rows = log_rows.most_out_of_distribution(engine, period or Period(), limit)
        return [(row.prediction_id, row.ood_score) for row in rows]

    one, two, three = (f"{n:032x}" for n in (1, 2, 3))
    five, six = f"{5:032x}", f"{6:032x}"
    assert top(4) == [(five, math.inf), (f"{one}.0", 10.0), (two, 9.5), (f"{one}.1", 9.0)]
    assert top(10) == [
        (five, math.inf),
        (f"{one}.0", 10.0),
        (two, 9.5),
        (f"{one}.1", 9.0),
        (f"{one}.2", 8.0),
        (f"{three}.1", 1.0),
        (six, -math.inf),
    ]
    assert top(10, Period(model_version="v1"))[0] == (f"{one}.0", 10.0)
    assert top(2, Period(since=T0 + timedelta(seconds=2))) == [(five, math.inf), (two, 9.5)]
    assert top(5, Period(model_version="v3")) == []
