"""The report's reads of a period on SQLite as served (no statistics: the server and the
monitor never run ``ANALYZE``): a period with a start is read from the requests' time
index, never from every request a version ever logged; predictions are counted from
the requests' item counts, without expanding them; a window's rows are read by the
requests' ``seq``; and the counts and rows are unchanged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring.report import log_rows, versions
from monitoring.report.records import Period
from serving.log_store import LogStore
from tests.log_entries import T0, log_entry
from tests.sqlite_plans import plans_as_served
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.prediction_seq import prediction_seq
from watchkeeper.db.tables import predictions

SINCE, UNTIL = T0 + timedelta(seconds=20), T0 + timedelta(seconds=45)
PERIODS = {
    "since and until, v1": Period(SINCE, UNTIL, model_version="v1"),
    "since, v1": Period(SINCE, model_version="v1"),
    "since, all versions": Period(SINCE),
    "since and until, v2": Period(SINCE, UNTIL, model_version="v2"),
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """60 requests of 3 predictions, one a second, of two versions, OOD-scored."""
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    store = LogStore(engine)
    for n in range(60):
        version = "v2" if n % 4 == 0 else "v1"
        ood = [float((n * 37 + i * 11) % 23) for i in range(3)]
        store.insert([log_entry(n, items=3, model_version=version, ood=ood)])
    yield engine
    engine.dispose()


def _plans(engine: sa.Engine, call: Any, table: str = "predictions") -> list[list[str]]:
    """The plan of every statement on ``table`` that ``call`` runs."""
    return plans_as_served(engine, call, f"FROM {table}")


@pytest.mark.parametrize("name", PERIODS)
@pytest.mark.parametrize("reader", ["count by version", "most out of distribution"])
def test_a_period_with_a_start_is_read_from_the_time_index(
    engine: sa.Engine, name: str, reader: str
) -> None:
    period = PERIODS[name]
    if reader == "count by version":
        plans = _plans(engine, lambda: versions.predictions_by_version(engine, period), "requests")
        [plan] = plans
        assert plan[0].startswith("SEARCH requests USING INDEX ix_requests_received_at"), plan
        assert len(plan) == 1 or plan[1:] == ["USE TEMP B-TREE FOR GROUP BY"], plan
    else:

        def call() -> object:
            return log_rows.most_out_of_distribution(engine, period, 5)

        [plan] = plans_as_served(engine, call, "max_ood_score")
        assert plan[0].startswith("SEARCH requests USING INDEX ix_requests_received_at"), plan
        [expanded] = _plans(engine, call)
        assert expanded[0] == "SEARCH r USING INDEX ix_requests_seq (seq=?)", expanded
    assert not any("ix_requests_model_version" in line for line in plan), plan


def test_the_most_out_of_distribution_of_the_whole_log_are_ranked_from_the_seq_index_alone(
    engine: sa.Engine,
) -> None:
    """The requests that can hold the top rows are ranked from the ``seq`` index, which
    holds each request's score beside its ``seq`` (migration 0013), without reading a
    request's row; only they are expanded. A version's are read by the version's index
    (its requests sorted), as a period's by the time index."""

    def call(version: str | None) -> object:
        return log_rows.most_out_of_distribution(engine, Period(model_version=version), 5)

    [plan] = plans_as_served(engine, lambda: call(None), "max_ood_score")
    # the sort keeps the top ones as they come (it stops at the limit)
    assert plan == [
        "SCAN requests USING COVERING INDEX ix_requests_seq",
        "USE TEMP B-TREE FOR ORDER BY",
    ], plan
    [expanded] = _plans(engine, lambda: call(None))
    assert expanded[0] == "SEARCH r USING INDEX ix_requests_seq (seq=?)", expanded
    [plan] = plans_as_served(engine, lambda: call("v2"), "max_ood_score")
    assert plan[0] == "SEARCH requests USING INDEX ix_requests_model_version (model_version=?)"


def test_a_windows_features_are_read_by_the_requests_seq(engine: sa.Engine) -> None:
    """Not every request of the window's version (its index, SQLite's guess)."""
    first, last = prediction_seq(5, 0), prediction_seq(9, 2)

    [plan] = _plans(engine, lambda: log_rows.window_features(engine, "v1", first, last))

    assert plan[0] == "SEARCH r USING INDEX ix_requests_seq (seq>? AND seq<?)", plan
    assert not any("ix_requests_model_version" in line for line in plan), plan


def _in(period: Period, row: Any) -> bool:
    return (
        (period.since is None or row.created_at >= period.since)
        and (period.until is None or row.created_at <= period.until)
        and (period.model_version is None or row.model_version == period.model_version)
    )


@pytest.mark.parametrize("name", [*PERIODS, "whole log, v2", "whole log"])
def test_the_counts_and_rows_of_a_period_are_unchanged(engine: sa.Engine, name: str) -> None:
    period = PERIODS.get(name) or Period(model_version="v2" if "v2" in name else None)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                predictions.c.seq,
                predictions.c.created_at,
                predictions.c.model_version,
                predictions.c.ood_score,
            )
        ).all()
    chosen = [r for r in rows if _in(period, r)]
    assert 0 < len(chosen) < len(rows) or period == Period()
    counted = versions.predictions_by_version(engine, period)
    assert counted == dict(Counter(r.model_version for r in chosen))
    assert list(counted) == sorted(counted)
    top = log_rows.most_out_of_distribution(engine, period, 7)
    expected = sorted(chosen, key=lambda r: (-r.ood_score, r.seq))[:7]
    assert [(r.seq, r.ood_score) for r in top] == [(r.seq, r.ood_score) for r in expected]
