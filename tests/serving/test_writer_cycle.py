"""The writer's fixed costs per cycle: one held database connection while entries keep
coming, and no journal sync (a sync thread flushes the journal once per flush
interval). Each saves CPU per request at single-record rates; none may lose or repeat
an entry."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.log_entry import LogEntry
from serving.log_store import LogStore
from serving.metrics import LogMetrics
from serving.prediction_log import PredictionLog
from tests.log_entries import journaled, log_entry
from tests.processes import wait_for
from watchkeeper.db.tables import requests


def _entry(n: int) -> LogEntry:
    return log_entry(n, 1, received_at=datetime.now(UTC))


def _count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(requests)).scalar())


class _Syncs:
    """Counts the journal's syncs (the real ones still happen)."""

    def __init__(self, log: PredictionLog) -> None:
        self.count = 0
        journal = log._journal  # noqa: SLF001 - what is counted is the journal's fdatasync
        sync = journal.sync

        def counted() -> None:
            self.count += 1
            sync()

        journal.sync = counted  # type: ignore[method-assign]


def _log(engine: sa.Engine, tmp_path: Path, **options: Any) -> PredictionLog:
    return PredictionLog(engine, tmp_path / "journal", LogMetrics(CollectorRegistry()), **options)


def test_busy_cycles_leave_the_journal_sync_to_the_sync_thread(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A busy writer stores a few entries per cycle at single-record rates: its cycles
    never wait for the disk (the sync thread flushes the journal once per flush
    interval), and it stores every entry."""
    log = _log(engine, tmp_path, flush_interval=3600.0, write_interval=3600.0)
    syncs = _Syncs(log)
    try:
        for n in range(5):
            log.submit(_entry(n))
            assert log._cycle()  # noqa: SLF001 - one cycle at a time, without the thread
        assert syncs.count == 0
        assert _count(engine) == 5
    finally:
        log.close()


def test_a_sync_flushes_what_was_appended_and_only_then(engine: sa.Engine, tmp_path: Path) -> None:
    """The bound on what a power loss can take holds: each round of the sync thread
    (once per flush interval) syncs whatever was appended since the last sync, and
    nothing when nothing was."""
    log = _log(engine, tmp_path, flush_interval=3600.0, write_interval=3600.0)
    syncs = _Syncs(log)
    try:
        for n in range(3):
            log.submit(_entry(n))
            log._sync()  # noqa: SLF001 - one round of the sync thread
        assert syncs.count == 3 and log.unsynced_entries == 0
        log._sync()  # noqa: SLF001 - nothing appended since: nothing to sync
        assert syncs.count == 3
    finally:
        log.close()


class _Inserts:
    """Records the size of each batch the log's store inserts (the real inserts still
    happen); ``during_first`` runs inside the first one, as if requests came in while
    the writer's first transaction ran."""

    def __init__(self, log: PredictionLog, during_first: Any = None) -> None:
        self.sizes: list[int] = []
        store = log._store  # noqa: SLF001 - what is counted is the writer's transactions
        insert = store.insert

        def counted(entries: Any) -> Any:
            written = insert(entries)
            self.sizes.append(len(entries))
            if len(self.sizes) == 1 and during_first is not None:
                during_first()
            return written

        store.insert = counted  # type: ignore[method-assign]


