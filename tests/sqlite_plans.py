"""SQLite's query plans of the statements a reader runs, on a log as served: the server
and the monitor never run ``ANALYZE``, so there are no statistics to plan with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa


def plans_as_served(engine: sa.Engine, call: Callable[[], Any], containing: str) -> list[list[str]]:
    """The ``EXPLAIN QUERY PLAN`` lines of every statement holding ``containing`` that
    ``call`` runs, after checking that the log has no statistics."""
    with engine.connect() as connection:
        found = connection.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
        ).scalar()
    assert found == 0  # as served: no ANALYZE has run
    plans: list[list[str]] = []

    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if containing in statement:
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.append([row[3] for row in rows])

    watching_statements(engine, call, explain)
    return plans


def watching_statements(engine: sa.Engine, call: Callable[[], Any], explain: Any) -> None:
    """Run ``call`` with ``explain`` (a ``before_cursor_execute`` listener) seeing every
    statement it runs before the database does."""
    sa.event.listen(engine, "before_cursor_execute", explain)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)
