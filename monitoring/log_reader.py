"""Incremental reads of the prediction log.

Reads are keyed on ``predictions.seq`` past a persisted watermark, so a cycle costs
what is new, not what the log holds. A cycle notes the log's high mark, waits
``settle_seconds``, and reads up to that mark: on PostgreSQL a writer can commit a lower
``seq`` after another writer's higher one, and reading right up to the newest row
could step over it for good.

Features come back by column, one ``feature:<name>`` column each (:func:`features_of`
gives them as the model's frame). A request stores its batch's features once, by
column (:mod:`watchkeeper.db.features`); building one record per prediction out of
them cost ~0.1 ms a row (2 CPU-seconds per second of a 20,000 rows/s log), while
slicing each request's columns at its rows' item indices costs a few milliseconds a
request. Every row's features are still read: the data-quality rates count every row,
and a request's features are one value, so a sample of rows reads nearly every request
of a window anyway.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from watchkeeper.db.positions import read_position, write_position
from watchkeeper.db.tables import predictions, requests

WATERMARK = "windows"
FEATURE_PREFIX = "feature:"
_CHUNK = 500
"""Request ids per query: bounded statements whatever the window."""


def features_of(rows: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The rows' features as a frame with columns ``names`` in that order (a feature no
    row has: all missing), typed as a frame of records would be (the read typed them)."""
    columns = {
        name: rows[FEATURE_PREFIX + name].to_numpy()
        if FEATURE_PREFIX + name in rows
        else np.full(len(rows), None, dtype=object)
        for name in names
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)), copy=False)


def _feature_columns(connection: sa.Connection, rows: Sequence[Any]) -> dict[str, np.ndarray]:
    """Each feature's values for ``rows``, in order: sliced out of the request's
    columns by item index, or, for a row logged before migration 0004, its own record."""
    n = len(rows)
    by_request: dict[str, list[int]] = {}
    own: list[int] = []
    for position, row in enumerate(rows):
        if row.features is not None:
            own.append(position)
        else:
            by_request.setdefault(row.request_id, []).append(position)
    ids = list(by_request)
    stored: dict[str, dict[str, list[Any]]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(requests.c.request_id, requests.c.features).where(
            requests.c.request_id.in_(ids[start : start + _CHUNK])
        )
        stored.update({r.request_id: r.features or {} for r in connection.execute(query)})
    out: dict[str, np.ndarray] = {}

    def column(name: str) -> np.ndarray:
        if name not in out:
            out[name] = np.full(n, None, dtype=object)
        return out[name]

    for request_id, positions in by_request.items():
        at = np.asarray(positions)
        items = np.asarray([rows[p].item_index for p in positions])
        for name, values in stored.get(request_id, {}).items():
            column(name)[at] = np.asarray(values, dtype=object)[items]
    for position in own:
        for name, value in rows[position].features.items():
            column(name)[position] = value
    return out


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

    def read(self, after: int, up_to: int, *, limit: int | None = None) -> pd.DataFrame:
        """Accepted predictions with ``after < seq <= up_to``, oldest first; the first
        ``limit`` of them if given."""
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
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            features = _feature_columns(connection, rows)
        self.rows_read += len(rows)
        names = [c.name for c in query.selected_columns]
        skip = {"request_id", "item_index", "features"}
        # by column: a frame built from row tuples cost more than the reading itself
        frame = pd.DataFrame(
            {name: [row[i] for row in rows] for i, name in enumerate(names) if name not in skip}
        )
        # typed once here (numbers as floats), as a frame of records would be; object
        # columns stop pandas guessing at dates in every one
        columns = pd.DataFrame(
            {FEATURE_PREFIX + name: values for name, values in features.items()},
            index=frame.index,
            dtype=object,
        ).infer_objects()
        return pd.concat([frame, columns], axis=1)
