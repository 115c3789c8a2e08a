"""The input features of logged predictions, read from their requests.

An accepted request stores its features once, by column, in ``requests.features``; its
predictions (the ``predictions`` view) point at it by ``request_id`` and
``item_index``. Rows logged before migration 0004 carried their own features object;
migration 0010 folded those into their requests' columns, so the view's ``features``
is always NULL, and a row that carries a record of its own (a caller's) is taken as it
is. Readers (the monitor, retraining, the archive) get one record per prediction, a
category column stored as its values and codes read as its row values by the column's
type (:mod:`watchkeeper.feature_columns`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from watchkeeper.db.tables import requests

# Request ids per query: bounded statements whatever the window.
_CHUNK = 500


class PredictionRef(Protocol):
    request_id: str
    item_index: int
    features: dict[str, Any] | None


def _columns_by_request(
    connection: sa.Connection, request_ids: Iterable[str]
) -> dict[str, dict[str, list[Any]]]:
    ids = list(dict.fromkeys(request_ids))
    found: dict[str, dict[str, list[Any]]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(requests.c.request_id, requests.c.features).where(
            requests.c.request_id.in_(ids[start : start + _CHUNK])
        )
        found.update({row.request_id: row.features or {} for row in connection.execute(query)})
    return found


def feature_records(
    connection: sa.Connection, rows: Sequence[PredictionRef]
) -> list[dict[str, Any]]:
    """One features record per row, in order. A request's columns are read (and
    decoded) once however many of its predictions the rows hold."""
    columns = _columns_by_request(
        connection, (row.request_id for row in rows if row.features is None)
    )
    records = []
    for row in rows:
        if row.features is not None:
            records.append(row.features)
            continue
        by_name = columns.get(row.request_id, {})
        records.append({name: values[row.item_index] for name, values in by_name.items()})
    return records
