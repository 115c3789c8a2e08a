"""The retraining read of labelled predictions on SQLite as served: without statistics
(the server and monitor never run ``ANALYZE``) it must start from the labels' range and
find their requests by key, never expand every request's predictions, and return the
rows the view joined to the labels holds, in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from retrain import data
from serving.log_store import LogStore
from tests.log_entries import T0, log_entry
from tests.sqlite_plans import plans_as_served
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.planner_hints import unindexed
from watchkeeper.db.tables import feedback, predictions
from watchkeeper.labelled_rows import LabelledRows
from watchkeeper.schema import FeatureSchema

SCHEMA = FeatureSchema.derive(pd.DataFrame({"area": [1.0, 2.0], "y": [1.0, 2.0]}), "y")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A log whose time order is not its ``seq`` order, with ties in time, batches and
    single records, some predictions labelled (some labels too old for the window, some
    without a value), and labels of ids the log does not hold."""
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    store = LogStore(engine)
    for n in range(1, 41):
        # requests out of time order, every fifth at the same moment as the one before
        when = T0 + timedelta(seconds=(n * 7) % 41 - (n % 5 == 0))
        store.insert([log_entry(n, items=1 if n % 3 == 0 else 3, when=when)])
    with engine.begin() as connection:
        ids = connection.execute(sa.select(predictions.c.prediction_id)).scalars().all()
        connection.execute(
            feedback.insert(),
            [
                {
                    "prediction_id": pid,
                    "actual": None if i % 7 == 0 else float(i),
                    "received_at": T0 + timedelta(days=1 if i % 5 else -30),
                }
                for i, pid in enumerate(ids)
                if i % 2 == 0
            ]
            # a batch's request id alone, an item past its last, a single record's id
            # with an index, an id never issued
            + [
                {"prediction_id": pid, "actual": 1.0, "received_at": T0 + timedelta(days=1)}
                for pid in (f"{1:032x}", f"{1:032x}.3", f"{3:032x}.0", "never")
            ],
        )
    yield engine
    engine.dispose()


def test_sqlite_without_statistics_reads_the_labels_range_then_requests_by_key(
    engine: sa.Engine,
) -> None:
    since = T0

    def read() -> LabelledRows:
        return data.labelled_predictions(engine, SCHEMA, since=since)

    [labels] = plans_as_served(engine, read, "FROM feedback")
    [by_key] = plans_as_served(engine, read, "FROM requests")
    assert labels == ["SEARCH feedback USING INDEX ix_feedback_received_at (received_at>?)"]
    assert by_key == ["SEARCH requests USING INDEX sqlite_autoindex_requests_1 (request_id=?)"]


def test_labelled_predictions_are_the_same_rows_oldest_prediction_first(
    engine: sa.Engine,
) -> None:
    since = T0
    rows = data.labelled_predictions(engine, SCHEMA, since=since)
    with engine.connect() as connection:  # the labelled rows of the predictions view
        expected = connection.execute(
            sa.select(predictions.c.created_at, predictions.c.item_index, feedback.c.actual)
            .join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
            .where(feedback.c.received_at >= since, feedback.c.actual.is_not(None))
            .order_by(predictions.c.created_at, predictions.c.seq)
        ).all()
    assert 10 < len(expected) < 60
    assert list(rows.predicted_at) == [r.created_at for r in expected]
    assert list(rows.frame["y"]) == [r.actual for r in expected]
    assert list(rows.predicted_at) == sorted(rows.predicted_at)


def test_postgresql_gets_the_statement_unchanged() -> None:
    query = sa.select(predictions.c.seq).order_by(
        unindexed(predictions.c.created_at), predictions.c.seq
    )
    sql = str(query.compile(dialect=postgresql.dialect()))
    assert sql.endswith("ORDER BY predictions.created_at, predictions.seq")
    sqlite_sql = str(query.compile(dialect=sqlite.dialect()))
    assert sqlite_sql.endswith("ORDER BY +predictions.created_at, predictions.seq")
