"""Retention of the prediction log: what is deleted when, in bounded batches.

Three retention periods (``watchkeeper.settings``):

- **raw** rows, ``requests`` and unlabelled ``predictions``: kept ``retention_days``;
- **labelled** predictions (those with a ``feedback`` row), their request and their
  label: kept until the *label* is older than the labelled retention, which is never
  shorter than the retraining window (the retraining job selects labels by arrival
  time) nor than the raw retention;
- **history**, ``window_results``, ``retrain_requests`` and ``retrain_runs``: small,
  kept ``retention_history_days``.

A prediction the monitor has not read yet (``seq`` past its ``windows`` watermark) is
never deleted, nor is the newest prediction: SQLite hands a deleted highest rowid out
again, and a reused ``seq`` below the watermark would never be read.

On PostgreSQL ``predictions`` and ``requests`` are partitioned by day
(:mod:`watchkeeper.db.partitions`) and a prune first drops each day partition that may
go whole — constant time, however many rows it holds: a ``predictions`` day whose
every row is past the raw retention and read by the monitor (its rows archived first,
if an archive is set), and a ``requests`` day none of whose predictions is still to be
deleted. A day's predictions with a label within the labelled retention, and their
requests, outlive its drop: in the drop's transaction they are copied aside and put
back into the table, where they land in the default partition with every column (and
``seq``) unchanged — labels arrive every day, so otherwise no day of the labelled
retention could be dropped, its unlabelled rows would go one by one and the log would
keep a partition per day of it. The row-by-row passes below then handle what
partitions cannot: the default partition (those long-kept labelled rows, deleted with
their label once it ages out, and rows of days without partition) and days a drop
could not take (a long reader). On partitioned tables the raw retention is
applied by whole UTC days: the raw passes stop at the start of the day that straddles
the cut-off, so that day is dropped whole once it is wholly past it, instead of being
emptied row by row by the hourly prunes before (raw rows are kept up to one day longer
than ``retention_days`` there; SQLite keeps the retention to the row). Every prune also
creates the partitions of the days ahead (and so does the monitor's retention thread
with pruning off: :class:`~watchkeeper.db.partitions.PartitionsAhead`).

Each batch is its own short transaction and the pruner then pauses as long as the
batch took, so that the serving writers get the database at least half the time.
The passes over ``predictions`` and ``requests`` resume from positions kept in
``monitor_state`` (rows behind them are deleted or labelled), so a prune costs what
became old since the last one, not what the log holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

import sqlalchemy as sa

from watchkeeper.db import partitions as parts
from watchkeeper.db.archive import Archive
from watchkeeper.db.positions import (
    carry_pruned_runs,
    from_micros,
    read_position,
    to_micros,
    write_position,
)
from watchkeeper.db.request_rows import of_request
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

# The monitor's read watermark over ``predictions.seq`` (monitoring.log_reader.WATERMARK).
MONITOR_WATERMARK = "windows"
# Where the raw passes resume: a ``seq``, and a ``received_at`` in microseconds.
PREDICTIONS_POSITION = "retention_predictions"
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


# A prediction (aliased ``p``) whose label is within the labelled retention.
_RECENT_LABEL = (
    "EXISTS (SELECT 1 FROM feedback f WHERE f.prediction_id = p.prediction_id"
    " AND f.received_at >= :labelled)"
)


@dataclass(frozen=True)
class _Keep:
    """Rows of a dropped day partition that go back into its table: an SQL condition
    on the partition's rows (aliased ``p``) and its parameters."""

    condition: str
    params: dict[str, object]


class _Kept(Enum):
    """Why a day partition the prune chose was not dropped."""

    LOCKED = "its lock was not granted in time"
    CHANGED = "its rows changed since they were checked"


@dataclass
class _Cutoffs:
    raw: datetime | None
    labelled: datetime | None
    history: datetime | None
    protect_seq: int
    """Highest ``seq`` that may be deleted."""


@dataclass
class _Counts:
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + max(n, 0)


