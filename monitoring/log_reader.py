"""Incremental reads of the prediction log.

Reads are keyed on ``predictions.seq`` past a persisted watermark, so a cycle costs
what is new, not what the log holds. A cycle notes the log's high mark, waits
``settle_seconds``, and reads up to that mark: on PostgreSQL a writer can commit a lower
``seq`` after another writer's higher one, and reading right up to the newest row
could step over it for good.
"""

from __future__ import annotations

import time

import pandas as pd
import sqlalchemy as sa

from watchkeeper.db.features import feature_records
from watchkeeper.db.positions import read_position, write_position
from watchkeeper.db.tables import predictions

WATERMARK = "windows"


class LogReader:
    def __init__(self, engine: sa.Engine, *, settle_seconds: float = 5.0) -> None:
        self.engine = engine
        self.settle_seconds = settle_seconds
        self.rows_read = 0

    def watermark(self, name: str = WATERMARK) -> int:
        with self.engine.connect() as connection:
            return read_position(connection, name) or 0

    def set_watermark(self, value: int, name: str = WATERMARK) -> None:
        with self.engine.begin() as connection:
            write_position(connection, name, value)

    def high_mark(self) -> int:
        """The newest ``seq`` in the log now. Read up to it only ``settle_seconds``
        later (:meth:`settled_high_mark`)."""
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(predictions.c.seq))).scalar() or 0)

    def settled_high_mark(self) -> int:
        mark = self.high_mark()
        if self.settle_seconds > 0:
            time.sleep(self.settle_seconds)
        return mark

    def read(self, after: int, up_to: int) -> pd.DataFrame:
        """Accepted predictions with ``after < seq <= up_to``, oldest first."""
        query = (
            sa.select(
                predictions.c.seq,
                predictions.c.prediction_id,
                predictions.c.request_id,
                predictions.c.item_index,
                predictions.c.created_at,
                predictions.c.model_version,
                predictions.c.features,
                predictions.c.prediction,
                predictions.c.lower,
                predictions.c.upper,
                predictions.c.ood_score,  # as the serving worker scored it; NULL if not
                predictions.c.probabilities,  # classifiers: as served, in classes order
            )
            .where(predictions.c.seq > after, predictions.c.seq <= up_to)
            .order_by(predictions.c.seq)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            features = feature_records(connection, rows)
        self.rows_read += len(rows)
        frame = pd.DataFrame(rows, columns=[c.name for c in query.selected_columns])
        frame["features"] = features
        return frame.drop(columns=["request_id", "item_index"])
