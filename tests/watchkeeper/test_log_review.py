"""Adversarial cases for the log's time partitions on PostgreSQL: partition DDL racing
writers and another prune, a prune meeting a long reader on many days, a label or a
replayed row arriving while a day is being archived, and the times a replay carries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from serving.feedback import FeedbackItem, store_feedback
from serving.log_store import LogStore, Written
from tests.log_entries import journaled, log_entry
from tests.postgres import PostgresServer
from tests.processes import wait_for
from tests.watchkeeper.test_partitions import OldLog
from tests.watchkeeper.test_retention import NOW, POLICY, Log, ago
from watchkeeper.db import partitions as parts
from watchkeeper.db.archive import Archive, read_archive
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.retention import Pruner, RetentionPolicy
from watchkeeper.db.tables import feedback, predictions, requests

pytestmark = pytest.mark.postgres


def names(engine: sa.Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        return [p.name for p in parts.partitions(connection, table)]


def waiting_on_a_lock(engine: sa.Engine) -> Callable[[], bool]:
    """Whether another backend of ``engine``'s database waits for a lock."""

    def check() -> bool:
        with engine.connect() as connection:
            return bool(
                connection.exec_driver_sql(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database())"
                ).scalar()
            )

    return check


class Background:
    """Runs ``target`` in a thread and keeps what it returned or raised."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self.result = target()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def join(self) -> Any:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def _request_row(request_id: str, when: datetime) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "received_at": when,
        "endpoint": "/predict",
        "method": "POST",
        "status_code": 200,
        "latency_seconds": 0.01,
        "model_version": "v1",
        "n_items": 1,
        "single": True,
        "outputs": [[1.0, 0.0, 2.0]],
    }


# -- partition DDL against writers and another prune ------------------------------------


def test_a_row_committed_into_the_default_partition_while_its_day_is_created(
    postgres_engine: sa.Engine,
) -> None:
    """A writer's row of a day with no partition yet lands in the default partition
    while the prune creates that day: the prune creates it with the row moved in."""
    day = datetime(2026, 1, 10, 8, tzinfo=UTC)
    writer = postgres_engine.connect()
    transaction = writer.begin()
    writer.execute(requests.insert().values(**_request_row("late", day)))
    creating = Background(lambda: parts.ensure_partitions(postgres_engine, day, days_ahead=0))
    assert wait_for(waiting_on_a_lock(postgres_engine), timeout=60)
    transaction.commit()
    writer.close()

    # raised a check violation before: the row of its day sat in the default partition
    assert parts.Partition(day.date(), "requests") in creating.join()

    assert "requests_p20260110" in names(postgres_engine, "requests")
    with postgres_engine.connect() as connection:
        where = connection.execute(
            sa.select(sa.literal_column("tableoid::regclass::text")).select_from(requests)
        ).scalars()
        assert list(where) == ["requests_p20260110"]


def test_two_prunes_creating_the_same_day_at_once_both_finish(postgres_engine: sa.Engine) -> None:
    """Two prunes (the monitor's loop and an operator's ``watchkeeper db prune``) create
    the same missing day at once: the second finds it made, it does not fail."""
    day = datetime(2026, 1, 10, 8, tzinfo=UTC)
    other = postgres_engine.connect()
    transaction = other.begin()
    parts.create_partition(other, parts.Partition(day.date(), "requests"))
    creating = Background(lambda: parts.ensure_partitions(postgres_engine, day, days_ahead=0))
    assert wait_for(waiting_on_a_lock(postgres_engine))
    transaction.commit()
    other.close()

    assert creating.join() == []  # raised DuplicateTable

    assert names(postgres_engine, "requests").count("requests_p20260110") == 1


# -- a prune meeting a long reader ------------------------------------------------------


def test_a_long_reader_costs_the_writers_one_lock_wait_per_prune_not_one_per_day(
    postgres_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Each DROP waiting for a reader queues every writer behind it for up to
    LOCK_TIMEOUT; with many old days (the first prune of a long log) the writers would
    stall one LOCK_TIMEOUT per day. Once the lock is refused, the prune leaves the other
    days to the row passes and the next prune."""
    first = datetime(2026, 10, 1, tzinfo=UTC)
    parts.ensure_partitions(postgres_engine, first, days_ahead=2)
    log = Log(postgres_engine)
    for day in range(3):
        log.requests(first + timedelta(days=day, hours=1), 4)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    reader = postgres_engine.connect()
    reader.execute(sa.select(predictions.c.seq).limit(1)).all()  # holds its lock till the end

    caplog.set_level(logging.WARNING, logger="watchkeeper.db.retention")
    try:
        report = Pruner(postgres_engine, POLICY, clock=lambda: NOW, pause=False).run()
    finally:
        reader.close()

    waits = [r for r in caplog.records if "not dropped now" in r.getMessage()]
    assert len(waits) == 1, [r.getMessage() for r in waits]
    assert not report.partitions_dropped
    # retention holds anyway: the row passes deleted the old days' rows
    assert len(log.ids(predictions, "seq")) == 1
    again = Pruner(postgres_engine, POLICY, clock=lambda: NOW, pause=False).run()
    assert {f"requests_p202610{d:02d}" for d in (1, 2, 3)} <= set(again.partitions_dropped)


