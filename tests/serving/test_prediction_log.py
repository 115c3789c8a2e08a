"""The prediction log on its own: journal, writer, dead letters and replay, on SQLite
and on a real PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from prometheus_client import CollectorRegistry

from serving import database_status
from serving.app import create_app, shutdown
from serving.journal import Journal, JournalFull, JournalUnavailable
from serving.log_body import ESCAPED, received_body, stored_body
from serving.log_entry import LogEntry
from serving.metrics import LogMetrics
from serving.prediction_log import PredictionLog
from serving.services import services
from tests.postgres import PostgresServer
from tests.processes import wait_for
from tests.serving.conftest import fill_disk
from tests.serving.log_entries import make_entry
from watchkeeper.db.engine import create_engine
from watchkeeper.db.features import feature_records
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import predictions, requests


def _poison(n: int) -> LogEntry:
    """An entry no database can store: a lone surrogate cannot be encoded as UTF-8."""
    return make_entry(n, columns={"x": [n], "kind": ["\ud800"]})


def _count(url: str, table: sa.Table = requests) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        n = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()
    engine.dispose()
    return int(n)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def make_log(database_url: str, journal_dir: Path) -> Iterator[Callable[..., PredictionLog]]:
    engines: list[sa.Engine] = []
    logs: list[PredictionLog] = []

    def factory(registry: CollectorRegistry, **options: Any) -> PredictionLog:
        engines.append(create_engine(database_url))
        options.setdefault("flush_interval", 0.01)
        options.setdefault("write_interval", 0.01)
        logs.append(PredictionLog(engines[-1], journal_dir, LogMetrics(registry), **options))
        return logs[-1]

    yield factory
    for log in logs:
        log.close(timeout=10)
    for engine in engines:
        engine.dispose()


def test_entries_are_written_in_batches_and_drained_on_close(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(registry, batch_bytes=2048).start()

    for n in range(100):
        log.submit(make_entry(n))
    log.close()

    assert _count(database_url) == 100
    assert _count(database_url, predictions) == 100
    assert (
        registry.get_sample_value("watchkeeper_log_rows_written_total", {"table": "predictions"})
        == 100
    )
    assert registry.get_sample_value("watchkeeper_log_queue_depth") == 0
    assert os.listdir(journal_dir) == []  # drained: nothing left to replay


def test_a_wait_is_measured_from_when_nothing_waited_not_from_the_last_store(
    make_log: Callable[..., PredictionLog],
) -> None:
    """After a quiet spell, a new entry has waited only as long as it has: the stall
    gauge counts from the writer's last store or from the last time nothing waited,
    whichever is later, and grows while the entry waits."""
    registry = CollectorRegistry()
    # The writer stores only when flushed; the sync thread reports every 10 ms.
    log = make_log(registry, flush_interval=0.01, write_interval=60).start()
    log.submit(make_entry(1))
    assert log.flush(timeout=30)
    quiet = 2.0
    time.sleep(quiet)  # the quiet spell is the point: nothing to wait on
    log.submit(make_entry(2))
    assert log.status().stalled_seconds < quiet / 2
    assert wait_for(lambda: log.status().stalled_seconds >= 0.2, timeout=10)
    assert wait_for(
        lambda: (registry.get_sample_value("watchkeeper_log_stalled_seconds") or 0) >= 0.2
    )
    assert log.flush(timeout=30)
    assert log.status().stalled_seconds == 0
    assert wait_for(lambda: registry.get_sample_value("watchkeeper_log_stalled_seconds") == 0)


def test_stored_rows_read_back_as_they_were_sent(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    log = make_log(CollectorRegistry()).start()
    sent = make_entry(7, single=False, columns={"x": [1, None], "kind": ["a", "b"]})
    sent.values, sent.lower, sent.upper = [10.0, 20.0], [9.0, 19.0], [11.0, 21.0]
    log.submit(sent)
    log.close()

    engine = create_engine(database_url)
    with engine.connect() as connection:
        request = connection.execute(sa.select(requests)).one()._mapping
        found = connection.execute(sa.select(predictions).order_by(predictions.c.seq)).all()
        features = feature_records(connection, found)
    engine.dispose()
    rows = [r._mapping for r in found]
    assert request["received_at"] == sent.received_at
    assert request["n_items"] == 2
    assert request["error"] is None  # SQL NULL, not the JSON text null
    assert [r["prediction_id"] for r in rows] == [f"{7:032x}.0", f"{7:032x}.1"]
    assert features == [{"x": 1, "kind": "a"}, {"x": None, "kind": "b"}]
    assert request["features"] == {"x": [1, None], "kind": ["a", "b"]}  # once per request
    assert [r["features"] for r in rows] == [None, None]
    assert [(r["prediction"], r["lower"], r["upper"]) for r in rows] == [
        (10.0, 9.0, 11.0),
        (20.0, 19.0, 21.0),
    ]


def test_successful_rows_store_no_error_as_sql_null(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    log = make_log(CollectorRegistry()).start()
    log.submit(make_entry(1))
    log.close()
    engine = create_engine(database_url)
    with engine.connect() as connection:
        nulls = connection.execute(
            sa.select(sa.func.count()).select_from(requests).where(requests.c.error.is_(None))
        ).scalar()
    engine.dispose()
    assert nulls == 1


@pytest.mark.parametrize("shutdown", ["running", "drained-at-close"])
def test_one_poison_entry_among_a_thousand_is_dead_lettered_and_the_rest_logged(
    database_url: str,
    journal_dir: Path,
    make_log: Callable[..., PredictionLog],
    shutdown: str,
) -> None:
    registry = CollectorRegistry()
    log = make_log(registry, batch_bytes=64 * 1024)
    if shutdown == "running":
        log.start()
    for n in range(1000):
        log.submit(make_entry(n))
        if n == 500:
            log.submit(_poison(10_000))
    if shutdown == "running":
        wait_for(lambda: log.queue_depth == 0, timeout=60)
        for n in range(1000, 1010):  # the writer lives on after the poison entry
            log.submit(make_entry(n))
    else:
        log.start()  # everything is drained by close(), as on SIGTERM
    log.close()

    expected = 1010 if shutdown == "running" else 1000
    assert _count(database_url) == expected
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 1
    dead = list(journal_dir.glob("deadletter-*.jsonl"))
    assert len(dead) == 1
    assert stat.S_IMODE(dead[0].stat().st_mode) == 0o600
    (line,) = dead[0].read_bytes().splitlines()
    header, _, columns = line.partition(b"\t")  # lossless: the surrogate is still there
    assert json.loads(header)["request_id"] == f"{10_000:032x}"
    assert json.loads(columns)["kind"] == ["\ud800"]


def test_past_their_byte_limit_refused_entries_wait_in_the_journal_not_in_more_files(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    """A database that refuses every entry must not fill the disk with dead-letter
    files: past their limit, refused entries stay in the journal (whose own bound
    refuses requests) and are set aside once an operator has made room."""
    registry = CollectorRegistry()
    log = make_log(registry, dead_letter_max_bytes=1, probe_interval=0.05).start()
    log.submit(_poison(1))
    assert log.flush(timeout=30)
    assert len(list(journal_dir.glob("deadletter-*.jsonl"))) == 1

    log.submit(make_entry(2))
    log.submit(_poison(3))  # the files are past their limit: this one waits
    log.submit(make_entry(4))
    assert not log.flush(timeout=2)
    first = list(journal_dir.glob("deadletter-*.jsonl"))
    assert len(first) == 1
    # not checkpointed past the refused entry (entry 2 may have had a chunk of its own)
    assert log.queue_depth in (2, 3)
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 1
    assert wait_for(
        lambda: (
            registry.get_sample_value("watchkeeper_log_dead_letter_bytes")
            == first[0].stat().st_size
        )
    )

    first[0].unlink()  # inspected and moved away: room again
    assert log.flush(timeout=30)
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 2
    (kept,) = journal_dir.glob("deadletter-*.jsonl")
    (line,) = kept.read_bytes().splitlines()
    assert json.loads(line.partition(b"\t")[0])["request_id"] == f"{3:032x}"
    assert _count(database_url) == 2  # entries 2 and 4, once each


def test_an_entry_waiting_for_dead_letter_room_is_reported_once_not_at_every_retry(
    journal_dir: Path, make_log: Callable[..., PredictionLog], caplog: pytest.LogCaptureFixture
) -> None:
    """While the dead-letter files are at their limit, a refused entry's chunk is tried
    again every probe interval: the database's refusal of it was logged again each time
    (a line per refused entry every 2 s, for as long as nobody made room)."""
    registry = CollectorRegistry()
    log = make_log(registry, dead_letter_max_bytes=1, probe_interval=0.05).start()
    try:
        log.submit(_poison(1))
        assert log.flush(timeout=30)  # set aside: the files are past their limit now
        attempts = registry.get_sample_value("watchkeeper_log_write_errors_total")
        caplog.clear()
        log.submit(make_entry(3, model_version=None))  # the database refuses it

        def tried(times: int) -> bool:
            errors = registry.get_sample_value("watchkeeper_log_write_errors_total")
            return errors >= attempts + times

        assert wait_for(lambda: tried(10), timeout=30)
        log.submit(make_entry(6, model_version=None))  # joins the waiting chunk
        assert wait_for(lambda: tried(30), timeout=30)
    finally:
        log.close(timeout=5)

    def reports(n: int) -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.levelno >= logging.WARNING and f"{n:032x}" in record.getMessage()
        ]

    assert len(reports(3)) == 2, reports(3)  # the batch's refusal and the entry's, once
    assert len(reports(6)) == 1, reports(6)  # a line new to the chunk: its own, once


def test_a_replayed_chunk_waiting_for_dead_letter_room_is_reported_once_beside_traffic(
    journal_dir: Path, make_log: Callable[..., PredictionLog], caplog: pytest.LogCaptureFixture
) -> None:
    """The marker of a chunk waiting for dead-letter room belongs to its journal: a
    dead process's chunk, replayed beside the live journal's traffic, is reported once
    though the live journal's chunks are stored in between."""
    ended = Journal(journal_dir, segment_bytes=1 << 20, max_bytes=1 << 30)
    ended.append(make_entry(5, model_version=None).to_line())  # the database refuses it
    ended.close(may_remove=False)  # as the lock goes when a process dies
    # another chunk's dead letters, past the limit
    (journal_dir / "deadletter-j-1-0123456789ab-0.0-0.10.jsonl").write_bytes(b"x" * 10)
    registry = CollectorRegistry()
    log = make_log(
        registry, dead_letter_max_bytes=1, probe_interval=0.05, recover_interval=0.05
    ).start()
    try:
        n = 100
        deadline = time.monotonic() + 30
        while (
            registry.get_sample_value("watchkeeper_log_write_errors_total") or 0
        ) < 10 and time.monotonic() < deadline:
            log.submit(make_entry(n))  # the live journal's chunks are stored meanwhile
            n += 1
            time.sleep(0.02)
        assert registry.get_sample_value("watchkeeper_log_write_errors_total") >= 10
    finally:
        log.close(timeout=5)

    reports = [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and f"{5:032x}" in record.getMessage()
    ]
    # the batch's refusal and the entry's, once
    assert len(reports) == 2, [record.getMessage() for record in reports]


