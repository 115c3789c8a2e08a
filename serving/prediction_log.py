"""The prediction log: every request is journaled before it is answered, and a
background writer moves the journal into the database.

Request threads only serialise their entry and append it to this process's journal
(:mod:`serving.journal`): no queue in memory, no database wait, nothing to lose when
the process is killed. One writer thread per process reads the journal in chunks of
at most ``batch_bytes``, stores them (:mod:`serving.log_store`) and checkpoints. When
the database is unavailable the writer keeps retrying with back-off while the
journal grows on disk, up to ``max_bytes`` per process, less what journals of ended
processes take (so ``workers`` processes never take more than ``workers × max_bytes``);
past that, requests that must be logged are refused (503) rather than answered
unlogged. So are they while the journal's disk refuses writes (full) and while the
process has no journal at all (it could not be created): the process still starts,
replays ended processes' journals, gives back consumed segments and creates its
journal once it can, and readiness says it is not ready meanwhile. An entry the
database refuses, or that cannot be parsed or encoded, is retried alone and then set
aside in a dead-letter file: no entry can stop the writer. The thread is also
supervised: if it dies anyway, the next request or readiness probe restarts it. The
backlog gauges, and how long entries have waited with none of them stored, are set by
the journal's sync thread too: a writer waiting inside a database call that neither
fails nor times out (a frozen server, a lock held) cannot report it itself.

Journals left by dead processes (crash, ``kill -9``, an unfinished drain at
shutdown) are claimed and replayed by a live process's writer.

The writer stores nothing, its own entries nor replayed ones, before it has found the
database's schema to be the code's (:class:`~watchkeeper.db.schema_check.SchemaCheck`,
migrating it first with ``WATCHKEEPER_AUTO_MIGRATE``): ``serve`` checks it before it
starts when the database answers, but starts without when it does not, and its
workers' writers then check it once it answers. Until then, or while the database
answers with another schema, entries wait in the journal as during an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from serving.dead_letter import DeadLetters, Span
from serving.journal import (
    Chunk,
    DirectoryUsage,
    Journal,
    JournalFull,
    JournalUnavailable,
    OrphanJournal,
    Position,
    claim_orphans,
    directory_usage,
    free_bytes,
    remove_abandoned,
)
from serving.log_entry import LogEntry
from serving.log_store import LogStore
from serving.metrics import LogMetrics
from watchkeeper.db.schema_check import SchemaCheck, SchemaState

log = logging.getLogger(__name__)

__all__ = ["JournalFull", "JournalUnavailable", "LogStatus", "PredictionLog"]

# How often the sync thread scans the journal directory (other journals' bytes, the
# dead-letter files' bytes, the disk's state for the metrics), or every flush interval
# if that is longer. Every flush interval (0.2 s) it cost an idle worker ~2.3 ms of CPU
# a second, most of a log-on worker's idle cost: each scan runs on cold caches.
MEASURE_INTERVAL = 1.0
# SQLSTATE classes that blame the data of a row: data exception, integrity violation.
_REFUSED_CLASSES = ("22", "23")


def _refuses_the_entry(exc: BaseException) -> bool:
    """True when ``exc`` is about the entry itself (set it aside), False when it is
    about the database (wait and retry: down, read-only, not migrated, disk full).
    Guessing "database" wrongly only delays; guessing "entry" wrongly would send good
    entries to the dead-letter file, so anything unknown from the database waits."""
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:  # PostgreSQL says whose fault it is
        return sqlstate[:2] in _REFUSED_CLASSES
    if isinstance(exc, UnicodeError | TypeError | ValueError | OverflowError):
        return True  # raised while encoding the entry's values
    return type(cause).__name__ in ("IntegrityError", "DataError")


class _Retry(Exception):
    """The database is unavailable: leave the chunk in the journal and try again after
    a pause."""


class _NoRoom(Exception):
    """The chunk's refused lines cannot be set aside yet (the dead-letter files are at
    their limit, or their disk fails): its journal waits behind it, tried again every
    probe interval; other journals go on."""


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A journal's chunk that waits for dead-letter room: where it starts, how many of
    its lines were tried (their refusals logged) when it was left, and when to try it
    again."""

    start: Position
    tried: int
    retry_at: float


@dataclass(frozen=True, slots=True)
class LogStatus:
    """What readiness reports about the log, read without touching the database."""

    writer_alive: bool
    writer_restarts: int
    database_up: bool
    queue_depth: int
    backlog_bytes: int
    stalled_seconds: float
    journal_full: bool
    journal_writable: bool
    schema: SchemaState


