"""Daily time partitions of the log's big table, ``requests``, on PostgreSQL.

``requests`` is range-partitioned on ``received_at`` (migration 0007), one partition
per UTC day, named ``requests_pYYYYMMDD``, plus a ``requests_default`` partition that
takes any row whose day has no partition yet (a writer is never refused a row). A
request holds its predictions (``requests.outputs``, migration 0010), so retention
drops a day that is entirely past it, predictions and all, as one ``DROP TABLE``
(:mod:`watchkeeper.db.retention`), instead of deleting its rows one by one. (Before
0010 ``predictions`` was partitioned the same way, on ``created_at``.)

Partitions are created :data:`DAYS_AHEAD` days ahead (:func:`ensure_partitions`) by the
migration, by every prune, and by the monitor's retention thread whatever the prune
interval (:class:`PartitionsAhead`: at its start, at each new UTC day and every
:data:`CHECK_INTERVAL`). Were the prune alone to make them, a deployment with pruning
off (``WATCHKEEPER_RETENTION_PRUNE_INTERVAL=0``) would run out of days a week after
its migration and write every row into the default partition from then on. Creators
may run at once (the monitor, a ``watchkeeper prune``, two monitors during a rolling
update): each creation locks the partitioned table first, so they take turns, and a
day another creator made meanwhile is left as it is. A day created late, whose rows
are already in the default partition, gets them moved into its new partition in the
same transaction.
A dropped day's long-kept requests (those holding a recent label) go back into the
default partition (:func:`drop_keeping`), so the default partition holds them too.
Creating a partition scans the default one for rows of its day; it has no CHECK
constraint to skip that scan (one would refuse a writer's row of a day without
partition): measured here with 200,000 rows in each default partition, creating a day
of both tables of the time took 52–83 ms, once a day in steady state.

Why the keys look the way they do: every unique key of a partitioned table must hold
its partition key, so on PostgreSQL ``requests`` is unique on ``(request_id,
received_at)``. The writer's ``ON CONFLICT DO NOTHING`` still stores a replayed batch
once: a replay carries the journaled entry's own time, so it meets its first copy in
the same partition. Reads by ``seq`` (the monitor's watermark) or by ``request_id``
alone cannot skip partitions, but each partition answers them from its index.

DDL here waits at most :data:`LOCK_TIMEOUT` for its locks: a ``CREATE`` or ``DROP``
queued behind a long reader would hold up every writer queued behind it. A partition
not created for that reason is created at a later check; meanwhile its rows go to the
default partition. The monitor's retention thread counts such a check as a failed one
(:class:`PartitionsMissing`), as it counts an error, and checks again after
:data:`RETRY_INTERVAL`. SQLite has no partitions: every function here is a no-op there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic

import sqlalchemy as sa

log = logging.getLogger(__name__)

PARTITIONED: dict[str, str] = {"requests": "received_at"}
"""The partitioned tables and their partition key (the time retention ages rows by)."""
DAYS_AHEAD = 7
"""Days after today that always have their partition (a week of checks may fail
before a row lands in the default partition)."""
CHECK_INTERVAL = 3600.0
"""Seconds between two checks of the days ahead by :class:`PartitionsAhead` (besides
one at each new UTC day): a check is two catalogue reads when nothing is missing."""
LOCK_TIMEOUT = 5.0
"""Seconds DDL here waits for its locks before giving up (``lock_timeout``)."""
RETRY_INTERVAL = 600.0
"""Seconds before :class:`PartitionsAhead` checks again after a check that left a day
ahead without partition (its lock not granted in time): well within the hour over which
``WatchkeeperLogPartitionsFailing`` looks for a failed check, so that a lock refused for
hours counts in every hour of it (retried hourly, the failures would come a little more
than an hour apart, and each gap would restart the alert's 6 hours); not every minute,
since each try holds the table's writers up to :data:`LOCK_TIMEOUT` behind its queued
lock."""
_LOCK_NOT_AVAILABLE = "55P03"
# A partition's creation meeting another process's work: a writer's row of its day
# committed into the default partition after the check for such rows (check
# violation), or another prune creating the same day (duplicate table).
_CHECK_VIOLATION = "23514"
_DUPLICATE_TABLE = "42P07"


def _sqlstate(exc: sa.exc.DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def lock_not_granted(exc: sa.exc.DBAPIError) -> bool:
    """Whether ``exc`` is DDL giving up on its lock after :data:`LOCK_TIMEOUT`."""
    return _sqlstate(exc) == _LOCK_NOT_AVAILABLE


@dataclass(frozen=True, order=True)
class Partition:
    """One day's partition of a partitioned table."""

    day: date
    table: str

    @property
    def name(self) -> str:
        return partition_name(self.table, self.day)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def day_start(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC day."""
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def _literal(moment: datetime) -> str:
    # DDL takes no bound parameters; the value is ours, never a client's.
    return f"'{moment.astimezone(UTC).isoformat()}'"


def is_partitioned(connection: sa.Connection, table: str) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    return bool(
        connection.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table t"
                " JOIN pg_class c ON c.oid = t.partrelid"
                " WHERE c.relname = :table AND pg_table_is_visible(c.oid))"
            ),
            {"table": table},
        ).scalar()
    )


def partitions(connection: sa.Connection, table: str) -> list[Partition]:
    """The day partitions of ``table``, oldest first (the default one left out, and
    any partition not named as this module names them)."""
    names = connection.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname = :table AND pg_table_is_visible(p.oid)"
        ),
        {"table": table},
    ).scalars()
    pattern = re.compile(rf"{re.escape(table)}_p(\d{{8}})")
    days = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            days.append(Partition(datetime.strptime(match[1], "%Y%m%d").date(), table))
    return sorted(days)


def _set_lock_timeout(connection: sa.Connection, seconds: float = LOCK_TIMEOUT) -> None:
    # At least 1 ms: PostgreSQL reads 0 as "wait for ever".
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, round(seconds * 1000))}ms'")


def create_default(connection: sa.Connection, table: str) -> None:
    connection.exec_driver_sql(f"CREATE TABLE {default_name(table)} PARTITION OF {table} DEFAULT")


def create_partition(
    connection: sa.Connection, partition: Partition, key: str | None = None
) -> int:
    """Create ``partition``; rows of its day already in the default partition move
    into it (the count is returned). Run inside a transaction. ``key``: the partition
    key, if the table is not one of :data:`PARTITIONED` (a migration's).

    The partitioned table is locked first, as the ``CREATE`` would lock it anyway: no
    writer's row of the day can then reach the default partition between the check
    for such rows and the new partition (the ``CREATE`` would fail), and no writer's
    ``COPY`` that routed by the partitions as they were can meet the default
    partition's narrowed bounds (``ATTACH`` alone does not wait for writers: a
    writer's batch failed with a check violation)."""
    table, key = partition.table, key or PARTITIONED[partition.table]
    connection.exec_driver_sql(f"LOCK TABLE ONLY {table} IN ACCESS EXCLUSIVE MODE")
    bounds = f"FROM ({_literal(partition.start)}) TO ({_literal(partition.end)})"
    in_day = f"{key} >= {_literal(partition.start)} AND {key} < {_literal(partition.end)}"
    default = default_name(table)
    waiting = connection.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {in_day})"
    ).scalar()
    if not waiting:
        connection.exec_driver_sql(
            f"CREATE TABLE {partition.name} PARTITION OF {table} FOR VALUES {bounds}"
        )
        return 0
    # PostgreSQL refuses a partition whose rows sit in the default one: build the
    # table, move the rows, then attach it (which builds its indexes).
    connection.exec_driver_sql(
        f"CREATE TABLE {partition.name} (LIKE {table} INCLUDING DEFAULTS INCLUDING COMMENTS)"
    )
    moved = connection.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {default} WHERE {in_day} RETURNING *)"
        f" INSERT INTO {partition.name} SELECT * FROM moved"
    ).rowcount
    connection.exec_driver_sql(
        f"ALTER TABLE {table} ATTACH PARTITION {partition.name} FOR VALUES {bounds}"
    )
    return moved


