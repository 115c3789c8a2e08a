"""Prediction ids read back into the request that holds them.

Serving names a single record's prediction after its request (``<request id>``) and a
batch item after its request and position (``<request id>.<n>``;
``serving.log_entry.prediction_id``; request ids hold no dot). Since each request's
predictions live in its own ``requests`` row (migration 0010), a reader that has
prediction ids (labels, archived rows) finds them by the request's key and checks
that the request holds that item, instead of having the database expand requests'
predictions (the ``predictions`` view) to compare ids. A batch's items are read from
its ``outputs``: a request logged before migration 0010 whose other predictions a prune
had deleted holds ``null`` where they were (``n_items`` counting those it holds), and
the view skips those.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from watchkeeper.db.prediction_seq import ITEMS_PER_REQUEST, prediction_seq
from watchkeeper.db.prediction_view import held_time
from watchkeeper.db.tables import requests

# Request ids per statement: bounded statements (and SQLite variables) however many.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PredictionKey:
    """Where a prediction id points: its request, and the item in it (a single
    record's is item 0)."""

    request_id: str
    item_index: int
    single: bool


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """What a reader needs of a stored request to place its predictions."""

    request_id: str
    received_at: datetime | None
    """None where the log holds a time no reader can (a foreign writer's year 9999 or
    ``infinity``, which psycopg cannot read at all): reading it raised, and every read
    of its labels (the monitor's every cycle) failed until the row was deleted."""
    seq: int
    single: bool
    model_version: str | None
    items: tuple[bool, ...]
    """Per item index, whether the request holds a prediction there."""
    features: dict[str, list[Any]] | None = None

    def holds(self, key: PredictionKey) -> bool:
        """Whether the prediction ``key`` names is one of this request's."""
        if key.single != self.single:
            return False
        return key.item_index < len(self.items) and self.items[key.item_index]

    def position(self, key: PredictionKey) -> int:
        """The prediction's ``seq`` in the ``predictions`` view."""
        return prediction_seq(self.seq, key.item_index)


# What :func:`parse_prediction_id` takes, as a JSON Schema pattern (the OpenAPI
# document's): a request id without '.' or NUL, then maybe '.' and an item index below
# ITEMS_PER_REQUEST (2**20 = 1,048,576) written as serving writes it.
PREDICTION_ID_PATTERN = (
    "^[^.\\u0000]+(\\.(0|[1-9][0-9]{0,5}|10[0-3][0-9]{4}|104[0-7][0-9]{3}"
    "|1048[0-4][0-9]{2}|10485[0-6][0-9]|104857[0-5]))?$"
)


def parse_prediction_id(prediction_id: str) -> PredictionKey | None:
    """The request and item ``prediction_id`` names, or None when serving never makes
    such an id (an item index that is not a plain decimal, or beyond what one request
    holds)."""
    request_id, dot, index = prediction_id.partition(".")
    if not request_id:
        return None
    if not dot:
        return PredictionKey(request_id, 0, single=True)
    # Exactly as serving writes it: "7", never "07", "+7" or " 7", which int() takes.
    if not index.isascii() or not index.isdigit() or (index[0] == "0" and index != "0"):
        return None
    item = int(index)
    if item >= ITEMS_PER_REQUEST:
        return None
    return PredictionKey(request_id, item, single=False)


def logged_requests(
    connection: sa.Connection, request_ids: Iterable[str], *, features: bool = False
) -> dict[str, LoggedRequest]:
    """The accepted requests among ``request_ids`` that the log holds, by id, found by
    the primary key (with their features by column when ``features``)."""
    ids = list(dict.fromkeys(request_ids))
    columns = [
        requests.c.request_id,
        held_time(requests.c.received_at).label("received_at"),
        requests.c.seq,
        requests.c.single,
        requests.c.n_items,
        requests.c.model_version,
        # as text: orjson decodes it faster than the column type's reader would
        sa.type_coerce(requests.c.outputs, sa.Text).label("outputs"),
    ]
    if features:
        columns.append(requests.c.features)
    found: dict[str, LoggedRequest] = {}
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(*columns).where(
            requests.c.request_id.in_(ids[start : start + _CHUNK]),
            requests.c.outputs.is_not(None),  # refused requests hold no prediction
        )
        for row in connection.execute(query):
            found[row.request_id] = LoggedRequest(
                request_id=row.request_id,
                received_at=row.received_at,
                seq=int(row.seq),
                single=bool(row.single),
                model_version=row.model_version,
                items=_held_items(row.outputs, int(row.n_items)),
                features=row.features if features else None,
            )
    return found


def _held_items(outputs: str, n_items: int) -> tuple[bool, ...]:
    """Which item indexes hold a prediction: all ``n_items`` but in a request with gaps,
    which has more items than predictions. Outputs that are no JSON list (no server
    writes them) hold item 0, the one prediction of no number the view reads of them."""
    try:
        items = orjson.loads(outputs)
    except orjson.JSONDecodeError:
        try:  # a number beyond a double's range (1e400): JSON orjson refuses
            items = json.loads(outputs)
        except ValueError:
            return (True,)
    if not isinstance(items, list):
        return (True,)
    if len(items) == n_items:
        return (True,) * n_items
    return tuple(item is not None for item in items)


def logged_ids(connection: sa.Connection, prediction_ids: Iterable[str]) -> set[str]:
    """Those of ``prediction_ids`` whose prediction the log holds."""
    keys = {pid: parse_prediction_id(pid) for pid in prediction_ids}
    stored = logged_requests(connection, (k.request_id for k in keys.values() if k is not None))
    return {
        pid
        for pid, key in keys.items()
        if key is not None and key.request_id in stored and stored[key.request_id].holds(key)
    }