def test_ended_journals_are_replayed_while_the_live_journal_waits_for_dead_letter_room(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    """A chunk of the live journal whose refused entry cannot be set aside (the
    dead-letter files are at their limit) waits, and the journal behind it. The replay
    of journals that ended processes left waited with it: the writer did not reach it
    while the live chunk waited, so their storable entries stayed out of the database
    until someone made room."""
    registry = CollectorRegistry()
    log = make_log(
        registry, dead_letter_max_bytes=1, probe_interval=0.05, recover_interval=0.05
    ).start()
    try:
        # another chunk's dead letters, past the limit
        (journal_dir / "deadletter-j-1-0123456789ab-0.0-0.10.jsonl").write_bytes(b"x" * 10)
        log.submit(make_entry(3, model_version=None))  # the database refuses it

        def tried(times: int) -> bool:
            errors = registry.get_sample_value("watchkeeper_log_write_errors_total")
            return (errors or 0) >= times

        assert wait_for(lambda: tried(4), timeout=30)  # it waits, tried again and again
        ended = Journal(journal_dir, segment_bytes=1 << 20, max_bytes=1 << 30)
        for n in range(100, 150):
            ended.append(make_entry(n).to_line())
        ended.close(may_remove=False)  # as the lock goes when a process dies
        assert wait_for(lambda: _count(database_url) == 50, timeout=20)

        def replayed() -> float | None:  # counted once the chunk's checkpoint moved
            return registry.get_sample_value("watchkeeper_log_rows_replayed_total")

        assert wait_for(lambda: replayed() == 50, timeout=20)
        assert log.queue_depth == 1  # the refused entry still waits for room
    finally:
        log.close(timeout=5)


# Entries refused as invalid (not as unavailable): on both databases predictions without
# a model version (the log store refuses them, as the former predictions table's NOT NULL
# column did); on PostgreSQL also a status code that overflows its SMALLINT column.
_REFUSALS = {
    "predictions-without-a-version": (lambda n: make_entry(n, model_version=None), ""),
    "smallint-overflow": (lambda n: make_entry(n, status_code=70_000), "postgresql"),
}


@pytest.mark.parametrize("refusal", sorted(_REFUSALS))
def test_entry_the_database_refuses_is_dead_lettered_without_losing_its_batch(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog], refusal: str
) -> None:
    make_refused, only_on = _REFUSALS[refusal]
    if not database_url.startswith(only_on):
        pytest.skip("SQLite stores any integer in a SMALLINT column")
    registry = CollectorRegistry()
    log = make_log(registry)  # not started: the three entries are read as one batch
    refused = make_refused(2)
    log.submit(make_entry(1))
    log.submit(refused)
    log.submit(make_entry(3))
    log.start()
    log.close()

    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored = set(connection.execute(sa.select(requests.c.request_id)).scalars())
        stored_predictions = set(connection.execute(sa.select(predictions.c.request_id)).scalars())
    engine.dispose()
    assert stored == stored_predictions == {f"{1:032x}", f"{3:032x}"}
    (dead,) = journal_dir.glob("deadletter-*.jsonl")
    # the refused entry exactly as it was journaled, and nothing else
    assert dead.read_bytes().splitlines() == [refused.to_line().rstrip(b"\n")]
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 1
    # the batch was refused whole, then each entry tried alone: only one alone failed
    assert registry.get_sample_value("watchkeeper_log_write_errors_total") == 2
    assert (
        registry.get_sample_value("watchkeeper_log_rows_written_total", {"table": "requests"}) == 2
    )


