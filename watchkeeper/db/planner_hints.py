"""Query hints for SQLite's planner, which plans the prediction log without statistics.

The server and the monitor never run ``ANALYZE``, so SQLite guesses: an equality on an
indexed column looks more selective than any range, and an index that yields the
``ORDER BY`` looks cheaper than sorting. Where that guess walks the whole log (all of a
version's predictions for a 5-hour period; every prediction in time order to find a
few labelled ones), a reader keeps the index out with SQLite's unary ``+``, the plan
SQLite chooses itself with statistics. Other databases get the plain column:
PostgreSQL has statistics and keeps its plans.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal


class Unindexed(sa.sql.expression.ColumnElement[Any]):
    """``column`` as a value SQLite's planner cannot read from an index (``+column``);
    the same rows and order on every database."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: sa.ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(Unindexed)
def _plain(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(Unindexed, "sqlite")
def _sqlite(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.column, **kw))


def unindexed(column: sa.ColumnElement[Any]) -> Unindexed:
    return Unindexed(column)