def days_to_cover(today: date, days_ahead: int = DAYS_AHEAD) -> list[date]:
    return [today + timedelta(days=n) for n in range(days_ahead + 1)]


@dataclass(frozen=True)
class PartitionsCheck:
    """What one check of the days ahead did (:func:`check_partitions`)."""

    created: tuple[Partition, ...] = ()
    missing: tuple[Partition, ...] = ()
    """Days from today to the days ahead still without partition: the one whose
    creation gave up, and those it left untried. Any of them, the farthest day too,
    makes the check a failed one (:class:`PartitionsMissing` says why)."""
    reason: str = ""
    """Why the first of :attr:`missing` was not created (the database's message)."""


class PartitionsMissing(Exception):
    """A check left days ahead without partition: :meth:`PartitionsAhead.keep` raises
    it so that the caller counts a failed check, as for an error. Every day from today
    to :data:`DAYS_AHEAD` counts, even day +7 while days +1 to +6 are there: the count
    feeds ``WatchkeeperLogPartitionsFailing``, whose purpose is that the days created
    ahead do not run out, and a lock that keeps refusing day +7 refuses each next day
    too. Counting only the days needed soon would tell when few of them are left
    instead of 7; a single refusal is a blip that the alert's 6 hours wait out."""

    def __init__(self, check: PartitionsCheck) -> None:
        self.check = check
        names = ", ".join(p.name for p in check.missing)
        super().__init__(f"{names} not created: {check.reason}")