# -- what arrives while a day is archived before its drop ---------------------------------


class _ArchiveThen(Archive):
    """The real Parquet archive, running ``then`` once after its first write: what
    another process does while the prune archives a large day."""

    def __init__(self, url: str, then: Callable[[], None]) -> None:
        super().__init__(url)
        self._then: Callable[[], None] | None = then

    def write(self, connection: sa.Connection, seqs: Any) -> int:
        written = super().write(connection, seqs)
        if self._then is not None:
            then, self._then = self._then, None
            then()
        return written


def _archiving_pruner(engine: sa.Engine, tmp_path: Path, then: Callable[[], None]) -> Pruner:
    policy = RetentionPolicy(
        raw_days=30, labelled_days=365, history_days=730, batch_rows=5, archive_url=str(tmp_path)
    )
    pruner = Pruner(engine, policy, clock=lambda: NOW, pause=False)
    pruner.archive = _ArchiveThen(str(tmp_path), then)
    return pruner


def test_a_label_arriving_while_its_day_is_archived_keeps_its_prediction(
    postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    first = datetime(2026, 10, 1, tzinfo=UTC)
    parts.ensure_partitions(postgres_engine, first, days_ahead=0)
    log = Log(postgres_engine)
    ids = log.requests(first + timedelta(hours=1), 12)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    late = ids[-1][0]  # labelled 60 days after its prediction: within the labelled retention

    def label() -> None:
        stored = store_feedback(postgres_engine, [FeedbackItem(late, 99.0)])
        assert stored.unmatched == 0

    report = _archiving_pruner(postgres_engine, tmp_path, label).run()

    # dropped all the same, the newly labelled request moved into the default one
    assert "requests_p20261001" in report.partitions_dropped
    assert log.ids(feedback, "prediction_id") == {late}
    assert log.ids(predictions, "prediction_id") == {late, f"r{log.n:05d}"}
    assert late in log.ids(requests, "request_id")
    # every row that went was archived first (the kept one is, once its label ages)
    gone = {p for r in ids for p in r} - {late}
    assert gone <= set(read_archive(str(tmp_path))["prediction_id"])


def test_a_row_replayed_into_a_day_being_archived_is_not_dropped_unread(
    postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    """An orphan journal replayed late stores a row of an old day after the monitor's
    watermark; a drop decided before it arrived must not take it."""
    first = datetime(2026, 10, 1, tzinfo=UTC)
    parts.ensure_partitions(postgres_engine, first, days_ahead=0)
    log = Log(postgres_engine)
    log.requests(first + timedelta(hours=1), 12)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    replayed: list[list[str]] = []

    def replay() -> None:
        replayed.extend(log.requests(first + timedelta(hours=2), 1))

    _archiving_pruner(postgres_engine, tmp_path, replay).run()

    assert replayed[0][0] in log.ids(predictions, "prediction_id")
    assert f"r{log.n:05d}" in log.ids(requests, "request_id")


# -- the time a replay carries ------------------------------------------------------------


def test_a_replayed_journal_line_meets_its_stored_row_at_every_precision_and_zone(
    postgres_engine: sa.Engine,
) -> None:
    """Uniqueness is (prediction_id, created_at) now: a replay stores once only if the
    journal gives back the very instant stored, whatever zone or microsecond the request
    thread's clock had, and on both sides of a UTC midnight (and a DST change)."""
    new_york = ZoneInfo("America/New_York")
    times = [
        datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 30, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 1, 1, 30, 0, 123457, tzinfo=new_york),  # the repeated hour
        datetime(2026, 11, 1, 1, 30, 0, 123457, tzinfo=new_york).replace(fold=1),
        datetime(2026, 3, 8, 23, 30, 0, 5, tzinfo=new_york),  # 04:30 UTC the next day
    ]
    parts.ensure_partitions(postgres_engine, datetime(2026, 11, 29, tzinfo=UTC), days_ahead=1)
    entries = [log_entry(n, when=when) for n, when in enumerate(times)]
    store = LogStore(postgres_engine)
    assert store.insert(entries) == Written(5, 10)

    replayed = [journaled(e) for e in entries]
    assert store.insert(replayed) == Written(0, 0)
    assert store.insert(replayed[::-1]) == Written(0, 0)

    with postgres_engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                requests.c.request_id,
                requests.c.received_at,
                sa.literal_column("requests.tableoid::regclass::text").label("part"),
            ).order_by(requests.c.request_id)
        ).all()
        duplicates = connection.exec_driver_sql(
            "SELECT count(*) FROM (SELECT prediction_id FROM predictions"
            " GROUP BY prediction_id HAVING count(*) > 1) d"
        ).scalar()
        straddling = connection.exec_driver_sql(
            "SELECT count(*) FROM predictions p JOIN requests r USING (request_id)"
            " WHERE p.created_at <> r.received_at"
        ).scalar()
    assert duplicates == 0 and straddling == 0
    # compared as UTC instants: Python never equates a time in a DST fold across zones
    assert [r.received_at.astimezone(UTC) for r in rows] == [t.astimezone(UTC) for t in times]
    expected = [parts.partition_name("requests", t.astimezone(UTC).date()) for t in times]
    assert [r.part for r in rows] == [
        name if name in names(postgres_engine, "requests") else "requests_default"
        for name in expected
    ]