class PredictionLog:
    def __init__(
        self,
        engine: sa.Engine,
        directory: Path,
        metrics: LogMetrics,
        *,
        batch_bytes: int = 4 * 1024 * 1024,
        flush_interval: float = 0.2,
        write_interval: float = 0.5,
        probe_interval: float = 2.0,
        segment_bytes: int = 64 * 1024 * 1024,
        max_bytes: int = 1024 * 1024 * 1024,
        dead_letter_max_bytes: int = 256 * 1024 * 1024,
        recover_interval: float = 10.0,
        workers: int = 1,
        migrate: bool = False,
    ) -> None:
        """``migrate``: apply pending migrations before storing (see
        :class:`~watchkeeper.db.schema_check.SchemaCheck`)."""
        self._store = LogStore(engine)
        self._schema = SchemaCheck(engine, migrate=migrate, who="the prediction log")
        self._directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._workers = workers
        self._dead = DeadLetters(self._directory, max_bytes=dead_letter_max_bytes)
        self._dead_letter_error = ""
        # Chunks whose refused lines wait for dead-letter room, by journal id.
        self._waiting: dict[str, _Waiting] = {}
        self._metrics = metrics
        self._metrics.schema_pending.set(1)
        self._batch_bytes = batch_bytes
        self._flush_interval = flush_interval
        self._write_interval = write_interval
        self._probe_interval = probe_interval
        self._recover_interval = recover_interval
        self._thread: threading.Thread | None = None
        # Set by the writer and sync threads as they end (:meth:`_ending`), cleared when
        # they are started again: what a request looks at to supervise them.
        self._writer_ended = False
        self._syncer_ended = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        # Whether the last cycle left lines unread (a chunk cut by ``batch_bytes``, or a
        # journal being replayed): the writer then goes on without waiting.
        self._behind = False
        self._database_up = True
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._next_recovery = 0.0
        self._orphan: OrphanJournal | None = None
        self._entries_committed = 0
        # The last time this process's entries were seen to move: the writer stored some
        # of them, or the sync thread saw none waiting (see :attr:`stalled_seconds`).
        self._moved_at = time.monotonic()
        self._synced = 0
        self._syncer: threading.Thread | None = None
        self._stop_syncing = threading.Event()
        self._restarts = 0
        # None while it cannot be created (a full or failing disk): requests are refused
        # and the writer tries again every probe interval.
        self._journal: Journal | None = None
        self._reopen_at = 0.0
        self._open_error = ""
        self._open_journal()

    # -- request side ----------------------------------------------------------

    def submit(self, entry: LogEntry) -> None:
        """Journal ``entry``; once this returns, the entry survives a crash of this
        process. Raises :class:`JournalUnavailable` (:class:`JournalFull` when the
        writer is too far behind) when it cannot."""
        try:
            journal = self._journal
            if journal is None:
                raise JournalUnavailable("the prediction log has no journal (see the server log)")
            journal.append(entry.to_line())
        except JournalUnavailable:
            self._metrics.entries_rejected.inc()
            raise
        # Two flags rather than two ``is_alive`` calls on every request (~6 µs of a
        # request's CPU with its caches cold): a thread sets its own as it ends.
        if self._writer_ended or self._syncer_ended:
            self._supervise()

    @property
    def full(self) -> bool:
        """True while the journal is at its size limit (new entries are refused)."""
        journal = self._journal
        return journal is not None and journal.full

    @property
    def refusal(self) -> str | None:
        """Why a request that must be logged is refused before its view runs (503), or
        ``None``: no journal (it could not be created), or the journal at its size
        limit. A journal whose last append failed is not refused: the next entry tries
        it again, and clears the failure when the disk takes it. One look for the
        request thread (two looks cost a request ~8 µs with its caches cold,
        bench/README.md)."""
        journal = self._journal
        if journal is None:
            return "the prediction log cannot be written now; retry later"
        if journal.full:
            return "the prediction log is behind its database; retry later"
        return None

    @property
    def writable(self) -> bool:
        """False while this process has no journal or its disk refuses appends (new
        entries are refused)."""
        journal = self._journal
        return journal is not None and journal.writable

    def status(self) -> LogStatus:
        self._supervise()
        journal = self._journal
        return LogStatus(
            writer_alive=self._thread is not None and self._thread.is_alive(),
            writer_restarts=self._restarts,
            database_up=self._database_up,
            queue_depth=self.queue_depth,
            backlog_bytes=0 if journal is None else journal.backlog_bytes,
            stalled_seconds=self.stalled_seconds,
            journal_full=self.full,
            journal_writable=self.writable,
            schema=self._schema.state,
        )

    @property
    def queue_depth(self) -> int:
        """Entries journaled by this process and not yet in the database."""
        return self._appended_entries() - self._entries_committed

    @property
    def stalled_seconds(self) -> float:
        """How long this process's journaled entries have waited with none of them
        stored: 0 while nothing waits, under about a write interval while the writer
        keeps up, and growing while the database is down or hangs in the writer's call
        without failing (a frozen server, a lock held), when the writer cannot say so
        itself. Measured from the writer's last store, or from when the sync thread last
        saw nothing waiting (every flush interval), whichever is later."""
        if self.queue_depth <= 0:
            return 0.0
        return max(0.0, time.monotonic() - self._moved_at)

    @property
    def unsynced_entries(self) -> int:
        """Entries journaled by this process and not yet flushed to disk (``fdatasync``):
        what a power loss could take."""
        return self._appended_entries() - self._synced

    def _appended_entries(self) -> int:
        journal = self._journal
        return 0 if journal is None else journal.entries_appended

    @property
    def database_up(self) -> bool:
        return self._database_up

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> PredictionLog:
        with self._lock:
            if self._thread is None:
                self._start_thread()
                self._start_syncer()
        return self

    def _start_thread(self) -> None:
        self._writer_ended = False
        self._thread = threading.Thread(
            target=self._ending,
            args=(self._run, "_writer_ended"),
            name="prediction-log-writer",
            daemon=True,
        )
        self._thread.start()

    def _start_syncer(self) -> None:
        self._syncer_ended = False
        self._syncer = threading.Thread(
            target=self._ending,
            args=(self._sync_loop, "_syncer_ended"),
            name="prediction-log-sync",
            daemon=True,
        )
        self._syncer.start()

    def _ending(self, run: Callable[[], None], flag: str) -> None:
        """Run a thread's loop and set ``flag`` however it ends (a ``SystemExit`` too):
        a thread that dies is restarted by the next request (:meth:`submit`), which
        checks the flags only. Set before the thread is done, so the check it triggers
        (:meth:`_supervise`) may find the thread still alive: the flag stays set, and
        the following request checks again, until one restarts it."""
        try:
            run()
        finally:
            setattr(self, flag, True)

    def _supervise(self) -> None:
        """Restart the writer if it died (it should not: every cycle catches errors),
        and the journal's sync thread likewise."""
        syncer = self._syncer
        if syncer is not None and not syncer.is_alive() and not self._closing:
            with self._lock:
                if self._syncer is syncer and not self._closing:
                    log.error("prediction log journal sync thread died; restarting it")
                    self._start_syncer()
        thread = self._thread
        if thread is None or thread.is_alive() or self._closing:
            return
        with self._lock:
            if self._thread is thread and not self._closing:
                self._restarts += 1
                self._metrics.writer_restarts.inc()
                log.error("prediction log writer died; restarting it (restart %d)", self._restarts)
                self._start_thread()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything journaled so far is in the database; False if the
        writer did not get there within ``timeout`` (database down)."""
        deadline = time.monotonic() + timeout
        while self.queue_depth > 0 and time.monotonic() < deadline:
            self._supervise()
            self._wake.set()
            time.sleep(0.01)
        return self.queue_depth == 0

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain this process's journal into the database and stop. What is not
        drained in time (database down) stays on disk for another process."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        writer_stopped = self._thread is None or not self._thread.is_alive()
        self._stop_syncing.set()  # closing the journal flushes it to disk
        if self._syncer is not None:
            self._syncer.join(timeout)
        if writer_stopped:
            self._release_orphan()
        journal = self._journal
        if journal is not None and not journal.close(may_remove=writer_stopped):
            log.warning(
                "prediction log: %d entries left in journal %s for replay",
                self.queue_depth,
                journal.id,
            )

    def _open_journal(self) -> None:
        """Create this process's journal; on failure the process runs without one
        (requests refused, not ready) rather than failing to start: replaying the
        journals of ended processes, its writer frees the room it may be waiting for."""
        try:
            journal = Journal(
                self._directory, segment_bytes=self._segment_bytes, max_bytes=self._max_bytes
            )
        except OSError as exc:
            if str(exc) != self._open_error:  # once, not every probe interval
                log.error("prediction log cannot create its journal, requests are refused: %s", exc)
            self._open_error = str(exc)
            self._metrics.journal_writable.set(0)
            return
        if self._reopen_at:
            log.info("prediction log journal %s created, requests are accepted", journal.id)
        # Before the first request can append: ended processes' journals count
        # against its room.
        self._measure(journal)
        journal.measure = partial(self._measure_room, journal)
        self._journal = journal

    # -- writer thread ---------------------------------------------------------

    def _run(self) -> None:
        # While entries keep coming the writer keeps its database connection; an idle
        # writer gives it back to the pool.
        self._store.hold()
        last_try = False  # made after shutdown began, with the database down
        try:
            while True:
                try:
                    progressed = self._cycle()
                except Exception:  # a bug, not a database problem: keep going
                    log.exception("prediction log writer cycle failed")
                    progressed = False
                if self._closing and not progressed:
                    journal = self._journal
                    if self.queue_depth == 0 or journal is None or journal.closed:
                        return  # drained, or closed under us
                    if not self._database_up or not self._schema.current:
                        if last_try:
                            return  # left in the journal for another process
                        # The database may have come back while the writer waits out
                        # its back-off: one try at once before leaving the rest.
                        last_try = True
                        self._retry_at = 0.0
                        continue
                if progressed and (self._behind or self._closing):
                    continue  # more is waiting: store it at once
                # Caught up: the next transaction takes what comes in the meantime.
                # A cycle costs a transaction and a commit whatever it stores, so at
                # single-record rates polling again at once stored a few entries per
                # commit; a flush or a shutdown wakes the writer at once. Its own
                # interval, longer than the sync thread's: that one bounds what a
                # power loss takes, which needs no transaction.
                if not progressed:
                    self._store.release()
                self._wake.wait(self._write_interval)
                self._wake.clear()
                self._store.hold()
        finally:
            self._store.release()

    def _cycle(self) -> bool:
        """One round of work; True when it stored something and more may be waiting."""
        now = time.monotonic()
        journal = self._journal
        if journal is None and not self._closing and now >= self._reopen_at:
            self._reopen_at = now + self._probe_interval
            self._open_journal()
        elif journal is not None:
            journal.reclaim(free_bytes)
        self._behind = False
        if now < self._retry_at:
            return False
        if not self._schema_checked():
            self._report()
            return False
        progressed = False
        try:
            journal = self._journal
            if journal is not None:
                try:
                    progressed = self._step(journal)
                except _NoRoom:
                    pass  # this journal waits for dead-letter room; ended ones need not
            if not self._closing:
                progressed = self._recover(now) or progressed
        except _Retry:
            self._release_orphan()
        if not progressed and not self._database_up and time.monotonic() >= self._retry_at:
            self._probe()
        self._report()
        return progressed

    def _schema_checked(self) -> bool:
        """Whether the database's schema is the code's: checked before the first store
        and until it is; a mismatch is checked again every probe interval."""
        if self._schema.current:
            return True
        try:
            current = self._schema.verify()
        except Exception as exc:  # no answer: wait as for any outage
            self._mark_down(exc)
            return False
        self._mark_up()
        self._metrics.schema_pending.set(0)
        self._metrics.schema_mismatch.set(0 if current else 1)
        if not current:
            self._retry_at = time.monotonic() + self._probe_interval
        return current

    def _probe(self) -> None:
        """Whether the database is back, asked when nothing was stored: what failed to
        reach it may have been stored by another process since (an ended journal it
        replayed), and this writer may have nothing more to store for a long time."""
        try:
            self._store.probe()
        except Exception as exc:
            self._mark_down(exc)
        else:
            self._mark_up()

    def _report(self) -> None:
        """Set the backlog gauges: after every writer cycle, and every flush interval
        from the sync thread, so that they go on moving while the writer hangs in a
        database call."""
        depth = self.queue_depth
        if depth <= 0:
            self._moved_at = time.monotonic()
        journal = self._journal
        self._metrics.queue_depth.set(depth)
        self._metrics.backlog_bytes.set(0 if journal is None else journal.backlog_bytes)
        self._metrics.stalled_seconds.set(self.stalled_seconds)

    def _step(self, source: Journal | OrphanJournal) -> bool:
        """Store one chunk of ``source`` and advance its checkpoint; raises
        :class:`_NoRoom` while its chunk waits for dead-letter room."""
        # A chunk whose refused lines wait for dead-letter room is tried again every
        # probe interval: the refusals of the lines it held then were logged already.
        waiting = self._waiting.get(source.id)
        if waiting is not None and time.monotonic() < waiting.retry_at:
            raise _NoRoom
        chunk = source.read(self._batch_bytes)
        if not chunk.lines:
            if chunk.moved:
                source.commit(chunk)  # only moves past finished segments
            return False
        entries, refused = self._parse(chunk)
        again = waiting is not None and waiting.start == chunk.start
        refused += self._store_all(entries, reported=waiting.tried if again else 0)
        if refused:
            self._dead_letter(source.id, chunk, refused)
        self._waiting.pop(source.id, None)  # set aside at last
        if not source.commit(chunk):
            return False  # closed under us (shutdown timed out): stop, count nothing
        if source is self._journal:
            self._entries_committed += len(chunk.lines)
            self._moved_at = time.monotonic()
            self._behind = self._behind or chunk.cut
        else:
            self._metrics.rows_replayed.inc(len(chunk.lines) - len(refused))
            self._behind = True
        return True

    @staticmethod
    def _parse(chunk: Chunk) -> tuple[list[tuple[int, LogEntry]], list[int]]:
        """The chunk's entries, each with its line's index, and the indexes of lines
        that are no entries."""
        entries, refused = [], []
        for index, line in enumerate(chunk.lines):
            try:
                entries.append((index, LogEntry.from_line(line)))
            except Exception:  # any line that is not an entry, however it fails
                refused.append(index)
        return entries, refused

    def _store_all(self, entries: list[tuple[int, LogEntry]], *, reported: int = 0) -> list[int]:
        """Store ``entries``; return the indexes of the lines refused even one by one.
        Refusals of the first ``reported`` lines were logged by an earlier try of the
        chunk: they are logged again at debug level only."""
        if not entries:
            return []
        try:
            self._insert([entry for _, entry in entries])
            return []
        except _Retry:
            raise
        except Exception as exc:
            level = logging.DEBUG if reported else logging.ERROR
            log.log(level, "prediction log refused a batch (%s); storing entries one by one", exc)
        refused = []
        for index, entry in entries:
            try:
                self._insert([entry])
            except _Retry:
                raise
            except Exception as exc:
                level = logging.DEBUG if index < reported else logging.ERROR
                log.log(level, "prediction log refused entry %s: %s", entry.request_id, exc)
                refused.append(index)
        return refused

    def _insert(self, entries: list[LogEntry]) -> None:
        try:
            written = self._store.insert(entries)
        except Exception as exc:
            self._metrics.write_errors.inc()
            if not _refuses_the_entry(exc):
                self._mark_down(exc)
                raise _Retry from exc
            raise
        self._mark_up()
        self._metrics.rows_written.labels(table="requests").inc(written.requests)
        self._metrics.rows_written.labels(table="predictions").inc(written.predictions)

    def _dead_letter(self, journal_id: str, chunk: Chunk, refused: list[int]) -> None:
        """Set the chunk's refused lines aside, in journal order, keyed by where they
        are in their journal: a replay of a chunk whose lines were set aside before a
        crash (before its checkpoint moved) neither repeats nor recounts them."""
        positions = chunk.positions()
        lines = [(positions[i], chunk.lines[i]) for i in sorted(refused)]
        try:
            kept = self._dead.write(Span(journal_id, chunk.start, chunk.end), lines)
        except OSError as exc:  # the disk or the files' room is full: keep them, retry
            if str(exc) != self._dead_letter_error:  # once, not every retry
                log.error("prediction log cannot write a dead-letter file: %s", exc)
            self._dead_letter_error = str(exc)
            self._wait_for_room(journal_id, chunk)
            raise _NoRoom from exc
        self._dead_letter_error = ""
        if kept.written:  # counted at once: a retry or a replay skips these lines
            self._metrics.rows_dead_lettered.inc(kept.written)
            log.error("prediction log: %d entries set aside in %s", kept.written, kept.path)
        if kept.already:
            log.warning(
                "prediction log: %d entries of journal %s were set aside before a restart",
                kept.already,
                journal_id,
            )
        try:
            self._dead.sync()
        except OSError as exc:
            log.error("prediction log cannot sync its dead-letter directory: %s", exc)
            self._wait_for_room(journal_id, chunk)
            raise _NoRoom from exc

    def _wait_for_room(self, journal_id: str, chunk: Chunk) -> None:
        retry_at = time.monotonic() + self._probe_interval
        self._waiting[journal_id] = _Waiting(chunk.start, len(chunk.lines), retry_at)

    def _recover(self, now: float) -> bool:
        """Replay a chunk of a dead process's journal, looking for one now and then."""
        if self._orphan is None:
            if now < self._next_recovery:
                return False
            self._next_recovery = now + self._recover_interval
            remove_abandoned(self._directory)
            journal = self._journal
            own = None if journal is None else journal.id
            self._orphan = next(claim_orphans(self._directory, exclude=own), None)
            if self._orphan is None:
                return False
            log.info("replaying journal %s left by a process that ended", self._orphan.id)
        try:
            if self._step(self._orphan):
                return True
        except _NoRoom:
            return False  # kept claimed: tried again when its wait is over
        self._orphan.finish()
        log.info("replayed journal %s", self._orphan.id)
        self._orphan = None
        self._next_recovery = 0.0  # there may be more
        return True

    def _release_orphan(self) -> None:
        if self._orphan is not None:
            self._orphan.release()
            self._orphan = None

    def _sync_loop(self) -> None:
        measure_interval = max(self._flush_interval, MEASURE_INTERVAL)
        measure_at = time.monotonic() + measure_interval
        while not self._stop_syncing.wait(self._flush_interval):
            try:
                self._sync()
            except Exception:  # a failing disk: try again next interval
                log.exception("prediction log cannot flush its journal to disk")
            if time.monotonic() >= measure_at:
                measure_at = time.monotonic() + measure_interval
                try:
                    self._measure()
                except Exception:
                    log.exception("prediction log cannot measure its journal directory")
            self._report()

    def _measure(self, journal: Journal | None = None) -> None:
        """Scan the journal directory: how much of this journal's room (``journal``, or
        this process's) other journals take (:meth:`DirectoryUsage.elsewhere`), for the
        bytes metric. The sync thread does it every :data:`MEASURE_INTERVAL`, whatever
        the writer waits on, so that a worker notices within a second the journal a
        replaced worker left (a new worker measures before its first append). A request
        thread scans (:meth:`_measure_room`: 0.1 ms for 3 journals of a few segments,
        0.7 ms for 8 of 16) only while the room is contested (ended journals share it,
        or the other live journals hold half their share:
        :meth:`DirectoryUsage.contested`, a database outage): a scan per request would
        cost more than the append."""
        usage = self._measure_room(journal or self._journal)
        self._metrics.journal_bytes.set(usage.total)
        self._metrics.dead_letter_bytes.set(self._dead.used_bytes())
        self._metrics.journal_writable.set(self.writable)

    def _measure_room(self, journal: Journal | None) -> DirectoryUsage:
        """Scan the journal directory and set what other journals take out of
        ``journal``'s room, and whether ended journals share it; also called by each
        append while they do."""
        orphan = self._orphan
        usage = directory_usage(
            self._directory,
            own=None if journal is None else journal.id,
            replaying=() if orphan is None else (orphan.id,),
        )
        if journal is not None:
            journal.elsewhere = usage.elsewhere(self._workers, self._max_bytes)
            journal.contested = usage.contested(self._workers, self._max_bytes)
        return usage

    def _sync(self) -> None:
        """``fdatasync`` the journal if something was appended; the sync thread does it
        once per ``flush_interval``, which bounds what a power loss can lose (``kill -9``
        loses nothing unsynced: the page cache outlives the process). Not the writer's
        job: it may wait on the database for as long as the database does not answer (a
        frozen server, a held lock), while requests go on being journaled and answered.
        Nor a sync per writer cycle: that made every cycle wait for the disk, and
        promised no more than the interval does (rows in the database are as durable as
        the database)."""
        journal = self._journal
        if journal is None:
            return
        appended = journal.entries_appended
        if appended == self._synced:
            return
        journal.sync()
        self._synced = appended

    def _mark_up(self) -> None:
        if not self._database_up:
            log.info("prediction log database is back")
        self._database_up = True
        self._retry_delay = 0.0
        self._metrics.database_up.set(1)

    def _mark_down(self, exc: BaseException) -> None:
        if self._database_up:
            log.warning("prediction log database unavailable, entries wait in the journal: %s", exc)
            # Pooled connections may be what is wrong (a read-only server after a
            # failover): retry on new ones.
            self._store.reset()
        self._database_up = False
        self._metrics.database_up.set(0)
        self._back_off()

    def _back_off(self) -> None:
        self._retry_delay = min(max(self._retry_delay * 2, 0.05), self._probe_interval)
        self._retry_at = time.monotonic() + self._retry_delay