def ensure_partitions(
    engine: sa.Engine,
    now: datetime,
    days_ahead: int = DAYS_AHEAD,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
) -> list[Partition]:
    """Create the partitions missing from today to ``days_ahead`` days ahead; the
    partitions created. A day left without partition is logged and left to the next
    call (:func:`check_partitions` tells which)."""
    return list(check_partitions(engine, now, days_ahead, lock_timeout=lock_timeout).created)


def check_partitions(
    engine: sa.Engine,
    now: datetime,
    days_ahead: int = DAYS_AHEAD,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
) -> PartitionsCheck:
    """Create the partitions missing from today to ``days_ahead`` days ahead, each in
    its own short transaction waiting at most ``lock_timeout`` seconds for its lock. A
    lock not granted in time, or a writer's row of the day committed into the default
    partition meanwhile, leaves that day and the rest to the next call (the default
    partition keeps their rows; the check lists them as missing); a partition another
    creator made meanwhile is left as it is (creators take turns on the partitioned
    table's lock, and the later one meets the name taken). Raises what the database
    raises otherwise."""
    if engine.dialect.name != "postgresql":
        return PartitionsCheck()
    today = now.astimezone(UTC).date()
    wanted: list[Partition] = []
    with engine.connect() as connection:
        for table in PARTITIONED:
            if not is_partitioned(connection, table):
                continue
            present = {p.day for p in partitions(connection, table)}
            days = days_to_cover(today, days_ahead)
            wanted += [Partition(day, table) for day in days if day not in present]
    created: list[Partition] = []
    for n, partition in enumerate(wanted):
        try:
            with engine.begin() as connection:
                _set_lock_timeout(connection, lock_timeout)
                moved = create_partition(connection, partition)
        except sa.exc.DBAPIError as exc:
            if _sqlstate(exc) == _DUPLICATE_TABLE:
                continue  # another creator made it meanwhile
            if _sqlstate(exc) not in (_LOCK_NOT_AVAILABLE, _CHECK_VIOLATION):
                raise
            # Nothing was changed (one transaction); the day's rows wait in the
            # default partition, which the next prune moves.
            log.warning("partition %s not created now: %s", partition.name, exc.orig)
            reason = str(exc.orig).strip()
            return PartitionsCheck(tuple(created), tuple(wanted[n:]), reason)
        if moved:
            log.info("partition %s: %d rows moved from the default one", partition.name, moved)
        created.append(partition)
    return PartitionsCheck(tuple(created))