def test_feedback_for_a_replayed_prediction_matches_it_once(postgres_engine: sa.Engine) -> None:
    when = datetime.now(UTC)
    entry = log_entry(1, when=when)
    store = LogStore(postgres_engine)
    store.insert([entry])
    store.insert([journaled(entry)])

    stored = store_feedback(postgres_engine, [FeedbackItem(f"{1:032x}.0", 1.5)])

    assert stored.accepted == 1 and stored.unmatched == 0
    with postgres_engine.connect() as connection:
        joined = connection.execute(
            sa.select(sa.func.count()).select_from(
                feedback.join(predictions, feedback.c.prediction_id == predictions.c.prediction_id)
            )
        ).scalar_one()
    assert joined == 1


# -- migration 0007 on awkward databases --------------------------------------------------


def _database_in_zone(postgres_server: PostgresServer, zone: str) -> sa.Engine:
    """A new database whose sessions' TimeZone is ``zone`` (the server's, not UTC)."""
    url = postgres_server.create_database()
    name = url.rsplit("/", 1)[1]
    admin = create_engine(postgres_server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"ALTER DATABASE {name} SET timezone TO '{zone}'")
    admin.dispose()
    return create_engine(url)


def _misplaced(engine: sa.Engine) -> int:
    """Rows not in the partition of their UTC day (nor in the default one)."""
    wrong = 0
    with engine.connect() as connection:
        for table, key in parts.PARTITIONED.items():
            wrong += connection.exec_driver_sql(
                f"SELECT count(*) FROM {table} WHERE tableoid::regclass::text NOT IN"
                f" ('{table}_p' || to_char({key} AT TIME ZONE 'UTC', 'YYYYMMDD'),"
                f" '{table}_default')"
            ).scalar_one()
    return wrong


