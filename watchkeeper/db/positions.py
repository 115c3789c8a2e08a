"""Named positions in the log kept in ``monitor_state``: the monitor's watermarks and
the pruner's resume points. One writer of the table's rows, whoever owns a name."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from watchkeeper.db.tables import monitor_state


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