def test_a_caught_up_writer_leaves_what_comes_in_for_its_next_interval(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A writer that has stored everything it read waits for its write interval (or a
    flush) before its next transaction, so that a transaction at single-record rates
    stores what came in over an interval rather than the few entries that came in
    while the last one ran: a transaction costs about as much whatever it holds."""
    log = _log(engine, tmp_path, flush_interval=3600.0, write_interval=3600.0)
    inserts = _Inserts(log, during_first=lambda: log.submit(_entry(1)))
    log.submit(_entry(0))
    try:
        log.start()
        assert wait_for(lambda: _count(engine) == 1)
        time.sleep(0.3)  # a writer that polled again at once would have stored it
        assert _count(engine) == 1 and log.queue_depth == 1
        assert log.flush(timeout=10)
        assert inserts.sizes == [1, 1] and _count(engine) == 2
    finally:
        log.close()


def test_the_journal_reaches_the_disk_every_flush_interval_while_the_writer_waits_longer(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """Two intervals: the sync thread flushes the journal to disk every flush interval
    (what a power loss can take), while a caught-up writer waits its own, longer write
    interval before its next transaction (fewer transactions, each holding more)."""
    log = _log(engine, tmp_path, flush_interval=0.02, write_interval=3600.0)
    log.submit(_entry(0))
    try:
        log.start()
        assert wait_for(lambda: _count(engine) == 1)  # stored, then the writer waits
        log.submit(_entry(1))
        assert wait_for(lambda: log.unsynced_entries == 0, timeout=10)
        assert log.queue_depth == 1 and _count(engine) == 1
        assert log.flush(timeout=10)
        assert _count(engine) == 2
    finally:
        log.close()


def test_the_journal_directory_is_scanned_once_a_second_not_every_flush_interval(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync thread flushes the journal every flush interval, but measures the
    directory (other journals' bytes, the dead-letter files') once a second: scanned
    every interval, on cold caches, it was most of what an idle log-on worker cost."""
    import serving.prediction_log as prediction_log

    scans: list[float] = []
    usage = prediction_log.directory_usage

    def counted(directory: Path, **kwargs: Any) -> Any:
        if directory == tmp_path / "journal":  # not another log's, alive in this process
            scans.append(time.monotonic())
        return usage(directory, **kwargs)

    monkeypatch.setattr(prediction_log, "directory_usage", counted)
    log = _log(engine, tmp_path, flush_interval=0.01, write_interval=3600.0)
    syncs = _Syncs(log)
    scans.clear()  # the one made before the journal takes its first entry
    try:
        log.start()
        started = time.monotonic()
        for n in range(25):
            log.submit(_entry(n))
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        log.close()

    assert syncs.count >= 10  # the journal still reached the disk every interval
    during = [at for at in scans if at <= started + elapsed]  # not those of the close
    assert 1 <= len(during) <= elapsed + 1  # once a second, not 250 times in 2.5 s


@pytest.mark.parametrize(
    "lines_per_budget",
    [0, 1.5],
    ids=["a line longer than the budget", "a budget short of the next line"],
)
def test_a_writer_whose_read_left_lines_unread_goes_on_without_waiting(
    engine: sa.Engine, tmp_path: Path, lines_per_budget: float
) -> None:
    """A read cut by ``batch_bytes`` leaves entries unread: the writer stores the next
    at once, however long its write interval. So too when the chunk is well short of
    the budget (long lines: a budget of one and a half lines reads one): waiting an
    interval per chunk, a worker logging 1,000-row columns fell behind its own load and
    took 1.4 s to drain after it."""
    line = len(_entry(0).to_line())
    budget = max(1, int(line * lines_per_budget))
    log = _log(engine, tmp_path, flush_interval=3600.0, write_interval=3600.0, batch_bytes=budget)
    inserts = _Inserts(log)
    for n in range(3):
        log.submit(_entry(n))
    try:
        log.start()
        assert wait_for(lambda: _count(engine) == 3, timeout=10)
        assert inserts.sizes == [1, 1, 1]
    finally:
        log.close()


def test_a_held_connection_serves_every_insert_until_released(engine: sa.Engine) -> None:
    """While held, inserts share one connection (no checkout, and no ping of the
    server, per transaction); released, it is back in the pool."""
    checkouts = []
    sa.event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    store = LogStore(engine)
    store.hold()
    for n in range(5):
        store.insert([journaled(_entry(n))])
    assert len(checkouts) == 1
    store.release()
    assert engine.pool.checkedout() == 0
    assert _count(engine) == 5


@pytest.mark.postgres
def test_a_held_session_compresses_with_lz4_after_a_replayed_batch(
    postgres_engine: sa.Engine,
) -> None:
    """The session asks for LZ4 once, outside the transactions: a batch that meets a
    stored row is rolled back (and stored again through staging), and what follows on
    the same session is still compressed with LZ4."""
    store = LogStore(postgres_engine)
    store.hold()
    first, second = _entry(1), _entry(2)
    store.insert([journaled(first)])
    store.insert([journaled(first), journaled(second)])  # rolled back, then staged
    assert store.staged_batches == 1
    big = log_entry(3, 1000, received_at=datetime.now(UTC))
    store.insert([journaled(big)])
    store.release()
    with postgres_engine.connect() as connection:
        method = connection.exec_driver_sql(
            "SELECT pg_column_compression(features) FROM requests WHERE request_id = %(id)s",
            {"id": big.request_id},
        ).scalar()
    assert method == "lz4"


@pytest.mark.postgres
def test_a_held_connection_the_server_ended_is_replaced(postgres_engine: sa.Engine) -> None:
    """The held connection is not pinged: when PostgreSQL ends its session (a restart,
    an administrator), the next insert fails on it (the writer keeps that batch in the
    journal and retries) and the one after runs on a new connection."""
    store = LogStore(postgres_engine)
    store.hold()
    store.insert([journaled(_entry(0))])
    with postgres_engine.connect() as connection:
        ended = connection.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar()
        assert ended == 1

        def gone() -> bool:
            connection.rollback()  # activity is read once per transaction
            others = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar()
            return others == 0

        assert wait_for(gone, timeout=30)
    with pytest.raises((sa.exc.DBAPIError, psycopg.Error)):
        store.insert([journaled(_entry(1))])
    store.insert([journaled(_entry(1))])
    store.release()
    assert _count(postgres_engine) == 2