def _misplaced_before_0010(engine: sa.Engine) -> int:
    """:func:`_misplaced` for both tables partitioned before 0010."""
    wrong = 0
    with engine.connect() as connection:
        for table, key in (("predictions", "created_at"), ("requests", "received_at")):
            wrong += connection.exec_driver_sql(
                f"SELECT count(*) FROM {table} WHERE tableoid::regclass::text NOT IN"
                f" ('{table}_p' || to_char({key} AT TIME ZONE 'UTC', 'YYYYMMDD'),"
                f" '{table}_default')"
            ).scalar_one()
    return wrong


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/New_York"])
def test_migration_and_prune_split_days_in_utc_whatever_the_server_zone(
    postgres_server: PostgresServer, zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose TimeZone is not UTC (+14 h, or one with DST): rows a few
    microseconds either side of a UTC midnight, and of a DST change, land in the
    partition of their UTC day, and the prune drops whole UTC days only."""
    monkeypatch.setenv("WATCHKEEPER_RETENTION_DAYS", "0")  # a partition for every day
    engine = _database_in_zone(postgres_server, zone)
    upgrade(engine, "0006")
    log = OldLog(engine)
    midnight = datetime(2026, 10, 2, tzinfo=UTC)
    edges = [
        midnight - timedelta(microseconds=1),
        midnight,
        datetime(2026, 3, 8, 6, 59, 59, 999999, tzinfo=UTC),  # New York's DST starts at 7:00
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # its repeated hour
    ]
    for when in edges:
        log.requests(when, 2, items=2)
    before = log.snapshot()

    upgrade(engine, "0009")

    assert log.snapshot() == before and _misplaced_before_0010(engine) == 0
    with engine.connect() as connection:
        assert not connection.exec_driver_sql("SELECT count(*) FROM predictions_default").scalar()
        assert not connection.exec_driver_sql("SELECT count(*) FROM requests_default").scalar()
    upgrade(engine)
    assert _misplaced(engine) == 0
    for when in edges:
        assert parts.partition_name("requests", when.date()) in names(engine, "requests")
    new = Log(engine)
    new.n = 100
    new.request(ago(0))
    new.set_watermark(new.max_seq())
    # cut-off at 2026-10-02 00:00 UTC: 10-01 goes whole, the rows at midnight stay
    clock = midnight + timedelta(days=30)
    report = Pruner(engine, POLICY, clock=lambda: clock, pause=False).run()
    assert "requests_p20261001" in report.partitions_dropped
    assert "requests_p20261002" not in report.partitions_dropped
    kept = new.ids(requests, "request_id")
    assert {"r00003", "r00004"} <= kept and not {"r00001", "r00002"} & kept
    engine.dispose()


def test_migration_of_a_log_with_far_times_and_a_large_seq_is_whole_or_nothing(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows from 1999 and 2099, a seq past 2**32: copied as they were, seq goes on from
    where it was. An upgrade that fails half-way (here a name it needs is taken) leaves
    the 0006 tables as they were, and runs once the cause is gone; a second upgrade
    changes nothing."""
    monkeypatch.setenv("WATCHKEEPER_RETENTION_DAYS", "0")  # a partition for every day
    engine = create_engine(postgres_server.create_database())
    upgrade(engine, "0006")
    with engine.begin() as connection:
        connection.exec_driver_sql("SELECT setval('predictions_seq_seq', 5000000000)")
    log = OldLog(engine)
    far = [
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2099, 1, 1, tzinfo=UTC),
        datetime.now(UTC) + timedelta(days=3),
    ]
    for when in far:
        log.requests(when, 2, items=3)
    log.label("r00001.0", ago(1))
    before = log.snapshot()
    with engine.begin() as connection:  # in the way of the upgrade's rebuild of requests
        connection.exec_driver_sql("CREATE TABLE requests_rebuilt (x int)")

    with pytest.raises(sa.exc.ProgrammingError):
        upgrade(engine)

    with engine.connect() as connection:
        assert not parts.is_partitioned(connection, "predictions")
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version == "0006" and log.snapshot() == before
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE requests_rebuilt")

    upgrade(engine, "0009")
    upgrade(engine, "0009")

    assert log.snapshot() == before and _misplaced_before_0010(engine) == 0
    assert before["predictions"][-1][0] == 5000000000 + 3 * 2 * 3

    upgrade(engine)

    for when in far:
        assert parts.partition_name("requests", when.date()) in names(engine, "requests")
    new = Log(engine)
    new.n = 100
    new.request(datetime.now(UTC))  # numbered after the predictions' last seq
    with engine.connect() as connection:
        seqs = connection.execute(
            sa.select(requests.c.request_id, requests.c.seq).order_by(requests.c.seq)
        ).all()
    assert seqs[-1] == ("r00101", 5000000000 + 3 * 2 * 3 + 1)
    assert len(new.ids(predictions, "prediction_id")) == 3 * 2 * 3 + 1
    engine.dispose()