class PartitionsAhead:
    """Keeps today's partition and :data:`DAYS_AHEAD` days ahead created, for a process
    that runs all the time (the monitor's retention thread): :meth:`keep` is called
    often and checks at most every ``interval`` seconds, and at once when the UTC day
    of ``clock`` changes; after a check that left a day without partition, again after
    ``retry_interval`` seconds (if sooner). Independent of the prune, which may be off."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        days_ahead: int = DAYS_AHEAD,
        interval: float = CHECK_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        lock_timeout: float = LOCK_TIMEOUT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.days_ahead = days_ahead
        self.interval = interval
        self.retry_interval = retry_interval
        self.lock_timeout = lock_timeout
        self._clock = clock
        self._checked_day: date | None = None
        self._next_check = 0.0

    def due(self) -> bool:
        today = self._clock().astimezone(UTC).date()
        return today != self._checked_day or monotonic() >= self._next_check

    def keep(self) -> list[Partition]:
        """Create the days missing if a check is due; the partitions created. Raises
        :class:`PartitionsMissing` when a day is left without partition (checked again
        after ``retry_interval``), and what the database raises (checked again at the
        next call): the caller counts either as a failed check."""
        if not self.due():
            return []
        now = self._clock()
        check = check_partitions(self.engine, now, self.days_ahead, lock_timeout=self.lock_timeout)
        # A day dropped by hand meanwhile is made at the next interval.
        self._checked_day = now.astimezone(UTC).date()
        wait = min(self.interval, self.retry_interval) if check.missing else self.interval
        self._next_check = monotonic() + wait
        for partition in check.created:
            log.info("partition %s created ahead", partition.name)
        if check.missing:
            raise PartitionsMissing(check)
        return list(check.created)


def lock_for_drop(connection: sa.Connection, partition: Partition) -> None:
    """Take the lock that dropping ``partition`` takes anyway (waiting at most
    :data:`LOCK_TIMEOUT`), before the caller checks its rows may go: from then on no
    writer or reader of the partitioned table runs until the transaction ends. The
    partitioned table first, as writers and readers lock it before its partitions."""
    _set_lock_timeout(connection)
    connection.exec_driver_sql(f"LOCK TABLE ONLY {partition.table} IN ACCESS EXCLUSIVE MODE")


def drop_partition(connection: sa.Connection, partition: Partition) -> None:
    """Drop ``partition`` with its rows (the caller checked they may go)."""
    _set_lock_timeout(connection)
    connection.exec_driver_sql(f"DROP TABLE {partition.name}")


@dataclass(frozen=True)
class Dropped:
    """What dropping a day of ``requests`` removed (:func:`drop_keeping`)."""

    rows: int
    """Requests."""
    items: int
    """The predictions they held."""


_CONTENTS = "SELECT count(*), coalesce(sum(n_items) FILTER (WHERE outputs IS NOT NULL), 0)"


def drop_keeping(
    connection: sa.Connection, partition: Partition, keep: str, params: dict[str, object]
) -> Dropped:
    """Drop ``partition`` of ``requests`` but for its rows matching ``keep`` (an SQL
    condition on the partition's rows, aliased ``p``), which go back into the
    partitioned table with every column unchanged; what was removed. No day partition
    covers their time any more, so they land in the default partition: a day holding a
    few long-kept requests (labelled ones) is still dropped rather than emptied row by
    row, and the log keeps no partition per day of the labelled retention. Their keys
    (``seq``, the id and the time) are unchanged, so a replay still meets them. Run
    inside the transaction that holds :func:`lock_for_drop`'s lock."""
    columns = ", ".join(
        connection.exec_driver_sql(
            "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid ="
            f" '{partition.table}'::regclass AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum"
        ).scalars()
    )
    rows, items = connection.exec_driver_sql(f"{_CONTENTS} FROM {partition.name}").one()
    aside = "wk_kept_rows"
    connection.execute(
        sa.text(
            f"CREATE TEMPORARY TABLE {aside} ON COMMIT DROP AS"
            f" SELECT {columns} FROM {partition.name} p WHERE {keep}"
        ),
        params,
    )
    kept_rows, kept_items = connection.exec_driver_sql(f"{_CONTENTS} FROM {aside}").one()
    drop_partition(connection, partition)
    connection.exec_driver_sql(
        f"INSERT INTO {partition.table} ({columns}) SELECT {columns} FROM {aside}"
    )
    connection.exec_driver_sql(f"DROP TABLE {aside}")
    return Dropped(int(rows) - int(kept_rows), int(items) - int(kept_items))


def days_holding(connection: sa.Connection, relation: str, key: str) -> Iterable[date]:
    """The UTC days of ``key`` in ``relation`` (a full scan)."""
    return connection.exec_driver_sql(
        f"SELECT DISTINCT (({key} AT TIME ZONE 'UTC')::date) FROM {relation}"
    ).scalars()
