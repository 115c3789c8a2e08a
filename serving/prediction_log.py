"""The prediction log writer: requests never wait on the database, and no entry is lost.

Request threads put entries on a bounded queue; one background thread per process
commits them in batches. When the database fails, the writer retries for
``log_retry_seconds``, then spills batches to a local fsync'd file and probes the
database every ``log_probe_interval``; when it answers again, spilled entries are
replayed. A full queue spills from the request thread instead of dropping.
``close()`` (SIGTERM) drains the queue. Inserts ignore rows already present, so a
batch retried after a commit whose acknowledgement was lost is stored once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from serving.log_entry import LogEntry
from serving.metrics import LogMetrics
from serving.spill import SpillStore
from watchkeeper.db.tables import predictions, requests

log = logging.getLogger(__name__)

_STOP = object()


def _insert_ignoring_duplicates(table: sa.Table, dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"prediction log does not support the {dialect} dialect")


def _is_transient(exc: sa.exc.SQLAlchemyError) -> bool:
    """Connection trouble is worth retrying; a row the database refuses is not."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


class PredictionLog:
    def __init__(
        self,
        engine: sa.Engine,
        spill: SpillStore,
        metrics: LogMetrics,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        queue_size: int = 20_000,
        retry_seconds: float = 5.0,
        probe_interval: float = 2.0,
    ) -> None:
        self._engine = engine
        self._spill = spill
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_seconds = retry_seconds
        self._probe_interval = probe_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        dialect = engine.dialect.name
        self._insert_requests = _insert_ignoring_duplicates(requests, dialect)
        self._insert_predictions = _insert_ignoring_duplicates(predictions, dialect)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._database_up = True
        self._next_probe = 0.0
        self._replay_pending = spill.has_pending()

    # -- request side ----------------------------------------------------------

    def submit(self, entry: LogEntry) -> None:
        """Queue ``entry`` without blocking; spill it at once if the queue is full."""
        if self._closed:
            self._spill_entries([entry])
            return
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._spill_entries([entry])
            return
        self._metrics.queue_depth.inc()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> PredictionLog:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="prediction-log-writer", daemon=True
                )
                self._thread.start()
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain the queue into the database (or the spill file) and stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
        leftovers = self._drain_nowait()
        if leftovers:  # the writer did not finish in time: keep them on disk
            self._spill_entries(leftovers)
        self._spill.seal()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def database_up(self) -> bool:
        return self._database_up

    # -- writer thread ---------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            try:
                if batch:
                    self._write(batch)
                self._maybe_replay()
            except Exception:  # never let the writer die: keep entries on disk
                log.exception("prediction log writer failed; spilling the batch")
                self._spill_entries(batch)

    def _next_batch(self) -> tuple[list[LogEntry], bool]:
        try:
            first = self._queue.get(timeout=self._flush_interval)
        except queue.Empty:
            return [], False
        if first is _STOP:
            rest = self._drain_nowait()
            self._metrics.queue_depth.dec(len(rest))
            return rest, True
        batch = [first]
        deadline = time.monotonic() + self._flush_interval
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=max(remaining, 0))
                    if remaining > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            if item is _STOP:
                batch.extend(self._drain_nowait())
                self._metrics.queue_depth.dec(len(batch))
                return batch, True
            batch.append(item)
        self._metrics.queue_depth.dec(len(batch))
        return batch, False

    def _drain_nowait(self) -> list[LogEntry]:
        items = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if item is not _STOP:
                items.append(item)

    def _write(self, batch: list[LogEntry]) -> None:
        if not self._database_up and not self._probe():
            self._spill_entries(batch)
            return
        deadline = time.monotonic() + self._retry_seconds
        delay = 0.05
        while True:
            try:
                self._insert(batch)
                self._mark_up()
                return
            except sa.exc.SQLAlchemyError as exc:
                self._metrics.write_errors.inc()
                if not _is_transient(exc):
                    self._isolate_bad_entries(batch, exc)
                    return
                if time.monotonic() + delay > deadline:
                    log.warning("prediction log database unavailable, spilling: %s", exc)
                    self._spill_entries(batch)
                    self._mark_down()
                    return
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _insert(self, batch: list[LogEntry]) -> None:
        request_rows = [entry.request_row() for entry in batch]
        prediction_rows = [row for entry in batch for row in entry.prediction_rows()]
        with self._engine.begin() as connection:
            connection.execute(self._insert_requests, request_rows)
            if prediction_rows:
                connection.execute(self._insert_predictions, prediction_rows)
        self._metrics.rows_written.labels(table="requests").inc(len(request_rows))
        self._metrics.rows_written.labels(table="predictions").inc(len(prediction_rows))

    def _isolate_bad_entries(self, batch: list[LogEntry], exc: Exception) -> None:
        """Retry one by one so that one refused entry does not take its batch down."""
        log.error("prediction log refused a batch (%s); retrying entries one by one", exc)
        refused = []
        for entry in batch:
            try:
                self._insert([entry])
            except sa.exc.SQLAlchemyError as entry_exc:
                if _is_transient(entry_exc):
                    self._mark_down()
                    self._spill_entries([entry])
                else:
                    refused.append(entry)
        if refused:
            self._spill.dead_letter(refused)
            self._metrics.rows_dead_lettered.inc(len(refused))

    def _spill_entries(self, entries: list[LogEntry]) -> None:
        if not entries:
            return
        self._spill.write(entries)
        self._metrics.rows_spilled.inc(len(entries))
        self._replay_pending = True

    def _probe(self) -> bool:
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self._probe_interval
        try:
            with self._engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        self._mark_up()
        return True

    def _mark_up(self) -> None:
        if not self._database_up:
            log.info("prediction log database is back")
        self._database_up = True
        self._metrics.database_up.set(1)

    def _mark_down(self) -> None:
        self._database_up = False
        self._next_probe = time.monotonic() + self._probe_interval
        self._metrics.database_up.set(0)

    def _maybe_replay(self) -> None:
        if not self._replay_pending:
            return
        if not self._database_up and not self._probe():
            return
        self._replay_pending = False
        for path in self._spill.claim():
            if not self._replay_file(path):
                self._replay_pending = True
                return

    def _replay_file(self, path: Path) -> bool:
        for chunk in self._spill.read(path, self._batch_size):
            try:
                self._insert(chunk)
            except sa.exc.SQLAlchemyError as exc:
                self._metrics.write_errors.inc()
                if not _is_transient(exc):
                    self._isolate_bad_entries(chunk, exc)
                    continue
                log.warning("replay of %s interrupted, will retry: %s", path.name, exc)
                self._spill.release(path)
                self._mark_down()
                return False
            self._metrics.rows_replayed.inc(len(chunk))
        self._spill.done(path)
        log.info("replayed spilled log entries from %s", path.name)
        return True