def _after(
    time_column: sa.Column[Any], key_column: sa.Column[Any], after: tuple[datetime, str]
) -> sa.ColumnElement[bool]:
    """Keyset condition ``(time, key) > after``, spelt out so that the values are bound
    with the columns' types (SQLite stores times as text in one format)."""
    moment, key = after
    return sa.or_(time_column > moment, sa.and_(time_column == moment, key_column > key))


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
        started = self._clock()
        cutoffs = self._cutoffs(started)
        counts = _Counts()
        created = (
            () if dry_run else tuple(p.name for p in parts.ensure_partitions(self.engine, started))
        )
        dropped: tuple[str, ...] = ()
        if cutoffs.raw is not None:
            dropped = self._drop_partitions(cutoffs, counts, dry_run)
            self._unlabelled_predictions(cutoffs, counts, dry_run)
            self._aged_labels(cutoffs, counts, dry_run)
            self._requests(cutoffs, counts, dry_run)
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
            "predictions": f"unlabelled {days(p.raw_days)}, labelled once the label is "
            f"{days(p.labelled_days).removeprefix('kept ')}",
            "requests": f"{days(p.raw_days)} with no prediction left",
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
            newest = connection.execute(sa.select(sa.func.max(predictions.c.seq))).scalar()
            watermark = read_position(connection, MONITOR_WATERMARK)
            by_day = parts.is_partitioned(connection, "predictions")
        protect = int(newest or 0) - 1
        if not p.without_monitor:  # no watermark yet: nothing is read, nothing goes
            protect = min(protect, watermark or 0)
        raw = before(p.raw_days)
        if raw is not None and by_day:
            # Partitioned: raw rows go by whole UTC days, so that the day straddling the
            # cut-off is dropped whole once past it rather than emptied row by row by
            # the hourly prunes before (rows are kept up to a day longer).
            raw = parts.day_start(raw)
        return _Cutoffs(raw, before(p.labelled_days), before(p.history_days), protect)

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

    # -- PostgreSQL: whole day partitions ---------------------------------------------

    def _drop_partitions(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> tuple[str, ...]:
        """Drop the day partitions that may go whole (module docstring), oldest first.
        A dry run names them and leaves their rows to the row passes' counts.

        A table whose lock is not granted in time (a long reader) is left alone for the
        rest of this prune: every DROP waiting for its lock holds up the writers queued
        behind it, so one wait per table and prune, not one per old day."""
        assert cut.raw is not None and cut.labelled is not None
        with self.engine.connect() as connection:
            if not parts.is_partitioned(connection, "predictions"):
                return ()
            days = {t: parts.partitions(connection, t) for t in parts.PARTITIONED}
        dropped: list[str] = []
        gone: set[date] = set()  # days whose predictions partition goes
        for partition in days["predictions"]:
            if partition.end > cut.raw:
                break
            with self.engine.connect() as connection:
                if not self._may_drop_predictions(connection, partition, cut):
                    continue
            if not dry_run:
                removed = self._archive_and_drop(partition, cut)
                if removed is _Kept.LOCKED:
                    break
                if removed is _Kept.CHANGED:
                    continue
                counts.add("predictions", removed)
            gone.add(partition.day)
            dropped.append(partition.name)
        for partition in days["requests"]:
            if partition.end > cut.raw:
                break
            with self.engine.connect() as connection:
                rows_left = self._going_predictions_of_day(connection, partition, cut)
            if rows_left and not (dry_run and partition.day in gone):
                continue  # the row pass deletes its requests as their predictions go
            if not dry_run:
                removed = self._drop(
                    partition,
                    lambda c, p=partition: not self._going_predictions_of_day(c, p, cut),
                    self._requests_kept(partition),
                )
                if removed is _Kept.LOCKED:
                    break
                if removed is _Kept.CHANGED:
                    continue
                counts.add("requests", removed)
            dropped.append(partition.name)
        return tuple(dropped)

    @staticmethod
    def _going_predictions_of_day(
        connection: sa.Connection, partition: parts.Partition, cut: _Cutoffs
    ) -> bool:
        """Whether any prediction of the time of ``partition``'s day is still to be
        deleted (one without a label within the labelled retention): its request is
        left to the row pass, which deletes it once its predictions are gone."""
        recent_label = sa.exists().where(
            feedback.c.prediction_id == predictions.c.prediction_id,
            feedback.c.received_at >= cut.labelled,
        )
        row = connection.execute(
            sa.select(predictions.c.seq)
            .where(
                predictions.c.created_at >= partition.start,
                predictions.c.created_at < partition.end,
                ~recent_label,
            )
            .limit(1)
        ).first()
        return row is not None

    @staticmethod
    def _requests_kept(partition: parts.Partition) -> _Keep:
        """The requests of ``partition`` that still have a prediction (a labelled one
        kept past its day's drop), found in the predictions of the same time only."""
        return _Keep(
            "EXISTS (SELECT 1 FROM predictions q WHERE q.request_id = p.request_id"
            " AND q.created_at >= :start AND q.created_at < :end)",
            {"start": partition.start, "end": partition.end},
        )

    @staticmethod
    def _predictions_kept(cut: _Cutoffs) -> _Keep:
        """The predictions of a day that outlive its drop: those with a label within
        the labelled retention (labels older than it go with their predictions anyway,
        :meth:`_aged_labels`)."""
        return _Keep(_RECENT_LABEL, {"labelled": cut.labelled})

    def _drop(
        self,
        partition: parts.Partition,
        still_may: Callable[[sa.Connection], bool],
        keep: _Keep,
    ) -> int | _Kept:
        """Drop ``partition`` if ``still_may`` holds once no writer can add to it, its
        rows matching ``keep`` moved into the default partition in the same transaction
        (:func:`~watchkeeper.db.partitions.drop_keeping`); the rows removed, or why it
        is kept. The check is made again under the partitioned table's lock because
        what was checked before (an archive of the day may take minutes) may have
        changed since: a replayed row the monitor has not read, a request's
        predictions. A lock not granted in time (a long reader) leaves the partition to
        the row passes, which delete its rows in batches as they would without
        partitions, so retention holds either way."""
        try:
            with self.engine.begin() as connection:
                parts.lock_for_drop(connection, partition)
                if not still_may(connection):
                    log.info("partition %s kept: its rows changed since checked", partition.name)
                    return _Kept.CHANGED
                n = parts.rows_in(connection, partition)
                n -= parts.drop_keeping(connection, partition, keep.condition, keep.params)
        except sa.exc.OperationalError as exc:
            if not parts.lock_not_granted(exc):
                raise
            log.warning("partition %s not dropped now: %s", partition.name, exc.orig)
            return _Kept.LOCKED
        return n

    @staticmethod
    def _may_drop_predictions(
        connection: sa.Connection, partition: parts.Partition, cut: _Cutoffs
    ) -> bool:
        """Whether ``partition`` may be dropped: the monitor read every row of it. Its
        rows with a label still within the labelled retention outlive the drop
        (:meth:`_predictions_kept`)."""
        newest = connection.exec_driver_sql(f"SELECT max(seq) FROM {partition.name}").scalar()
        return newest is None or newest <= cut.protect_seq

    def _archive_and_drop(self, partition: parts.Partition, cut: _Cutoffs) -> int | _Kept:
        """Archive ``partition``'s rows (if an archive is set) in bounded batches, then
        drop it (:meth:`_drop`)."""
        if self.archive is not None:
            archive = self.archive
            after = 0

            def batch(connection: sa.Connection) -> bool:
                nonlocal after
                # the rows that go (kept ones are archived when their label ages)
                seqs = (
                    connection.execute(
                        sa.text(
                            f"SELECT seq FROM {partition.name} p WHERE seq > :after"
                            f" AND NOT {_RECENT_LABEL} ORDER BY seq LIMIT :limit"
                        ),
                        {
                            "after": after,
                            "limit": self.policy.batch_rows,
                            "labelled": cut.labelled,
                        },
                    )
                    .scalars()
                    .all()
                )
                archive.write(connection, seqs)
                if seqs:
                    after = seqs[-1]
                return len(seqs) == self.policy.batch_rows

            self._repeat(batch)
        return self._drop(
            partition,
            lambda c: self._may_drop_predictions(c, partition, cut),
            self._predictions_kept(cut),
        )

    # -- raw: unlabelled predictions, by seq ------------------------------------------

    def _unlabelled_predictions(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> None:
        """Delete unlabelled predictions in ``seq`` order up to the first one that is
        not old enough yet (or that the monitor has not read); labelled ones are
        stepped over and left to :meth:`_aged_labels`."""
        assert cut.raw is not None
        with self.engine.connect() as connection:
            position = read_position(connection, PREDICTIONS_POSITION) or 0
        labelled = sa.exists().where(feedback.c.prediction_id == predictions.c.prediction_id)

        def batch(connection: sa.Connection) -> bool:
            nonlocal position
            rows = connection.execute(
                sa.select(predictions.c.seq, predictions.c.created_at)
                .where(predictions.c.seq > position, predictions.c.seq <= cut.protect_seq)
                .order_by(predictions.c.seq)
                .limit(self.policy.batch_rows)
            ).all()
            # only the leading run of old rows: the rest waits for a later prune
            young = next((i for i, r in enumerate(rows) if r.created_at >= cut.raw), len(rows))
            end = rows[young - 1].seq if young else position
            if end > position:
                in_range = sa.and_(
                    predictions.c.seq > position,
                    predictions.c.seq <= end,
                    predictions.c.created_at < cut.raw,
                    ~labelled,
                )
                if dry_run:
                    n = connection.execute(
                        sa.select(sa.func.count()).select_from(predictions).where(in_range)
                    ).scalar_one()
                elif self.archive is not None:
                    # delete exactly what was archived (a label arriving meanwhile
                    # finds its prediction gone, as it would a moment later)
                    seqs = (
                        connection.execute(sa.select(predictions.c.seq).where(in_range))
                        .scalars()
                        .all()
                    )
                    self.archive.write(connection, seqs)
                    n = connection.execute(
                        predictions.delete().where(predictions.c.seq.in_(seqs))
                    ).rowcount
                    write_position(connection, PREDICTIONS_POSITION, end, self._clock())
                else:
                    n = connection.execute(predictions.delete().where(in_range)).rowcount
                    write_position(connection, PREDICTIONS_POSITION, end, self._clock())
                counts.add("predictions", n)
                position = end
            return young == len(rows) == self.policy.batch_rows  # more may be old

        self._repeat(batch)

    # -- labelled: labels past their retention, with their predictions ----------------

    def _aged_labels(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> None:
        """Delete labels older than the labelled retention together with their
        prediction (and its request once nothing of it is left). A label whose
        prediction may not be deleted yet is kept with it."""
        assert cut.raw is not None and cut.labelled is not None
        after: tuple[datetime, str] | None = None

        def batch(connection: sa.Connection) -> bool:
            nonlocal after
            query = (
                sa.select(
                    feedback.c.prediction_id,
                    feedback.c.received_at,
                    predictions.c.seq,
                    predictions.c.created_at,
                    predictions.c.request_id,
                )
                .outerjoin(predictions, predictions.c.prediction_id == feedback.c.prediction_id)
                .where(feedback.c.received_at < cut.labelled)
                .order_by(feedback.c.received_at, feedback.c.prediction_id)
                .limit(self.policy.batch_rows)
            )
            if after is not None:
                query = query.where(_after(feedback.c.received_at, feedback.c.prediction_id, after))
            rows = connection.execute(query).all()
            if not rows:
                return False
            after = (rows[-1].received_at, rows[-1].prediction_id)
            labels, seqs, request_ids = [], [], set()
            for row in rows:
                if row.seq is None:  # its prediction is gone (or never came)
                    labels.append(row.prediction_id)
                elif row.created_at < cut.raw and row.seq <= cut.protect_seq:
                    labels.append(row.prediction_id)
                    seqs.append(row.seq)
                    request_ids.add(row.request_id)
            counts.add("feedback", len(labels))
            counts.add("predictions", len(seqs))
            if not dry_run and labels:
                if self.archive is not None:
                    self.archive.write(connection, seqs)  # with their labels, still there
                connection.execute(feedback.delete().where(feedback.c.prediction_id.in_(labels)))
                if seqs:
                    connection.execute(predictions.delete().where(predictions.c.seq.in_(seqs)))
                    counts.add("requests", self._delete_emptied(connection, request_ids, cut.raw))
            return len(rows) == self.policy.batch_rows

        self._repeat(batch)

    @staticmethod
    def _delete_emptied(connection: sa.Connection, ids: set[str], before: datetime) -> int:
        orphaned = ~sa.exists().where(of_request(requests.c.request_id, connection.dialect.name))
        return connection.execute(
            requests.delete().where(
                requests.c.request_id.in_(sorted(ids)), requests.c.received_at < before, orphaned
            )
        ).rowcount

    # -- raw: requests, by time ---------------------------------------------------------

    def _requests(self, cut: _Cutoffs, counts: _Counts, dry_run: bool) -> None:
        """Delete old requests none of whose predictions is left. The resume position
        never passes a request that still has an unlabelled prediction (one the
        monitor has not read, say), so that none is left behind for good."""
        assert cut.raw is not None
        with self.engine.connect() as connection:
            start = read_position(connection, REQUESTS_POSITION)
        since = from_micros(start) if start is not None else None
        after: tuple[datetime, str] | None = None

        def batch(connection: sa.Connection) -> bool:
            nonlocal after
            query = (
                sa.select(requests.c.request_id, requests.c.received_at)
                .where(requests.c.received_at < cut.raw)
                .order_by(requests.c.received_at, requests.c.request_id)
                .limit(self.policy.batch_rows)
            )
            if since is not None:
                query = query.where(requests.c.received_at >= since)
            if after is not None:
                query = query.where(_after(requests.c.received_at, requests.c.request_id, after))
            rows = connection.execute(query).all()
            if not rows:
                return False
            ids = [r.request_id for r in rows]
            if dry_run:
                counts.add("requests", self._count_emptied(connection, ids, cut))
            else:
                counts.add("requests", self._delete_emptied(connection, set(ids), cut.raw))
                waiting = self._with_unlabelled(connection, rows)
                stop = next((r for r in rows if r.request_id in waiting), None)
                resume = stop.received_at if stop is not None else rows[-1].received_at
                write_position(connection, REQUESTS_POSITION, to_micros(resume), self._clock())
                if stop is not None:
                    return False
            after = (rows[-1].received_at, rows[-1].request_id)
            return len(rows) == self.policy.batch_rows

        self._repeat(batch)

    @staticmethod
    def _with_unlabelled(connection: sa.Connection, rows: Sequence[Any]) -> set[str]:
        """The ids among ``rows`` (requests) of requests that still have an unlabelled
        prediction, found through an index on either database
        (:mod:`watchkeeper.db.request_rows`)."""
        labelled = sa.exists().where(feedback.c.prediction_id == predictions.c.prediction_id)
        ids = [r.request_id for r in rows]
        if connection.dialect.name != "sqlite":  # predictions.request_id has its index
            query = sa.select(predictions.c.request_id).where(
                predictions.c.request_id.in_(ids), ~labelled
            )
            return set(connection.execute(query).scalars().all())
        unlabelled = sa.exists().where(
            of_request(requests.c.request_id, connection.dialect.name), ~labelled
        )
        query = sa.select(requests.c.request_id).where(requests.c.request_id.in_(ids), unlabelled)
        return set(connection.execute(query).scalars().all())

    @staticmethod
    def _count_emptied(connection: sa.Connection, ids: Sequence[str], cut: _Cutoffs) -> int:
        """Requests among ``ids`` that the passes before would leave with no prediction."""
        assert cut.raw is not None and cut.labelled is not None
        recent_label = sa.exists().where(
            feedback.c.prediction_id == predictions.c.prediction_id,
            feedback.c.received_at >= cut.labelled,
        )
        survives = sa.or_(
            predictions.c.created_at >= cut.raw, predictions.c.seq > cut.protect_seq, recent_label
        )
        kept = sa.exists().where(
            of_request(requests.c.request_id, connection.dialect.name), survives
        )
        return connection.execute(
            sa.select(sa.func.count())
            .select_from(requests)
            .where(requests.c.request_id.in_(ids), ~kept)
        ).scalar_one()

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
