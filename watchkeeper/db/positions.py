"""Named positions in the log kept in ``monitor_state``: the monitor's watermarks and
the pruner's resume points. One writer of the table's rows, whoever owns a name."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from watchkeeper.db.tables import monitor_state, retrain_runs


def to_micros(moment: datetime) -> int:
    """A moment as a position: integer microseconds since the epoch."""
    return int(moment.timestamp() * 1_000_000)


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def read_position(connection: sa.Connection, name: str) -> int | None:
    """The stored position ``name``, or None when none is stored yet."""
    value = connection.execute(
        sa.select(monitor_state.c.watermark).where(monitor_state.c.name == name)
    ).scalar()
    return None if value is None else int(value)


def write_position(
    connection: sa.Connection, name: str, value: int, now: datetime | None = None
) -> None:
    """Store ``value`` as position ``name`` (update, or insert the first time)."""
    now = now or datetime.now(UTC)
    updated = connection.execute(
        monitor_state.update()
        .where(monitor_state.c.name == name)
        .values(watermark=value, updated_at=now)
    ).rowcount
    if not updated:
        connection.execute(
            monitor_state.insert().values(name=name, watermark=value, updated_at=now)
        )


PRUNED_RUNS = "pruned_runs."
"""Prefix of the positions counting retraining runs the prune deleted, by outcome."""


def carry_pruned_runs(connection: sa.Connection, ids: sa.ScalarSelect[int]) -> None:
    """Before the runs ``ids`` are deleted, add their outcomes to the totals kept for
    pruned runs: ``watchkeeper_retrain_runs_total`` counts rows, and a counter must
    never go down (``increase()`` would read a drop as a reset and fire alerts)."""
    by_outcome = connection.execute(
        sa.select(retrain_runs.c.outcome, sa.func.count())
        .where(retrain_runs.c.id.in_(ids))
        .group_by(retrain_runs.c.outcome)
    ).all()
    for outcome, n in by_outcome:
        name = PRUNED_RUNS + str(outcome)
        write_position(connection, name, (read_position(connection, name) or 0) + int(n))


def pruned_runs(connection: sa.Connection) -> dict[str, int]:
    """Retraining runs the prune deleted, by outcome."""
    rows = connection.execute(
        sa.select(monitor_state.c.name, monitor_state.c.watermark).where(
            monitor_state.c.name.startswith(PRUNED_RUNS)
        )
    ).all()
    return {name.removeprefix(PRUNED_RUNS): int(value) for name, value in rows}
