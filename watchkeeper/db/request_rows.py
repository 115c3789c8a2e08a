"""A request's rows in ``predictions``: the condition that finds them through an index.

On PostgreSQL ``predictions.request_id`` has its index. On SQLite it has none since
migration 0009 (one B-tree less for every logged row, ~10 % of the writer's CPU for a
1,000-row request): a request's predictions are found through the unique prediction id
index instead. Their ids are the request id itself (a single record) or
``<request id>.<index>`` (batch items, ``serving.log_entry.prediction_id``), so in byte
order (SQLite's ``BINARY`` collation) they lie in ``[request_id, request_id || '/')``
(``'/'`` is the byte after ``'.'``). Another request's id may fall in that range too (one
that extends this id by a byte below ``'/'``), so ``request_id`` is checked on each row
found — as a pair of inequalities: for an equality on a column without an index,
SQLite may build an automatic index over the whole table for the statement.

PostgreSQL keeps the index: its planner misjudges such a range when its bounds come
from another table (a correlated ``EXISTS``), and on 262,000 predictions chose to read
every one of them for a dry-run prune's count (3.7 s instead of 51 ms); ranges under a
linguistic collation would also need the ids in ``"C"``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from watchkeeper.db.tables import predictions

_AFTER_ITEMS = "/"
"""The byte after ``.``, which separates a request id from an item index."""


def of_request(request_id: sa.ColumnElement[Any] | str, dialect: str) -> sa.ColumnElement[bool]:
    """The condition on ``predictions`` for the rows of ``request_id`` (a value or a
    column of another table, e.g. ``requests.c.request_id`` in a correlated query), in
    the form ``dialect``'s indexes serve."""
    owner = predictions.c.request_id
    if dialect != "sqlite":
        return owner == request_id
    ids = predictions.c.prediction_id
    return sa.and_(
        ids >= request_id,
        ids < request_id + _AFTER_ITEMS,
        owner >= request_id,
        owner <= request_id,
    )
