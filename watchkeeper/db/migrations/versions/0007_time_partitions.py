"""Time partitions: ``predictions`` and ``requests`` range-partitioned by day on PostgreSQL.

Each table is rebuilt as a partitioned table (``watchkeeper.db.partitions``): renamed
aside, a partitioned copy of its columns created, one partition made for every UTC day
that holds rows within the raw retention (``WATCHKEEPER_RETENTION_DAYS``, read through
``Settings``; 0, kept for ever: every day that holds rows) and for today and the days
ahead, plus a default partition, every row copied across (rows of older days into the
default partition: the first prune deletes them as it would have without partitions,
and a long log does not get a partition per day of its past, each one more lock for
every reader that reads across them), the old table dropped, and the keys and indexes
built again — keys that now include the partition key, as PostgreSQL requires.
``predictions.seq`` keeps its sequence, so ``seq`` goes on where it was and the
monitor's watermark stays valid.

The copy takes time and disk in proportion to the tables (prune them first); it runs
in the upgrade's one transaction, so an interrupted upgrade leaves the old tables.
The downgrade rebuilds plain tables the same way.

SQLite has no partitions: nothing changes there (a prune deletes in batches and hands
the pages back, ``watchkeeper.db.retention``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alembic import op

from watchkeeper.db.partitions import (
    Partition,
    create_default,
    create_partition,
    day_start,
    days_holding,
    days_to_cover,
)
from watchkeeper.settings import Settings

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


@dataclass(frozen=True)
class _Keys:
    table: str
    key: str
    """The partition key."""
    primary: tuple[str, ...]
    unique: dict[str, tuple[str, ...]]
    indexes: dict[str, str]


_TABLES = (
    _Keys(
        "predictions",
        "created_at",
        ("seq",),
        {"predictions_prediction_id_key": ("prediction_id",)},
        {
            "ix_predictions_request_id": "request_id",
            "ix_predictions_created_at": "created_at",
            "ix_predictions_model_version": "model_version",
        },
    ),
    _Keys(
        "requests", "received_at", ("request_id",), {}, {"ix_requests_received_at": "received_at"}
    ),
)
_SEQUENCE = "predictions_seq_seq"


def _rebuild(keys: _Keys, partitioned: bool) -> None:
    connection = op.get_bind()
    table, aside = keys.table, f"{keys.table}_rebuilt"
    run = connection.exec_driver_sql
    run(f"ALTER TABLE {table} RENAME TO {aside}")
    by = f" PARTITION BY RANGE ({keys.key})" if partitioned else ""
    run(f"CREATE TABLE {table} (LIKE {aside} INCLUDING DEFAULTS INCLUDING COMMENTS){by}")
    if table == "predictions":  # the sequence would go with the old table
        run(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY {table}.seq")
    if partitioned:
        create_default(connection, table)
        now = datetime.now(UTC)
        days = set(days_holding(connection, aside, keys.key))
        raw_days = Settings().retention.days
        if raw_days:  # older days are pruned row by row from the default partition
            oldest = day_start(now - timedelta(days=raw_days)).date()
            days = {d for d in days if d >= oldest}
        days |= set(days_to_cover(now.date()))
        for day in sorted(days):
            create_partition(connection, Partition(day, table), keys.key)
    run(f"INSERT INTO {table} SELECT * FROM {aside}")
    run(f"DROP TABLE {aside}")  # before the keys: their index names are taken until then
    extra = (keys.key,) if partitioned else ()
    run(
        f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey"
        f" PRIMARY KEY ({', '.join(keys.primary + extra)})"
    )
    for name, columns in keys.unique.items():
        run(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({', '.join(columns + extra)})")
    for name, column in keys.indexes.items():
        run(f"CREATE INDEX {name} ON {table} ({column})")
    run(f"ANALYZE {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for keys in _TABLES:
        _rebuild(keys, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for keys in _TABLES:
        _rebuild(keys, partitioned=False)
