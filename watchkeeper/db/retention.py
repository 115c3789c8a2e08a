"""Retention of the prediction log: what is deleted when, in bounded batches.

Three retention periods (``watchkeeper.settings``):

- **raw** rows, ``requests`` with the predictions they hold (``requests.outputs``;
  ``predictions`` is a view over them, migration 0010): kept ``retention_days``;
- **labelled**: a request holding a labelled prediction (one with a ``feedback`` row)
  is kept whole, with its labels, until every label of it is older than the labelled
  retention, which is never shorter than the retraining window (the retraining job
  selects labels by arrival time) nor than the raw retention;
- **history**, ``window_results``, ``retrain_requests`` and ``retrain_runs``: small,
  kept ``retention_history_days``.

A request the monitor has not read all of (a prediction past its ``windows``
watermark, a position: :mod:`watchkeeper.db.prediction_seq`) is never deleted, nor is
the newest request: SQLite numbers a request one past the highest ``seq`` stored, so a
deleted newest one's number, below the watermark, would be handed out again and never
read.

On PostgreSQL ``requests`` is partitioned by day (:mod:`watchkeeper.db.partitions`)
and a prune first drops each day partition that may go whole — constant time, however
many rows it holds: a day wholly past the raw retention whose every request the
monitor has read (their predictions archived first, if an archive is set). The
requests of the day holding a label within the labelled retention outlive its drop:
in the drop's transaction they are copied aside and put back into the table, where
they land in the default partition with every column (and ``seq``) unchanged — labels
arrive every day, so otherwise no day of the labelled retention could be dropped. The
row-by-row passes below then handle what partitions cannot: the default partition
(those long-kept requests, deleted once their labels age out, and rows of days without
partition) and days a drop could not take (a long reader). On partitioned tables the
raw retention is applied by whole UTC days: the raw pass stops at the start of the day
that straddles the cut-off, so that day is dropped whole once it is wholly past it,
instead of being emptied row by row by the hourly prunes before (raw rows are kept up
to one day longer than ``retention_days`` there; SQLite keeps the retention to the
row). Every prune also creates the partitions of the days ahead (and so does the
monitor's retention thread with pruning off:
:class:`~watchkeeper.db.partitions.PartitionsAhead`).

The raw pass goes through requests in ``seq`` order (its index) from a resume point kept
in ``monitor_state`` (requests behind it are deleted, or kept for a recent label and
left to the labelled pass), and stops at the first request not old enough yet or not
read by the monitor, so a prune costs what became old since the last one, not what the
log holds. It steps over requests dated after now (a server's clock ahead), however
many in a row: they go with the first old request stored after them, in batches like
any other, the resume point waiting before them until it comes and a second position
keeping how far the pass read past it, so no prune reads them twice. One holding a
recent label is left to the labelled pass, which takes it as old by its place, at or
before the resume point, not by its date. Rejected requests logged before migration
0010 have no ``seq``: they go by time, found through the same index. Each batch (at most
``batch_rows`` requests and, but for one larger request, predictions) is its own short
transaction and the pruner then pauses as long as the batch took, so that the serving
writers get the database at least half the time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from itertools import takewhile
from typing import Any

import sqlalchemy as sa

from watchkeeper.db import partitions as parts
from watchkeeper.db.archive import Archive
from watchkeeper.db.positions import (
    carry_pruned_runs,
    read_position,
    write_position,
)
from watchkeeper.db.prediction_seq import item_index_of, request_seq_of
from watchkeeper.db.prediction_view import request_id_of
from watchkeeper.db.prune_lock import one_prune_at_a_time
from watchkeeper.db.tables import (
    feedback,
    predictions,
    requests,
    retrain_requests,
    retrain_runs,
    window_results,
)
from watchkeeper.settings import Settings

log = logging.getLogger(__name__)

# The monitor's read watermark, a prediction's position (monitoring.log_reader.WATERMARK).
MONITOR_WATERMARK = "windows"
# Where the raw pass resumes: a request's ``seq``.
REQUESTS_POSITION = "retention_requests"
# Free SQLite bytes handed back per step, as pages of the file's size (4 KiB in logs
# made before 8 KiB became the default): one short write lock per step.
_VACUUM_BYTES = 8 << 20
# Longest pause between two batches, however long a batch took.
_MAX_PAUSE = 1.0
# Retraining requests and runs still in flight are never deleted.
_OPEN_REQUEST_STATES = ("pending", "running")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept; ``None`` keeps it for ever."""

    raw_days: float | None
    labelled_days: float | None
    history_days: float | None
    batch_rows: int
    archive_url: str = ""
    """Where rows are archived (Parquet) before they are deleted; empty: nowhere."""
    without_monitor: bool = False
    """Prune predictions whether or not a monitor has read them: for a log no monitor
    runs on. Otherwise a log without the monitor's watermark loses no prediction (a
    monitor started on a 60-day-old log must read it before the prune may)."""
    whole_days: bool = False
    """The log is partitioned by day (PostgreSQL): raw rows go by whole UTC days, so
    they may be up to a day older than ``raw_days`` (:meth:`limits`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        raw = settings.retention.days or None
        labelled = None
        if raw is not None:
            labelled = max(
                settings.retention.labelled_days or 0.0, settings.retrain.window_days, raw
            )
        return cls(
            raw_days=raw,
            labelled_days=labelled,
            history_days=settings.retention.history_days or None,
            batch_rows=settings.retention.batch_rows,
            archive_url=settings.retention.archive,
            whole_days=settings.storage.database_url.startswith("postgresql"),
        )

    def limits(self) -> dict[str, float]:
        """Seconds each table's oldest row may reach (tables kept for ever left out),
        measured as :mod:`watchkeeper.db.log_stats` measures the oldest row. Raw rows
        kept by whole days may be a day older (the overdue alert would fire nightly
        between a day's end passing the cut-off and the next prune)."""
        raw = self.raw_days
        if raw is not None and self.whole_days:
            raw += 1
        days = {
            "predictions": raw,
            "requests": raw,
            "feedback": self.labelled_days,
            "window_results": self.history_days,
            "retrain_requests": self.history_days,
            "retrain_runs": self.history_days,
        }
        return {table: d * 86400.0 for table, d in days.items() if d is not None}


@dataclass(frozen=True)
class TablePruned:
    """Rows removed from one table (or that a dry run would remove)."""

    table: str
    rows: int
    rule: str


@dataclass(frozen=True)
class PruneReport:
    started_at: datetime
    finished_at: datetime
    dry_run: bool
    tables: tuple[TablePruned, ...]
    freed_bytes: int | None = None
    """SQLite: bytes of free pages handed back to the file system (None: not done)."""
    partitions_dropped: tuple[str, ...] = ()
    """PostgreSQL: day partitions dropped whole (a dry run: that would be); their rows
    are counted in ``tables``."""
    partitions_created: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        width = max(len(t.table) for t in self.tables)
        lines = [f"{t.table:<{width}}  {verb} {t.rows:>12,} rows  ({t.rule})" for t in self.tables]
        if self.partitions_dropped:
            verb = "would drop" if self.dry_run else "dropped"
            names = ", ".join(self.partitions_dropped)
            lines.append(f"{'(partitions)':<{width}}  {verb} {names}")
        if self.freed_bytes is not None:
            lines.append(f"{'(file)':<{width}}  returned {self.freed_bytes:,} bytes of free pages")
        return lines


def _recent_label(r: sa.FromClause, labelled: datetime) -> sa.ColumnElement[bool]:
    """Whether the request ``r`` (a row of ``requests``) holds a label within the
    labelled retention, one request at a time: its predictions are read from its own
    row through the view (the condition on its key and time reaches the index and, on
    PostgreSQL, its partition), each label found by its key. A scalar subquery rather
    than ``EXISTS``, which PostgreSQL may instead run once over the whole log and hash."""
    first = (
        sa.select(sa.literal(1))
        .select_from(
            predictions.join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
        )
        .where(
            predictions.c.request_id == r.c.request_id,
            predictions.c.created_at == r.c.received_at,
            feedback.c.received_at >= labelled,
        )
        .limit(1)
        .scalar_subquery()
    )
    return first.is_not(None)


# The requests of a dropped day partition (aliased ``p``) that go back into the table:
# those with a label within the labelled retention. The day's requests are many, so the
# labels are read once rather than each request's: a label's request id is its
# prediction id up to the dot (``<request id>.<index>``, a single record's is its
# request id).
_KEPT_REQUESTS = (
    "p.outputs IS NOT NULL AND p.request_id IN (SELECT split_part(f.prediction_id, '.', 1)"
    " FROM feedback f WHERE f.received_at >= :labelled)"
)


class _Kept(Enum):
    """Why a day partition the prune chose was not dropped."""

    LOCKED = "its lock was not granted in time"
    CHANGED = "its rows changed since they were checked"


@dataclass
class _Cutoffs:
    raw: datetime | None
    labelled: datetime | None
    history: datetime | None
    newest: int
    """``seq`` of the newest request: it and any later one are kept."""
    unread: int
    """``seq`` of the first request the monitor has not read all of: it and later ones
    holding predictions are kept."""
    now: datetime
    """The prune's time: a request dated after it was stamped by a clock running ahead."""

    def may_go(self, seq: int | None, accepted: bool) -> bool:
        """Whether a request (its ``seq``, whether it holds predictions) is neither the
        newest nor unread."""
        if seq is None:
            return True
        return seq < self.newest and (not accepted or seq < self.unread)


@dataclass
class _Counts:
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + max(n, 0)


@dataclass(frozen=True)
class _Request:
    """A request the passes consider."""

    request_id: str
    received_at: datetime
    seq: int | None
    accepted: bool
    n_items: int


def _items(rows: Sequence[_Request]) -> int:
    return sum(r.n_items for r in rows if r.accepted)


def _leading(rows: Sequence[Any], most: int) -> int:
    """How many of ``rows`` (requests with ``n_items``) to take for a batch of at most
    ``most`` predictions (at least one request)."""
    total = 0
    for n, row in enumerate(rows):
        total += row.n_items
        if total > most and n:
            return n
    return len(rows)


def _after(
    time_column: sa.Column[Any], key_column: sa.Column[Any], after: tuple[datetime, str]
) -> sa.ColumnElement[bool]:
    """Keyset condition ``(time, key) > after``, spelt out so that the values are bound
    with the columns' types (SQLite stores times as text in one format)."""
    moment, key = after
    return sa.or_(time_column > moment, sa.and_(time_column == moment, key_column > key))


def _old_or_ahead(
    rows: Sequence[tuple[_Request, bool]], cut: _Cutoffs
) -> list[tuple[_Request, bool]]:
    """The leading run of ``rows`` the raw pass reads on through: requests the monitor
    has read, and old or dated ahead (a young one, or an unread one, ends it)."""
    assert cut.raw is not None
    leading = []
    for row in rows:
        request = row[0]
        if not cut.may_go(request.seq, request.accepted):
            break
        if cut.raw <= request.received_at <= cut.now:
            break
        leading.append(row)
    return leading


class Pruner:
    """Applies a :class:`RetentionPolicy` to a database."""

    def __init__(
        self,
        engine: sa.Engine,
        policy: RetentionPolicy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pause: bool = True,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self._clock = clock
        self._pause = pause
        self.archive = Archive(policy.archive_url) if policy.archive_url else None

    def run(self, *, dry_run: bool = False) -> PruneReport:
        if dry_run:  # reads and counts only
            return self._run(dry_run=True)
        with one_prune_at_a_time(self.engine):
            return self._run(dry_run=False)

    def _run(self, *, dry_run: bool) -> PruneReport:
        started = self._clock()
        cutoffs = self._cutoffs(started)
        counts = _Counts()
        created = (
            () if dry_run else tuple(p.name for p in parts.ensure_partitions(self.engine, started))
        )
        dropped: tuple[str, ...] = ()
        if cutoffs.raw is not None:
            dropped = self._drop_partitions(cutoffs, counts, dry_run)
            passed = self._raw(cutoffs, counts, dry_run)
            self._unnumbered(cutoffs, counts, dry_run)
            self._aged_labels(cutoffs, counts, dry_run, passed)
        if cutoffs.history is not None:
            self._history(cutoffs.history, counts, dry_run)
        freed = None if dry_run else self._return_free_pages()
        rules = self._rules()
        tables = tuple(
            TablePruned(table, counts.rows.get(table, 0), rule) for table, rule in rules.items()
        )
        return PruneReport(started, self._clock(), dry_run, tables, freed, dropped, created)

    def _rules(self) -> dict[str, str]:
        def days(value: float | None) -> str:
            return "kept for ever" if value is None else f"older than {value:g} days"

        p = self.policy
        return {
            "predictions": "with their request",
            "requests": f"{days(p.raw_days)}; holding a label, once every label is "
            f"{days(p.labelled_days).removeprefix('kept ')}",
            "feedback": f"labels {days(p.labelled_days)}",
            "window_results": days(p.history_days),
            "retrain_requests": f"finished, {days(p.history_days)}",
            "retrain_runs": f"finished, {days(p.history_days)}",
        }

    def _cutoffs(self, now: datetime) -> _Cutoffs:
        p = self.policy

        def before(d: float | None) -> datetime | None:
            return None if d is None else now - timedelta(days=d)

        with self.engine.connect() as connection:
            newest = int(connection.execute(sa.select(sa.func.max(requests.c.seq))).scalar() or 0)
            watermark = read_position(connection, MONITOR_WATERMARK)
            by_day = parts.is_partitioned(connection, "requests")
            if p.without_monitor:
                unread = newest
            elif watermark is None:  # no watermark yet: nothing is read, nothing goes
                unread = 0
            else:
                unread = self._first_unread(connection, watermark)
        raw = before(p.raw_days)
        if raw is not None and by_day:
            # Partitioned: raw rows go by whole UTC days, so that the day straddling the
            # cut-off is dropped whole once past it rather than emptied row by row by
            # the hourly prunes before (rows are kept up to a day longer).
            raw = parts.day_start(raw)
        return _Cutoffs(raw, before(p.labelled_days), before(p.history_days), newest, unread, now)

    @staticmethod
    def _first_unread(connection: sa.Connection, watermark: int) -> int:
        """The ``seq`` of the first request holding a prediction past ``watermark``: the
        watermark's own request unless the watermark is at its last item."""
        request_seq = request_seq_of(watermark)
        last = connection.execute(
            sa.select(sa.func.max(predictions.c.item_index)).where(
                predictions.c.request_seq == request_seq
            )
        ).scalar()
        if last is None or item_index_of(watermark) >= last:
            return request_seq + 1
        return request_seq

    def _repeat(self, batch: Callable[[sa.Connection], bool]) -> None:
        """Run ``batch`` in one transaction each until it returns False, pausing after
        each as long as it took."""
        while True:
            started = time.monotonic()
            with self.engine.begin() as connection:
                more = batch(connection)
            if not more:
                return
            if self._pause:
                time.sleep(min(time.monotonic() - started, _MAX_PAUSE))

    def _delete(self, connection: sa.Connection, rows: Sequence[_Request]) -> None:
        """Delete the requests ``rows`` with their predictions, archived first (with
        their labels, deleted later by :meth:`_aged_labels`)."""
        if not rows:
            return
        if self.archive is not None:
            self._archive(connection, [r for r in rows if r.accepted and r.seq is not None])
        times = [r.received_at for r in rows]
        connection.execute(
            requests.delete().where(
                requests.c.request_id.in_([r.request_id for r in rows]),
                # a time range: PostgreSQL looks in the partitions it covers only
                requests.c.received_at.between(min(times), max(times)),
            )
        )

    def _archive(self, connection: sa.Connection, rows: Sequence[Any]) -> None:
        """Archive the predictions of the requests ``rows`` (their ``seq`` and
        ``n_items``), a file per at most ``batch_rows`` predictions (or one larger
        request)."""
        assert self.archive is not None
        while rows:
            n = _leading(rows, self.policy.batch_rows)
            seqs = (
                connection.execute(
                    sa.select(predictions.c.seq)
                    .where(predictions.c.request_seq.in_([r.seq for r in rows[:n]]))
                    .order_by(predictions.c.seq)
                )
                .scalars()
                .all()
            )
            self.archive.write(connection, seqs)
            rows = rows[n:]

    # -- PostgreSQL: whole day partitions ---------------------------------------------

    def _drop_partitions(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> tuple[str, ...]:
        """Drop the day partitions that may go whole (module docstring), oldest first.
        A dry run names them and leaves their rows to the row passes' counts.

        A lock not granted in time (a long reader) leaves the table alone for the rest
        of this prune: every DROP waiting for its lock holds up the writers queued
        behind it, so one wait per prune, not one per old day."""
        assert cut.raw is not None and cut.labelled is not None
        with self.engine.connect() as connection:
            if not parts.is_partitioned(connection, "requests"):
                return ()
            days = parts.partitions(connection, "requests")
        dropped: list[str] = []
        for partition in days:
            if partition.end > cut.raw:
                break
            with self.engine.connect() as connection:
                if not self._may_drop(connection, partition, cut):
                    continue
            if not dry_run:
                removed = self._archive_and_drop(partition, cut)
                if removed is _Kept.LOCKED:
                    break
                if removed is _Kept.CHANGED:
                    continue
                counts.add("requests", removed.rows)
                counts.add("predictions", removed.items)
            dropped.append(partition.name)
        return tuple(dropped)

    @staticmethod
    def _may_drop(connection: sa.Connection, partition: parts.Partition, cut: _Cutoffs) -> bool:
        """Whether ``partition`` may be dropped: the monitor read every request of it
        and it holds no newest one (each answered by the partition's ``seq`` index).
        Its requests with a label within the labelled retention outlive the drop."""
        newest = connection.exec_driver_sql(f"SELECT max(seq) FROM {partition.name}").scalar()
        last_read = connection.exec_driver_sql(
            f"SELECT seq FROM {partition.name} WHERE outputs IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).scalar()
        return cut.may_go(newest, accepted=False) and cut.may_go(last_read, accepted=True)

    def _archive_and_drop(self, partition: parts.Partition, cut: _Cutoffs) -> parts.Dropped | _Kept:
        """Archive the predictions of ``partition``'s requests that go (if an archive
        is set) in bounded batches, then drop it (:meth:`_drop`)."""
        assert cut.labelled is not None
        if self.archive is not None:
            after = 0
            day = sa.table(
                partition.name,
                sa.column("request_id"),
                sa.column("received_at"),
                sa.column("seq"),
                sa.column("n_items"),
                sa.column("outputs"),
            )
            going = sa.select(day.c.seq, day.c.n_items).where(
                day.c.outputs.is_not(None), ~_recent_label(day, cut.labelled)
            )

            def batch(connection: sa.Connection) -> bool:
                nonlocal after
                rows = connection.execute(
                    going.where(day.c.seq > after).order_by(day.c.seq).limit(self.policy.batch_rows)
                ).all()
                taken = rows[: _leading(rows, self.policy.batch_rows)]
                if taken:
                    self._archive(connection, taken)
                    after = taken[-1].seq
                return len(rows) == self.policy.batch_rows or len(taken) < len(rows)

            self._repeat(batch)
        return self._drop(partition, cut)

    def _drop(self, partition: parts.Partition, cut: _Cutoffs) -> parts.Dropped | _Kept:
        """Drop ``partition`` if it still may go once no writer can add to it, its
        requests with a recent label moved into the default partition in the same
        transaction (:func:`~watchkeeper.db.partitions.drop_keeping`); the rows removed,
        or why it is kept. The check is made again under the partitioned table's lock
        because what was checked before (an archive of the day may take minutes) may
        have changed since: a replayed request the monitor has not read. A lock not
        granted in time (a long reader) leaves the partition to the row passes, which
        delete its rows in batches as they would without partitions, so retention
        holds either way."""
        try:
            with self.engine.begin() as connection:
                parts.lock_for_drop(connection, partition)
                if not self._may_drop(connection, partition, cut):
                    log.info("partition %s kept: its rows changed since checked", partition.name)
                    return _Kept.CHANGED
                return parts.drop_keeping(
                    connection, partition, _KEPT_REQUESTS, {"labelled": cut.labelled}
                )
        except sa.exc.OperationalError as exc:
            if not parts.lock_not_granted(exc):
                raise
            log.warning("partition %s not dropped now: %s", partition.name, exc.orig)
            return _Kept.LOCKED

    # -- raw: requests, by seq --------------------------------------------------------

    def _batch(
        self, connection: sa.Connection, condition: sa.ColumnElement[bool], cut: _Cutoffs
    ) -> list[tuple[_Request, bool]]:
        """Up to ``batch_rows`` requests matching ``condition`` in ``seq`` order, each
        with whether it holds a label within the labelled retention."""
        assert cut.labelled is not None
        recent = _recent_label(requests, cut.labelled)
        rows = connection.execute(
            sa.select(
                requests.c.request_id,
                requests.c.received_at,
                requests.c.seq,
                requests.c.outputs.is_not(None).label("accepted"),
                requests.c.n_items,
                sa.and_(requests.c.outputs.is_not(None), recent).label("recent"),
            )
            .where(condition)
            .order_by(requests.c.seq)
            .limit(self.policy.batch_rows)
        ).all()
        return [
            (
                _Request(r.request_id, r.received_at, r.seq, bool(r.accepted), r.n_items),
                bool(r.recent),
            )
            for r in rows
        ]

    def _raw(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> tuple[int, int]:
        """Delete old requests in ``seq`` order from the resume point up to the first
        one not old enough yet or not read; those with a recent label are stepped over
        and left to :meth:`_aged_labels`. A request dated after now (a server's clock
        ahead) is stepped over too, and goes with the first old request stored after
        it: stored before one that is old, it is at least as old, whatever its date
        says (one dated decades ahead held the resume point for decades). Until one
        comes, the first of them holds the resume point, and each prune reads them
        again from it, batch by batch (however many: none is held in memory), so that
        one whose own date has passed the cut-off goes too; once an old one comes, the
        requests from the resume point up to it are read again by ``seq`` and deleted
        in bounded batches like any old request. How far a prune read past the resume
        point is not kept: a prune stopped between its batches (a restart, a database
        error) would leave the old requests it had read but not deleted to be found
        only when a later request got old.

        The resume point before and after the pass: every request up to the latter is
        old (:meth:`_aged_labels` takes those kept for a label by it)."""
        assert cut.raw is not None
        with self.engine.connect() as connection:
            start = read_position(connection, REQUESTS_POSITION)
        if start is None:  # a new log, or one migration 0010 renumbered: none read
            start = 0
        position = start  # the resume point: every request up to it is done with
        scanned = start  # read to, in this prune: those after the resume point are ahead
        proven = start  # every request up to it is old: stored before an old one
        reading = True  # not stopped by a young or unread request yet

        def batch(connection: sa.Connection) -> bool:
            nonlocal position, scanned, proven, reading
            clearing = proven > position
            if clearing:  # known to be old: read again by seq
                rows = self._batch(
                    connection, sa.and_(requests.c.seq > position, requests.c.seq <= proven), cut
                )
                run = list(takewhile(lambda r: cut.may_go(r[0].seq, r[0].accepted), rows))
                if not rows:  # gone meanwhile
                    position = proven
            else:
                read_before = scanned
                rows = self._batch(
                    connection, sa.and_(requests.c.seq > scanned, requests.c.seq < cut.newest), cut
                )
                leading = _old_or_ahead(rows, cut)
                reading = len(leading) == len(rows) == self.policy.batch_rows
                for request, _ in leading:
                    scanned = int(request.seq)  # type: ignore[arg-type]
                    if request.received_at <= cut.now:
                        proven = scanned
                run = []
                if read_before == position:  # none read before: those up to the last old go
                    run = [r for r in leading if int(r[0].seq) <= proven]  # type: ignore[arg-type]
            taken = run[: _leading([r for r, _ in run], self.policy.batch_rows)]
            going = [request for request, recent in taken if not recent]
            if taken:
                position = int(taken[-1][0].seq)  # type: ignore[arg-type]
            elif clearing and rows:  # unread: the monitor's watermark was moved back
                proven = scanned = position  # the next prune reads again from the resume point
                reading = False
            counts.add("requests", len(going))
            counts.add("predictions", _items(going))
            if not dry_run:
                self._delete(connection, going)
                write_position(connection, REQUESTS_POSITION, position, self._clock())
            return reading or proven > position

        self._repeat(batch)
        return start, position

    def _unnumbered(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> None:
        """Delete old requests without ``seq``: rejected ones logged before migration
        0010 (it numbered those holding predictions), found through the ``seq`` index."""
        assert cut.raw is not None
        condition = sa.and_(requests.c.seq.is_(None), requests.c.received_at < cut.raw)
        if dry_run:
            with self.engine.connect() as connection:
                n = connection.execute(
                    sa.select(sa.func.count()).select_from(requests).where(condition)
                ).scalar_one()
            counts.add("requests", n)
            return

        def batch(connection: sa.Connection) -> bool:
            ids = sa.select(requests.c.request_id).where(condition).limit(self.policy.batch_rows)
            n = connection.execute(
                requests.delete().where(requests.c.request_id.in_(ids.scalar_subquery()))
            ).rowcount
            counts.add("requests", n)
            return n >= self.policy.batch_rows

        self._repeat(batch)

    # -- labelled: labels past their retention, with their requests -------------------

    def _aged_labels(
        self, cut: _Cutoffs, counts: _Counts, dry_run: bool, passed: tuple[int, int]
    ) -> None:
        """Delete labels older than the labelled retention, together with their request
        once it may go: old, read, and holding no label within the labelled retention.
        A label whose request may not go yet is kept with it; one whose request is gone
        (deleted by the raw pass, or never logged) goes. A request is old by its date,
        or by its place: at or before the raw pass's resume point (``passed``, before
        and after the pass), as one dated ahead of the clock is once an old one stored
        after it came; by its date alone it stayed until that date, decades for one."""
        assert cut.raw is not None and cut.labelled is not None
        resume = passed[1]
        after: tuple[datetime, str] | None = None
        counted: set[str] = set()  # a dry run's requests, counted once

        def batch(connection: sa.Connection) -> bool:
            nonlocal after
            labels = (
                sa.select(feedback.c.prediction_id, feedback.c.received_at)
                .where(feedback.c.received_at < cut.labelled)
                .order_by(feedback.c.received_at, feedback.c.prediction_id)
                .limit(self.policy.batch_rows)
            )
            if after is not None:
                labels = labels.where(
                    _after(feedback.c.received_at, feedback.c.prediction_id, after)
                )
            batch_of = labels.subquery()
            # the batch first, then each label's request by its key
            rows = connection.execute(
                sa.select(
                    batch_of.c.prediction_id,
                    batch_of.c.received_at,
                    requests.c.request_id,
                    requests.c.received_at.label("request_at"),
                    requests.c.seq,
                    requests.c.outputs.is_not(None).label("accepted"),
                    requests.c.n_items,
                )
                .select_from(batch_of)
                .outerjoin(
                    requests, requests.c.request_id == request_id_of(batch_of.c.prediction_id)
                )
                .order_by(batch_of.c.received_at, batch_of.c.prediction_id)
            ).all()
            if not rows:
                return False
            after = (rows[-1].received_at, rows[-1].prediction_id)
            candidates = {
                r.request_id: _Request(
                    r.request_id, r.request_at, r.seq, bool(r.accepted), r.n_items
                )
                for r in rows
                if r.request_id is not None
                and (r.request_at < cut.raw or (r.seq is not None and r.seq <= resume))
                and cut.may_go(r.seq, bool(r.accepted))
            }
            if candidates:
                kept = set(
                    connection.execute(
                        sa.select(requests.c.request_id).where(
                            requests.c.request_id.in_(sorted(candidates)),
                            _recent_label(requests, cut.labelled),
                        )
                    ).scalars()
                )
                going = [r for i, r in candidates.items() if i not in kept]
            else:
                going = []
            leaving = {r.request_id for r in going}
            aged = [
                r.prediction_id for r in rows if r.request_id is None or r.request_id in leaving
            ]
            counts.add("feedback", len(aged))
            if dry_run:  # what the raw pass counted is not counted again
                going = [
                    r
                    for r in going
                    if r.request_id not in counted
                    and not (r.seq is not None and passed[0] < r.seq <= passed[1])
                ]
                counted.update(r.request_id for r in going)
            counts.add("requests", len(going))
            counts.add("predictions", _items(going))
            if not dry_run and aged:
                self._delete(connection, going)  # archived with their labels, still there
                connection.execute(feedback.delete().where(feedback.c.prediction_id.in_(aged)))
            return len(rows) == self.policy.batch_rows

        self._repeat(batch)

    # -- SQLite: give deleted pages back ------------------------------------------------

    def _return_free_pages(self) -> int | None:
        """On SQLite with incremental auto-vacuum (databases created since it was turned
        on), truncate the file by the pages the deletes freed, a bounded step at a time.
        Elsewhere free space is reused by new rows (PostgreSQL: autovacuum)."""
        if self.engine.dialect.name != "sqlite":
            return None
        with self.engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA auto_vacuum").scalar()
            page = int(connection.exec_driver_sql("PRAGMA page_size").scalar() or 0)
        if mode != 2:  # INCREMENTAL
            return None
        freed = 0
        while True:
            started = time.monotonic()
            with self.engine.connect() as connection:
                before = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
                if not before:
                    return freed * page
                # executescript steps the pragma to its end; execute() frees one page
                raw = connection.connection.driver_connection
                pages = max(1, _VACUUM_BYTES // max(page, 1))
                raw.executescript(f"PRAGMA incremental_vacuum({pages});")
                after = int(connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0)
            freed += before - after
            if after >= before:
                return freed * page
            if self._pause:
                time.sleep(min(time.monotonic() - started, _MAX_PAUSE))

    # -- history --------------------------------------------------------------------------

    def _history(self, before: datetime, counts: _Counts, dry_run: bool) -> None:
        finished = (
            (window_results, window_results.c.evaluated_at < before),
            (
                retrain_requests,
                sa.and_(
                    retrain_requests.c.requested_at < before,
                    retrain_requests.c.status.not_in(_OPEN_REQUEST_STATES),
                ),
            ),
            (
                retrain_runs,
                sa.and_(
                    retrain_runs.c.started_at < before, retrain_runs.c.finished_at.is_not(None)
                ),
            ),
        )
        for table, condition in finished:
            if dry_run:
                with self.engine.connect() as connection:
                    n = connection.execute(
                        sa.select(sa.func.count()).select_from(table).where(condition)
                    ).scalar_one()
                counts.add(table.name, n)
                continue
            self._repeat(
                lambda connection, t=table, c=condition: self._history_batch(
                    connection, t, c, counts
                )
            )

    def _history_batch(
        self, connection: sa.Connection, table: sa.Table, condition: Any, counts: _Counts
    ) -> bool:
        ids = sa.select(table.c.id).where(condition).order_by(table.c.id)
        batch = ids.limit(self.policy.batch_rows).scalar_subquery()
        if table is retrain_runs:
            carry_pruned_runs(connection, batch)
        n = connection.execute(table.delete().where(table.c.id.in_(batch))).rowcount
        counts.add(table.name, n)
        return n >= self.policy.batch_rows