def test_rejected_body_with_a_nul_byte_is_stored_escaped(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(registry).start()
    log.submit(
        make_entry(
            1,
            status_code=400,
            columns={},
            values=[],
            lower=[],
            upper=[],
            error={"code": "bad_request", "message": "x"},
            body=stored_body(b'{"a": "\x00\xff"}'),
        )
    )
    log.close()

    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 0
    engine = create_engine(database_url)
    with engine.connect() as connection:
        body = connection.execute(sa.select(requests.c.body)).scalar()
    engine.dispose()
    assert body == ESCAPED + '{"a": "\\x00\\xff"}'
    assert received_body(body) == b'{"a": "\x00\xff"}'


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_that_dies_is_restarted_and_counted(
    database_url: str, make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    log = make_log(registry)
    original = log._cycle  # noqa: SLF001
    calls = {"n": 0}

    def dies_once() -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("simulated death of the writer thread")
        return original()

    monkeypatch.setattr(log, "_cycle", dies_once)
    log.start()
    wait_for(lambda: not log.status().writer_alive or calls["n"] > 1, timeout=10)
    log.submit(make_entry(1))  # the next request notices and restarts it
    wait_for(lambda: log.queue_depth == 0, timeout=30)

    status = log.status()
    assert status.writer_alive
    assert status.writer_restarts == 1
    assert registry.get_sample_value("watchkeeper_log_writer_restarts_total") == 1
    log.close()
    assert _count(database_url) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_sync_thread_that_dies_is_restarted_by_the_next_request(
    database_url: str, make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request checks two flags the threads set as they end, not the threads
    themselves: a dead sync thread is noticed all the same, and flushes again."""
    log = make_log(CollectorRegistry())
    original = log._sync_loop  # noqa: SLF001
    calls = {"n": 0}

    def dies_once() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("simulated death of the sync thread")
        original()

    monkeypatch.setattr(log, "_sync_loop", dies_once)
    log.start()
    first = log._syncer  # noqa: SLF001
    assert first is not None
    first.join(timeout=10)
    assert not first.is_alive()
    log.submit(make_entry(1))  # the next request notices and restarts it
    assert wait_for(lambda: calls["n"] == 2 and log.unsynced_entries == 0, timeout=10)
    assert log.status().writer_restarts == 0  # the writer was never down


def test_a_full_journal_refuses_new_entries_until_the_writer_catches_up(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(registry, max_bytes=4096)  # writer not started: nothing drains
    accepted = 0
    with pytest.raises(JournalFull):
        for n in range(1000):
            log.submit(make_entry(n))
            accepted += 1
    assert log.full
    assert registry.get_sample_value("watchkeeper_log_entries_rejected_total") == 1
    log.start()
    wait_for(lambda: not log.full, timeout=30)
    log.submit(make_entry(5000))
    log.close()
    assert _count(database_url) == accepted + 1


def test_two_live_journals_sharing_room_with_an_ended_one_stay_within_the_bound(
    journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    """Two workers' journals, and one a killed worker left that takes more than a
    worker's limit: the live ones share what is left. Each measured the others once a
    second, so each took the room the other had taken since: together they passed
    workers × the limit by what both appended within that second (8 % in an attack
    run), not by one entry each."""
    max_bytes = 64 * 1024
    ended = Journal(journal_dir, segment_bytes=16 * 1024, max_bytes=1 << 30)
    for _ in range(max_bytes * 5 // 4 // len(make_entry(0).to_line())):
        ended.append(make_entry(0).to_line())
    ended.close(may_remove=False)  # as the lock goes when a process dies
    # Writers not started: nothing is stored, both fill their room.
    logs = [
        make_log(CollectorRegistry(), max_bytes=max_bytes, segment_bytes=16 * 1024, workers=2)
        for _ in range(2)
    ]
    full = [False, False]
    n = 0
    while not all(full):
        for i, log in enumerate(logs):
            if full[i]:
                continue
            try:
                log.submit(make_entry(n))
            except JournalFull:
                full[i] = True
            n += 1

    entry = len(make_entry(n).to_line())
    on_disk = sum(path.stat().st_size for path in journal_dir.glob("*.seg"))
    assert on_disk <= 2 * max_bytes + 2 * entry, (on_disk, 2 * max_bytes)


def test_a_log_started_on_a_full_disk_replays_ended_journals_and_then_journals_its_own(
    database_url: str, small_disk: Path
) -> None:
    """A worker replacing one that died while the journal's disk was full could not
    create its journal and failed to start, and with it the whole server: what waited
    on the disk could then never be replayed. It starts, refuses entries while it has
    no journal, replays the ended journals (which gives their room back) and creates
    its journal then."""
    directory = small_disk / "journal"
    ended = Journal(directory, segment_bytes=1 << 20, max_bytes=1 << 30)
    for n in range(200):
        ended.append(make_entry(n).to_line())
    ended.close(may_remove=False)  # as the lock goes when a process dies
    (directory / "j-1-0123456789ab.ckpt.new").touch()  # a creation that failed before
    fill_disk(small_disk)
    registry = CollectorRegistry()
    engine = create_engine(database_url)
    log = PredictionLog(
        engine,
        directory,
        LogMetrics(registry),
        flush_interval=0.01,
        write_interval=0.01,
        probe_interval=0.05,
        recover_interval=0.05,
    )
    try:
        assert not log.status().journal_writable
        assert registry.get_sample_value("watchkeeper_log_journal_writable") == 0
        with pytest.raises(JournalUnavailable):
            log.submit(make_entry(1000))
        log.start()
        assert wait_for(lambda: log.writable, timeout=30)
        log.submit(make_entry(1000))
        assert log.flush(timeout=30)
    finally:
        log.close(timeout=10)
        engine.dispose()
    assert _count(database_url) == 201
    assert registry.get_sample_value("watchkeeper_log_rows_replayed_total") == 200
    assert list(directory.glob("*.ckpt.new")) == []


_KILLED_WRITER = """
import os, sys
from datetime import UTC, datetime
from serving.journal import Journal
from serving.log_entry import LogEntry
journal = Journal(sys.argv[1], segment_bytes=4096, max_bytes=1 << 30)
for n in range(int(sys.argv[2])):
    journal.append(LogEntry(
        request_id=f"{n:032x}", received_at=datetime.now(UTC), endpoint="/predict",
        method="POST", status_code=200, latency_seconds=0.0, model_version="v1",
        columns={"x": [n]}, values=[1.0], lower=[0.0], upper=[2.0]).to_line())
print("appended", flush=True)
sys.stdin.read()
"""


def _journaling_child(journal_dir: Path, entries: int) -> subprocess.Popen[str]:
    """A process that has journaled ``entries`` in ``journal_dir`` and waits."""
    journal_dir.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(journal_dir), str(entries)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "appended"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    """``kill -9``: its journal is left as a crash leaves it."""
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)


def test_journal_of_a_killed_process_is_replayed_once_by_another(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    child = _journaling_child(journal_dir, 300)
    registry = CollectorRegistry()
    log = make_log(registry).start()  # a live owner's journal is left alone
    assert len(list(journal_dir.glob("*.seg"))) > 1  # spread over several segments
    _kill(child)

    def replayed_and_removed() -> bool:
        left = [p for p in journal_dir.iterdir() if p.name.startswith(f"j-{child.pid}-")]
        replayed = registry.get_sample_value("watchkeeper_log_rows_replayed_total")
        return replayed == 300 and not left

    assert wait_for(replayed_and_removed, timeout=90)
    log.close()
    assert _count(database_url) == 300
    assert os.listdir(journal_dir) == []


# A writer killed (kill -9 from the test) after it set a poison entry aside and before
# its checkpoint moved past it: the child stops right there and says so, with what it
# counted.
_KILLED_AFTER_DEAD_LETTERING = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path
from prometheus_client import CollectorRegistry
from serving.log_entry import LogEntry
from serving.metrics import LogMetrics
from serving.prediction_log import PredictionLog
from watchkeeper.db.engine import create_engine

def make_entry(n, kind):
    return LogEntry(
        request_id=f"{n:032x}", received_at=datetime.now(UTC), endpoint="/predict",
        method="POST", status_code=200, latency_seconds=0.0, model_version="v1",
        columns={"x": [n], "kind": [kind]}, values=[1.0], lower=[0.0], upper=[2.0])

registry = CollectorRegistry()
log = PredictionLog(create_engine(sys.argv[1]), Path(sys.argv[2]), LogMetrics(registry),
                    flush_interval=0.01, write_interval=0.01)
dead_letter = log._dead_letter

def then_stop(*args, **kwargs):
    dead_letter(*args, **kwargs)
    counted = registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total")
    print("dead-lettered", int(counted), flush=True)
    threading.Event().wait()

log._dead_letter = then_stop
for n in range(3):
    log.submit(make_entry(n, "a"))
log.submit(make_entry(10_000, "\\ud800"))  # a lone surrogate: no database can store it
log.submit(make_entry(3, "a"))
log.start()
sys.stdin.read()
"""


def test_a_replay_after_a_crash_dead_letters_an_entry_once(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    journal_dir.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_AFTER_DEAD_LETTERING, database_url, str(journal_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().split() == ["dead-lettered", "1"]
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)

    registry = CollectorRegistry()
    log = make_log(registry).start()  # replays the killed process's journal

    def replayed() -> bool:
        return not [p for p in journal_dir.iterdir() if p.name.startswith(f"j-{child.pid}-")]

    assert wait_for(replayed, timeout=90)
    log.close()
    assert _count(database_url) == 4
    lines = [
        line
        for path in journal_dir.glob("deadletter-*.jsonl")
        for line in path.read_bytes().split(b"\n")
        if line
    ]
    assert [json.loads(line.partition(b"\t")[0])["request_id"] for line in lines] == [
        f"{10_000:032x}"
    ]
    # counted once: by the killed process (its count stays in the multiprocess files)
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 0


def test_replaying_an_orphan_twice_stores_its_entries_once(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    # A replayed entry carries its journaled time: on PostgreSQL the log's keys include
    # it (time partitions, watchkeeper.db.partitions).
    received = datetime.now(UTC)
    first = make_log(CollectorRegistry()).start()
    for n in range(10):
        first.submit(make_entry(n, received_at=received))
    first.close()
    # The same entries again, as a process that died after its commit but before its
    # checkpoint would leave them.
    second = make_log(CollectorRegistry()).start()
    for n in range(10):
        second.submit(make_entry(n, received_at=received))
    second.close()
    assert _count(database_url) == 10


def test_concurrent_request_threads_lose_nothing(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    log = make_log(CollectorRegistry(), segment_bytes=8192).start()

    def send(offset: int) -> None:
        for n in range(250):
            log.submit(make_entry(offset + n))

    threads = [threading.Thread(target=send, args=(i * 1000,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert _count(database_url) == 2000


def test_a_failed_append_does_not_swallow_the_next_entry(
    database_url: str,
    journal_dir: Path,
    make_log: Callable[..., PredictionLog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import serving.journal as journal_module

    registry = CollectorRegistry()
    log = make_log(registry).start()
    real_write = os.write
    calls = {"n": 0}

    def disk_fills_midway(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, bytes(data[:20]))  # part of the line reaches the file
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "write", disk_fills_midway)
    with pytest.raises(JournalUnavailable):
        log.submit(make_entry(1))
    log.submit(make_entry(2))  # acknowledged: it must reach the database whole
    monkeypatch.undo()
    log.close()

    assert _count(database_url) == 1
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 0
    assert registry.get_sample_value("watchkeeper_log_entries_rejected_total") == 1


def test_a_segment_that_cannot_be_opened_keeps_appends_in_the_current_one(
    database_url: str, make_log: Callable[..., PredictionLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_log(CollectorRegistry(), segment_bytes=1024).start()
    journal = log._journal  # noqa: SLF001
    real_open = journal._open_segment  # noqa: SLF001
    failures = {"left": 1}

    def fails_once(index: int) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(24, "Too many open files")
        return real_open(index)

    monkeypatch.setattr(journal, "_open_segment", fails_once)
    refused = 0
    for n in range(20):  # crosses the segment size: the first rotation fails
        try:
            log.submit(make_entry(n))
        except JournalUnavailable:
            refused += 1
    log.close()
    assert refused == 1
    assert _count(database_url) == 19


def _stores_the_next_entry_only(
    log: PredictionLog, registry: CollectorRegistry, database_url: str, *, dead_lettered: int
) -> None:
    """After lines that are no entries: a good entry journaled next is stored, alone,
    and the lines before it were counted as dead-lettered."""
    log.submit(make_entry(2))
    assert log.flush(timeout=30)
    log.close()
    assert _count(database_url) == 1
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == dead_lettered


def test_a_damaged_journal_line_is_dead_lettered_and_the_writer_goes_on(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(registry).start()
    log._journal.append(b'{"received_us": 1e300, "request_id": "x"}\n')  # noqa: SLF001
    _stores_the_next_entry_only(log, registry, database_url, dead_lettered=1)


def test_a_line_whose_columns_are_cut_is_dead_lettered_not_stored(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    """The writer stores the columns' text without parsing it (PostgreSQL keeps it as
    text since migration 0008): a line whose columns part is not a whole JSON object
    must not reach the database, where every reader would fail to decode it."""
    registry = CollectorRegistry()
    log = make_log(registry).start()
    head, _, columns = make_entry(1).to_line().partition(b"\t")
    log._journal.append(head + b"\t" + columns[:5] + b"\n")  # noqa: SLF001
    _stores_the_next_entry_only(log, registry, database_url, dead_lettered=1)


def test_a_line_whose_columns_hold_zeroed_bytes_is_dead_lettered_not_stored(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    """After a power loss some filesystems (XFS, ext4 without ``data=ordered``) read
    blocks that never reached the disk as zeros: a large line can keep its first and
    last bytes and hold a run of NUL bytes between them. JSON text never holds a raw
    NUL, so such columns are damaged: set aside, never stored (SQLite would keep the
    text, and every reader of the request's features would fail to decode it)."""
    registry = CollectorRegistry()
    log = make_log(registry).start()
    head, _, columns = make_entry(1, columns={"x": [1.5] * 400}).to_line().partition(b"\t")
    middle = len(columns) // 2
    zeroed = columns[:middle] + bytes(64) + columns[middle + 64 :]
    log._journal.append(head + b"\t" + zeroed)  # noqa: SLF001
    _stores_the_next_entry_only(log, registry, database_url, dead_lettered=1)


def test_a_line_whose_fields_have_the_wrong_types_is_dead_lettered_and_the_writer_goes_on(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    """A line that parses but is no entry this version writes (damaged, or journaled by
    another version sharing the directory): SQLite's driver refuses a list or an object
    as a value with an error that also means "the database is unusable", so the writer
    retried the line for ever and stored nothing after it; a number as text it stored.
    Such lines are set aside like any line that is not an entry, on both databases."""
    registry = CollectorRegistry()
    log = make_log(registry).start()
    head, _, columns = make_entry(1).to_line().partition(b"\t")
    wrong: list[dict[str, Any]] = [
        {"body": {"text": "x"}},
        {"endpoint": ["/predict"]},
        {"latency_seconds": "0.5"},
        {"status_code": "200"},
        {"single": 1},
        {"error": "oops"},
    ]
    _journal_with_changes(log, head, columns, wrong)
    _stores_the_next_entry_only(log, registry, database_url, dead_lettered=len(wrong))


def _journal_with_changes(
    log: PredictionLog, head: bytes, columns: bytes, changes: list[dict[str, Any]]
) -> None:
    """Journal one line per change: ``head``'s fields with the change's, ``columns``."""
    for fields in changes:
        line = json.dumps({**json.loads(head), **fields}).encode()
        log._journal.append(line + b"\t" + columns)  # noqa: SLF001


def test_a_line_whose_numbers_do_not_line_up_is_dead_lettered_and_the_writer_goes_on(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    """Lists of bounds, scores or probabilities of another length than the predictions,
    or a single record with several: no entry this version writes. PostgreSQL's rows
    were built until an IndexError, which the writer took for the database's fault and
    retried for ever; a single record's rows would all share one prediction id, and
    all but the first be dropped as already stored."""
    registry = CollectorRegistry()
    log = make_log(registry).start()
    head, _, columns = make_entry(1, single=False).to_line().partition(b"\t")
    two = [1.0, 2.0]
    wrong: list[dict[str, Any]] = [
        {"values": two, "lower": [1.0], "upper": two},
        {"values": two, "lower": two, "upper": two, "ood": [0.5]},
        {"values": two, "lower": two, "upper": two, "probabilities": [[0.5, 0.5]]},
        {"values": two, "lower": two, "upper": two, "single": True},
    ]
    _journal_with_changes(log, head, columns, wrong)
    _stores_the_next_entry_only(log, registry, database_url, dead_lettered=len(wrong))


@contextmanager
def _read_only(database_url: str) -> Iterator[None]:
    """The database refuses writes, as a PostgreSQL server does after a failover, until
    the block ends."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a read-only server (as after a failover) is a PostgreSQL case")
    name = database_url.rsplit("/", 1)[1]
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")

    def read_only(on: bool) -> None:
        with admin.connect() as connection:
            value = "on" if on else "off"
            connection.execute(
                sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
            )

    read_only(True)
    try:
        yield
    finally:
        read_only(False)
        admin.dispose()


def test_a_read_only_database_delays_entries_instead_of_dead_lettering_them(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    with _read_only(database_url):
        log = make_log(registry, probe_interval=0.2).start()
        for n in range(5):
            log.submit(make_entry(n))
        assert wait_for(lambda: not log.database_up, timeout=30)
    assert log.flush(timeout=60)
    log.close()
    assert _count(database_url) == 5
    assert registry.get_sample_value("watchkeeper_log_rows_dead_lettered_total") == 0


@pytest.mark.postgres
def test_a_connection_the_readiness_probe_holds_while_the_writer_resets_the_pool_is_closed(
    postgres_server: PostgresServer, make_settings: Callable[..., Any], monkeypatch: Any
) -> None:
    """The writer resets the pool it shares with the readiness probe when the database
    refuses its writes (a failover). The connection the probe had checked out then went
    back to a discarded pool, open after shutdown until the garbage collector deleted it
    (psycopg's ResourceWarning, which failed a later test in CI)."""
    url = postgres_server.migrated_database()
    name = sa.make_url(url).database
    held: list[Any] = []
    probe_holds, writer_reset = threading.Event(), threading.Event()

    def revision_held_over_the_reset(engine: sa.Engine) -> str | None:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            # The first check of this test's probe (not another app's, alive in this
            # process) keeps its connection until the writer reset.
            if not held and engine.url.database == name:
                held.append(connection.connection.dbapi_connection)
                probe_holds.set()
                writer_reset.wait(60)
        return revision

    monkeypatch.setattr(database_status, "current_revision", revision_held_over_the_reset)
    app = create_app(
        make_settings(database_url=url, log_write_interval=0.02, log_probe_interval=0.2),
        registry=CollectorRegistry(),
    )
    built = services(app)
    assert built.prediction_log is not None
    admin = create_engine(postgres_server.url(), isolation_level="AUTOCOMMIT")

    def read_only(on: bool) -> None:
        value = "on" if on else "off"
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}'
            )

    try:
        assert probe_holds.wait(30)
        read_only(True)  # a failover: writes are refused on new connections
        with admin.connect() as connection:  # the writer's are new from now on
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> :probe"
                ),
                {"name": name, "probe": held[0].info.backend_pid},
            )
        built.prediction_log.submit(make_entry(1))
        assert wait_for(lambda: not built.prediction_log.database_up, timeout=30)
        writer_reset.set()
        assert wait_for(lambda: built.database_probe.state.checked_at is not None)
        read_only(False)
    finally:
        writer_reset.set()
        shutdown(app, timeout=30)  # also when the test fails: its threads must not outlive it
        built.engine.dispose()
        admin.dispose()
        postgres_server.drop_database(url)

    assert held[0].closed


def test_a_writer_with_nothing_to_store_sees_the_database_come_back(
    database_url: str, journal_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    """A worker failed to replay an ended journal while the database refused writes,
    and another worker replayed it once it could: the first has nothing left to
    store, and must still see the database back (its gauge and readiness said "down"
    until a request happened to reach it, and the critical alert fired meanwhile)."""
    child = _journaling_child(journal_dir, 5)
    _kill(child)
    registry, other = CollectorRegistry(), CollectorRegistry()
    with _read_only(database_url):
        # It claims the ended journal at once, and not again within the test.
        log = make_log(registry, probe_interval=0.2, recover_interval=3600).start()
        assert wait_for(lambda: not log.database_up, timeout=30)
        assert wait_for(lambda: list(journal_dir.glob(f"j-{child.pid}-*")) != [], timeout=30)
    make_log(other, recover_interval=0.1).start()
    assert wait_for(
        lambda: other.get_sample_value("watchkeeper_log_rows_replayed_total") == 5, timeout=60
    )

    assert wait_for(lambda: log.database_up, timeout=30)
    assert registry.get_sample_value("watchkeeper_log_database_up") == 1
    assert _count(database_url) == 5


def _assert_flushed_and_reported_meanwhile(log: PredictionLog, registry: CollectorRegistry) -> None:
    """Entries journaled while the database does not answer: the writer reads them
    and waits in its insert, and they must still reach the disk, and the metrics must
    show them waiting, for longer and longer: the writer, stuck in one call, neither
    fails nor reports anything meanwhile."""
    for n in range(10):
        log.submit(make_entry(n))
    # The power-loss promise: what was appended more than about a flush interval ago
    # is on disk, also while the writer cannot store it.
    assert wait_for(lambda: log.unsynced_entries == 0, timeout=10)
    assert log.queue_depth >= 10  # still waiting for the database

    def gauge(name: str) -> float:
        return registry.get_sample_value(name) or 0.0

    assert wait_for(lambda: gauge("watchkeeper_log_queue_depth") >= 10, timeout=10)
    assert wait_for(lambda: gauge("watchkeeper_log_stalled_seconds") >= 1.0, timeout=10)
    assert gauge("watchkeeper_log_backlog_bytes") > 0
    assert log.status().stalled_seconds >= 1.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_journal_is_flushed_and_the_wait_reported_while_the_writer_waits_on_a_locked_database(
    database_url: str, make_log: Callable[..., PredictionLog]
) -> None:
    """SQLite's write lock held by another connection: the writer waits in its insert
    for the busy timeout (30 s); the journal is flushed to disk meanwhile, and the
    backlog gauges go on moving."""
    registry = CollectorRegistry()
    log = make_log(registry, flush_interval=0.05).start()
    log.submit(make_entry(20_000))
    assert log.flush(timeout=30)
    blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        _assert_flushed_and_reported_meanwhile(log, registry)
    finally:
        blocker.rollback()
        blocker.close()
    assert log.flush(timeout=60)
    assert _count(database_url) == 11


@pytest.mark.postgres
def test_the_journal_is_flushed_and_the_wait_reported_while_postgres_is_frozen(
    private_postgres: PostgresServer, journal_dir: Path
) -> None:
    """A frozen server (SIGSTOP): the writer hangs in its COPY, which neither fails nor
    times out (the server's kernel answers TCP); the journal is flushed to disk
    meanwhile, the backlog gauges go on moving, and everything is stored once the
    server resumes."""
    url = private_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    registry = CollectorRegistry()
    log = PredictionLog(
        engine,
        journal_dir,
        LogMetrics(registry),
        flush_interval=0.05,
        write_interval=0.05,
    ).start()
    try:
        log.submit(make_entry(20_000))
        assert log.flush(timeout=30)
        private_postgres.stall()
        try:
            _assert_flushed_and_reported_meanwhile(log, registry)
        finally:
            private_postgres.resume()
        assert log.flush(timeout=60)
        assert wait_for(lambda: registry.get_sample_value("watchkeeper_log_stalled_seconds") == 0)
    finally:
        log.close(timeout=10)
        engine.dispose()
    assert _count(url) == 11
