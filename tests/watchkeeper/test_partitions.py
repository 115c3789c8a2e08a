"""Time partitions of the log on PostgreSQL (and what stands for them on SQLite): days
created ahead, a late day's rows moved out of the default partition, old days dropped
whole by the prune, days kept for a recent label, reads across partitions, the writer's
COPY path, and the conversion of a populated database by migration 0007."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from monitoring.accuracy import WindowSpan, read_window_labels
from monitoring.log_reader import LogReader
from monitoring.retention_loop import RetentionLoop
from retrain.data import labelled_predictions
from serving.log_store import LogStore, Written
from tests.log_entries import journaled, log_entry
from tests.postgres import PostgresServer
from tests.processes import wait_for
from tests.watchkeeper.test_retention import NOW, POLICY, SCHEMA, Log, ago, counts, pruner
from watchkeeper.db import partitions as parts
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.retention import Pruner, PruneReport
from watchkeeper.db.tables import feedback, predictions, requests
from watchkeeper.settings import Settings


def names(engine: sa.Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        return [p.name for p in parts.partitions(connection, table)]


def partition_of(engine: sa.Engine, table: sa.Table, key: str, value: str) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(sa.literal_column("tableoid::regclass::text")).where(
                    table.c[key] == value
                )
            ).scalars()
        )


def prune_at(engine: sa.Engine, when: datetime) -> PruneReport:
    return Pruner(engine, POLICY, clock=lambda: when, pause=False).run()


def make_days(engine: sa.Engine, first: datetime, n: int) -> None:
    """Partitions for the ``n`` days from ``first``'s (as if created ahead back then)."""
    parts.ensure_partitions(engine, first, days_ahead=n - 1)


def count_deletes(engine: sa.Engine) -> None:
    """Count every row deleted one by one from the log's tables (dropping a partition
    deletes none)."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE row_deletes (n bigint NOT NULL)")
        connection.exec_driver_sql("INSERT INTO row_deletes VALUES (0)")
        connection.exec_driver_sql(
            "CREATE FUNCTION count_delete() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN UPDATE row_deletes SET n = n + 1; RETURN OLD; END $$"
        )
        for table in parts.PARTITIONED:
            connection.exec_driver_sql(
                f"CREATE TRIGGER count_delete AFTER DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION count_delete()"
            )


def row_deletes(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT n FROM row_deletes").scalar_one())


# -- partitions ahead and the default partition --------------------------------------


@pytest.fixture
def migrated_here(postgres_server: PostgresServer) -> Iterator[tuple[sa.Engine, set[date]]]:
    """A database migrated by the test, not copied from the session's template (whose
    days are those of the day it was migrated: yesterday's, for a test run after
    midnight), with the day or days the migration ran on."""
    url = postgres_server.create_database()
    engine = create_engine(url)
    days = {datetime.now(UTC).date()}
    upgrade(engine)
    days.add(datetime.now(UTC).date())  # two days if midnight passed meanwhile
    yield engine, days
    engine.dispose()
    postgres_server.drop_database(url)


@pytest.mark.postgres
def test_the_migration_and_every_prune_create_the_days_ahead(
    migrated_here: tuple[sa.Engine, set[date]],
) -> None:
    postgres_engine, days = migrated_here
    for table in parts.PARTITIONED:
        expected = [
            [parts.partition_name(table, d) for d in parts.days_to_cover(today)]
            for today in sorted(days)
        ]
        assert names(postgres_engine, table) in expected

    later = NOW + timedelta(days=20)
    report = prune_at(postgres_engine, later)

    ahead = [parts.partition_name("requests", d) for d in parts.days_to_cover(later.date())]
    assert set(ahead) <= set(names(postgres_engine, "requests"))
    assert set(ahead) <= set(report.partitions_created)
    with postgres_engine.connect() as connection:
        assert parts.is_partitioned(connection, "requests")
        default = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_class WHERE relname = 'requests_default'"
        ).scalar()
        relkind = connection.exec_driver_sql(
            "SELECT relkind FROM pg_class WHERE relname = 'predictions'"
        ).scalar()
    assert default == 1 and relkind == "v"  # predictions: a view over requests


@pytest.mark.postgres
def test_with_pruning_off_the_monitor_keeps_creating_the_days_ahead(
    postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    """Days ahead came from the migration and the prunes alone: with pruning off, every
    row went into the default partition a week after the migration. The monitor's
    retention thread now creates them as the days pass, whatever the prune interval."""
    today = datetime.now(UTC).date()
    horizon = today + timedelta(days=parts.DAYS_AHEAD)  # the migration's last day
    later = datetime.combine(horizon + timedelta(days=3), datetime.min.time(), UTC)
    clock = [datetime.now(UTC)]
    settings = Settings(
        data_dir=tmp_path,
        database_url=postgres_engine.url.render_as_string(hide_password=False),
        retention_prune_interval=0,
    )
    loop = RetentionLoop(settings, stats_interval=0.05, clock=lambda: clock[0])
    stop = threading.Event()
    thread = loop.start(stop)
    try:
        clock[0] = later + timedelta(hours=6)  # ten days on, no prune in between
        ahead = [
            parts.partition_name(table, day)
            for table in parts.PARTITIONED
            for day in parts.days_to_cover(later.date())
        ]

        def created() -> bool:
            return set(ahead) <= set(names(postgres_engine, "requests"))

        assert wait_for(created, timeout=60, interval=0.05), names(postgres_engine, "requests")
    finally:
        stop.set()
        thread.join(timeout=60)
        loop.engine.dispose()
    assert loop.status.last_prune is None and loop.status.partition_errors == 0

    # rows of the new day arrive after its partition: they land in it, not the default
    when = later + timedelta(hours=7)
    assert LogStore(postgres_engine).insert([log_entry(n, when=when) for n in range(3)]) == Written(
        3, 6
    )
    with postgres_engine.connect() as connection:
        for table in parts.PARTITIONED:
            in_default = connection.exec_driver_sql(
                f"SELECT count(*) FROM {parts.default_name(table)}"
            ).scalar()
            assert in_default == 0, table
    assert partition_of(postgres_engine, requests, "request_id", f"{2:032x}") == [
        parts.partition_name("requests", later.date())
    ]


def failed_checks(registry: CollectorRegistry) -> float:
    """``watchkeeper_retention_errors_total{task="partitions"}`` as a scrape reads it."""
    value = registry.get_sample_value("watchkeeper_retention_errors_total", {"task": "partitions"})
    return value or 0.0


@pytest.mark.postgres
def test_a_day_ahead_its_lock_keeps_refusing_counts_as_a_failed_check_until_created(
    postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    """A creation giving up on its lock (a long reader of the table) was a warning only,
    never counted: WatchkeeperLogPartitionsFailing stayed silent however long the lock
    stayed held, while the days ahead ran out. Each check leaving a day of the runway
    without partition now counts, the farthest day too (every day before it there);
    once the reader is gone a later check creates it, and the next counts nothing."""
    when = datetime.now(UTC)
    horizon = parts.days_to_cover(when.date())[-1]  # day +7
    with postgres_engine.begin() as connection:
        for table in parts.PARTITIONED:
            connection.exec_driver_sql(
                f"DROP TABLE IF EXISTS {parts.partition_name(table, horizon)}"
            )
    settings = Settings(
        data_dir=tmp_path,
        database_url=postgres_engine.url.render_as_string(hide_password=False),
        retention_prune_interval=0,
    )
    loop = RetentionLoop(settings, stats_interval=0.05, clock=lambda: when)
    # the monitor's keeper, checking every 50 ms and waiting 200 ms for a lock (not
    # hourly and 5 s), so that the test sees several checks fail
    loop.partitions = parts.PartitionsAhead(
        loop.engine, interval=0.05, lock_timeout=0.2, clock=lambda: when
    )
    registry = CollectorRegistry()
    loop.register(registry)
    wanted = {parts.partition_name(table, horizon) for table in parts.PARTITIONED}

    def created() -> bool:
        return wanted <= set(names(postgres_engine, "requests"))

    reader = postgres_engine.connect()
    reader.exec_driver_sql("LOCK TABLE ONLY requests IN ACCESS SHARE MODE")
    stop = threading.Event()
    thread = loop.start(stop)
    try:
        assert wait_for(lambda: failed_checks(registry) >= 3, timeout=120), failed_checks(registry)
        assert not created()
        reader.rollback()  # the reader's transaction ends: its lock goes
        assert wait_for(created, timeout=120), names(postgres_engine, "requests")
    finally:
        reader.close()
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()

    failed = failed_checks(registry)
    assert wait_for(loop.partitions.due, timeout=60)
    loop.keep_partitions()  # a check that finds every day there: the alert resolves
    assert failed_checks(registry) == failed
    loop.engine.dispose()


@pytest.mark.postgres
def test_a_check_leaving_days_without_partition_raises_and_retries_within_the_hour(
    postgres_engine: sa.Engine,
) -> None:
    """The check says which days it left and why, and the next check comes after
    ``retry_interval`` instead of the hourly ``interval`` (the alert looks for a failure
    in every hour); a successful one goes back to the hourly pace."""
    when = datetime.now(UTC) + timedelta(days=30)  # none of its days there yet
    keeper = parts.PartitionsAhead(
        postgres_engine, interval=3600, retry_interval=0.05, lock_timeout=0.2, clock=lambda: when
    )
    reader = postgres_engine.connect()
    reader.exec_driver_sql("LOCK TABLE ONLY requests IN ACCESS SHARE MODE")
    try:
        with pytest.raises(parts.PartitionsMissing) as refused:
            keeper.keep()
    finally:
        reader.close()

    days = parts.days_to_cover(when.date())
    check = refused.value.check
    assert check.created == ()
    assert check.missing == tuple(parts.Partition(day, "requests") for day in days)
    assert "lock timeout" in check.reason
    assert parts.partition_name("requests", days[0]) in str(refused.value)
    assert wait_for(keeper.due, timeout=60)
    assert keeper.keep() == list(check.missing)
    assert not keeper.due()


@pytest.mark.postgres
def test_processes_creating_the_same_days_at_once_all_succeed(
    postgres_server: PostgresServer,
) -> None:
    """Several creators at once (the monitor, a ``watchkeeper prune``, two monitors in a
    rolling update), one engine each as separate processes have: none fails, and each
    day exists once."""
    url = postgres_server.create_database()
    setup = create_engine(url)
    upgrade(setup)
    when = datetime.now(UTC) + timedelta(days=30)
    engines = [create_engine(url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    created: list[list[parts.Partition]] = [[] for _ in engines]
    errors: list[BaseException] = []

    def create(i: int) -> None:
        keeper = parts.PartitionsAhead(engines[i], clock=lambda: when)
        start.wait(timeout=60)
        try:
            created[i] = keeper.keep()
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for engine in engines:
        engine.dispose()

    assert not errors, errors
    made = [p for mine in created for p in mine]
    expected = {
        parts.Partition(day, table)
        for table in parts.PARTITIONED
        for day in parts.days_to_cover(when.date())
    }
    assert sorted(made) == sorted(expected)  # each made by one creator
    for table in parts.PARTITIONED:
        assert expected_names(expected, table) <= set(names(setup, table))
    setup.dispose()


def expected_names(partitions: set[parts.Partition], table: str) -> set[str]:
    return {p.name for p in partitions if p.table == table}


@pytest.mark.postgres
def test_a_row_of_a_day_without_partition_is_kept_and_moves_into_its_day_later(
    postgres_engine: sa.Engine,
) -> None:
    log = Log(postgres_engine)
    when = datetime(2026, 1, 10, 8, tzinfo=UTC)
    ids = log.request(when, items=3)
    assert partition_of(postgres_engine, requests, "request_id", "r00001") == ["requests_default"]

    created = parts.ensure_partitions(postgres_engine, when, days_ahead=0)

    assert [p.name for p in created] == ["requests_p20260110"]
    assert partition_of(postgres_engine, requests, "request_id", "r00001") == ["requests_p20260110"]
    assert log.ids(predictions, "prediction_id") == set(ids)
    log.request(when)  # the day takes new rows too
    assert len(log.ids(predictions, "prediction_id")) == 4


# -- the prune drops whole days -------------------------------------------------------


@pytest.mark.postgres
def test_prune_drops_old_days_whole_and_keeps_the_boundary_day_whole(
    postgres_engine: sa.Engine,
) -> None:
    # cut-off: 2026-10-30 12:00 (raw retention 30 days before NOW)
    first = datetime(2026, 10, 20, tzinfo=UTC)
    make_days(postgres_engine, first, 11)  # 10-20 … 10-30
    log = Log(postgres_engine)
    for day in range(10):  # ten whole days before the cut-off, 300 predictions each
        log.requests(first + timedelta(days=day, hours=6), 100, items=3)
    boundary = log.requests(datetime(2026, 10, 30, 6, tzinfo=UTC), 5, items=2)
    after_cut = log.request(datetime(2026, 10, 30, 18, tzinfo=UTC))
    young = log.request(ago(1))
    log.set_watermark(log.max_seq())
    count_deletes(postgres_engine)
    before = names(postgres_engine, "requests")
    dry = pruner(postgres_engine).run(dry_run=True)

    report = pruner(postgres_engine).run()

    after = names(postgres_engine, "requests")
    old_days = [
        parts.partition_name("requests", (first + timedelta(days=d)).date()) for d in range(10)
    ]
    assert set(old_days) <= set(before) and not set(old_days) & set(after)
    assert "requests_p20261030" in after  # straddles the cut-off
    assert set(report.partitions_dropped) == set(old_days)
    assert set(dry.partitions_dropped) == set(report.partitions_dropped)
    assert counts(report)["predictions"] == 3000 == counts(dry)["predictions"]
    assert counts(report)["requests"] == 1000 == counts(dry)["requests"]
    # the boundary day goes whole once past the cut-off, not row by row before
    assert row_deletes(postgres_engine) == 0
    kept = log.ids(predictions, "prediction_id")
    assert kept == {*after_cut, *young, *(p for r in boundary for p in r)}
    assert any("dropped" in line and "(partitions)" in line for line in report.lines())


@pytest.mark.postgres
def test_hourly_prunes_leave_the_boundary_day_whole_until_it_is_dropped(
    postgres_engine: sa.Engine,
) -> None:
    """The monitor prunes hourly: were the day straddling the cut-off pruned row by row,
    each prune would delete that hour's rows and the day would be empty by the time it
    may be dropped. Raw rows of a partitioned day go only with their day."""
    day = datetime(2026, 10, 29, tzinfo=UTC)
    make_days(postgres_engine, day, 2)  # 10-29 and 10-30
    log = Log(postgres_engine)
    written = [log.requests(day + timedelta(hours=h, minutes=30), 2, items=2) for h in range(24)]
    in_day = {p for hour in written for r in hour for p in r}
    next_day = log.request(day + timedelta(days=1, hours=1), items=2)
    young = log.request(day + timedelta(days=40))
    labelled = written[7][1][0]  # labels arrive daily: the day holds a recent one
    labelled_request = written[7][1]
    log.label(labelled, day + timedelta(days=20))
    log.set_watermark(log.max_seq())
    count_deletes(postgres_engine)

    dropped: list[tuple[datetime, tuple[str, ...]]] = []
    for hour in range(0, 27):  # hourly, from the day's start + 30 days to past its end
        when = day + timedelta(days=30, hours=hour)
        report = prune_at(postgres_engine, when)
        dropped += [(when, report.partitions_dropped)] if report.partitions_dropped else []
        kept = log.ids(predictions, "prediction_id")
        if when < day + timedelta(days=31):
            assert in_day <= kept, when  # nothing of the day went one by one

    assert row_deletes(postgres_engine) == 0  # raw rows of a partitioned day: never row by row
    assert dropped == [(day + timedelta(days=31), ("requests_p20261029",))]
    # the labelled prediction's request, kept whole
    assert log.ids(predictions, "prediction_id") == {*next_day, *young, *labelled_request}
    assert partition_of(postgres_engine, requests, "request_id", labelled.split(".")[0]) == [
        "requests_default"
    ]


def test_on_sqlite_raw_retention_stays_exact(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    log = Log(engine)
    day = datetime(2026, 10, 29, tzinfo=UTC)
    hours = [log.request(day + timedelta(hours=h, minutes=30)) for h in range(24)]
    log.request(day + timedelta(days=40))
    log.set_watermark(log.max_seq())

    prune_at(engine, day + timedelta(days=30, hours=12))

    kept = log.ids(predictions, "prediction_id")
    assert kept & {p for h in hours[:12] for p in h} == set()
    assert {p for h in hours[12:] for p in h} <= kept
    engine.dispose()


def in_default(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}_default").scalar_one())


@pytest.mark.postgres
def test_a_day_holding_a_label_within_its_retention_is_dropped_whole_keeping_it(
    postgres_engine: sa.Engine,
) -> None:
    """Labels arrive every day, so every day of the labelled retention holds one: such a
    day is dropped whole all the same, the requests holding them moved into the default
    partition, not its other rows deleted one by one."""
    first = datetime(2026, 10, 1, tzinfo=UTC)
    make_days(postgres_engine, first, 3)  # 10-01 … 10-03
    # The newest request's day too: the migration made the days from the real today on,
    # so once that is past NOW the row would land in the default partition and the
    # prune's days ahead (from NOW) would move it out one row at a time.
    make_days(postgres_engine, NOW, 1)
    log = Log(postgres_engine)
    day1 = log.requests(first + timedelta(hours=1), 20, items=2)
    day2 = log.requests(first + timedelta(days=1, hours=1), 20, items=2)
    labelled = day1[3][1]
    log.label(labelled, ago(50))  # within the labelled retention (365 days)
    aged = day2[0][0]
    log.label(aged, ago(400))  # past it: goes with its day
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    count_deletes(postgres_engine)
    with postgres_engine.connect() as connection:
        before = connection.execute(
            sa.select(predictions).where(predictions.c.prediction_id == labelled)
        ).one()
        request_before = connection.execute(
            sa.select(requests).where(requests.c.request_id == "r00004")
        ).one()

    report = pruner(postgres_engine).run()

    after = names(postgres_engine, "requests")
    assert not {"requests_p20261001", "requests_p20261002"} & set(after)
    assert {"requests_p20261001", "requests_p20261002"} <= set(report.partitions_dropped)
    kept = log.ids(predictions, "prediction_id")
    assert set(day1[3]) <= kept and not {p for r in day1 for p in r} - set(day1[3]) & kept
    assert not {p for r in day2 for p in r} & kept
    assert log.ids(requests, "request_id") >= {"r00004"}  # the labelled one's request
    assert log.ids(feedback, "prediction_id") == {labelled}
    assert counts(report)["feedback"] == 1
    assert counts(report)["predictions"] == 78 and counts(report)["requests"] == 39
    assert row_deletes(postgres_engine) == 0  # nothing of the days went one by one
    # moved with every column unchanged, into the default partitions
    with postgres_engine.connect() as connection:
        moved = connection.execute(
            sa.select(predictions).where(predictions.c.prediction_id == labelled)
        ).one()
        request_moved = connection.execute(
            sa.select(requests).where(requests.c.request_id == "r00004")
        ).one()
    assert moved == before and request_moved == request_before
    assert partition_of(postgres_engine, requests, "request_id", "r00004") == ["requests_default"]
    # the retraining query still finds the kept label with its request's features
    rows = labelled_predictions(postgres_engine, SCHEMA, since=ago(60)).frame
    assert len(rows) == 1 and rows["area"].notna().all()

    # once the label is past its retention too, it goes row by row from the default
    later = NOW + timedelta(days=320)
    prune_at(postgres_engine, later)
    assert labelled not in log.ids(predictions, "prediction_id")
    assert "r00004" not in log.ids(requests, "request_id")
    assert row_deletes(postgres_engine) == 1  # the request, with its predictions
    assert in_default(postgres_engine, "requests") == 0


@pytest.mark.postgres
def test_moved_labelled_rows_are_read_joined_and_replayed_once(postgres_engine: sa.Engine) -> None:
    """The monitor's watermark reads, the feedback join, the retraining query and a
    journal replay all meet a labelled prediction moved into the default partition."""
    day = datetime(2026, 10, 1, 5, tzinfo=UTC)
    make_days(postgres_engine, day, 1)
    entries = [log_entry(n, when=day) for n in range(4)]
    store = LogStore(postgres_engine)
    assert store.insert(entries) == Written(4, 8)
    log = Log(postgres_engine)
    log.n = 100
    labelled = [f"{n:032x}.0" for n in range(2)]
    for n, pid in enumerate(labelled):
        log.label(pid, ago(5), actual=200.0 + n)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    kept_ids = [e.request_id for e in entries[:2]]  # the labelled ones' requests
    with postgres_engine.connect() as connection:
        seqs = dict(
            connection.execute(
                sa.select(predictions.c.prediction_id, predictions.c.seq).where(
                    predictions.c.request_id.in_(kept_ids)
                )
            ).all()
        )

    report = pruner(postgres_engine).run()

    assert "requests_p20261001" in report.partitions_dropped
    assert in_default(postgres_engine, "requests") == 2
    rows = LogReader(postgres_engine, settle_seconds=0).read(0, log.max_seq())
    assert dict(zip(rows["prediction_id"], rows["seq"], strict=True)) == {
        **seqs,
        f"r{log.n:05d}": log.max_seq(),
    }
    span = WindowSpan("w", "v1", 1, log.max_seq(), len(rows), day, NOW)
    with postgres_engine.connect() as connection:
        window = read_window_labels(connection, span)
    assert sorted(window["actual"].tolist()) == [200.0, 201.0]
    training = labelled_predictions(postgres_engine, SCHEMA, since=ago(10)).frame
    assert training["price"].tolist() == [200.0, 201.0]
    assert training["area"].tolist() == [0.0, 100.0]  # item 0 of requests 0 and 1
    # exactly once: a replay of the moved rows' entries meets them in the default one
    replayed = [journaled(e) for e in entries[:2]]
    store.insert(replayed)
    with postgres_engine.connect() as connection:
        copies = connection.execute(
            sa.select(sa.func.count())
            .select_from(predictions)
            .where(predictions.c.request_id.in_(kept_ids))
        ).scalar_one()
        requests_kept = connection.execute(
            sa.select(sa.func.count())
            .select_from(requests)
            .where(requests.c.request_id.in_([e.request_id for e in entries[:2]]))
        ).scalar_one()
    assert copies == 4 and requests_kept == 2


@pytest.mark.postgres
def test_prune_does_not_drop_a_day_the_monitor_has_not_read(postgres_engine: sa.Engine) -> None:
    first = datetime(2026, 10, 1, tzinfo=UTC)
    make_days(postgres_engine, first, 2)
    log = Log(postgres_engine)
    log.requests(first + timedelta(hours=1), 5)
    read = log.max_seq()
    log.requests(first + timedelta(days=1, hours=1), 5)
    log.request(ago(0))
    log.set_watermark(read)

    report = pruner(postgres_engine).run()

    assert report.partitions_dropped == ("requests_p20261001",)
    assert "requests_p20261002" in names(postgres_engine, "requests")
    assert len(log.ids(predictions, "seq")) == 6


@pytest.mark.postgres
def test_a_day_a_long_reader_holds_is_pruned_row_by_row_and_dropped_later(
    postgres_engine: sa.Engine,
) -> None:
    first = datetime(2026, 10, 1, tzinfo=UTC)
    make_days(postgres_engine, first, 1)
    log = Log(postgres_engine)
    log.requests(first + timedelta(hours=1), 10)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    reader = postgres_engine.connect()
    reader.execute(sa.select(predictions.c.seq).limit(1)).all()  # holds its lock till the end

    try:
        report = pruner(postgres_engine).run()  # waits parts.LOCK_TIMEOUT for the drop, no more
    finally:
        reader.close()

    assert "requests_p20261001" not in report.partitions_dropped
    assert counts(report)["predictions"] == 10 and len(log.ids(predictions, "seq")) == 1
    assert "requests_p20261001" in pruner(postgres_engine).run().partitions_dropped


@pytest.mark.postgres
def test_archive_then_drop_writes_every_row_of_the_day(
    postgres_engine: sa.Engine, tmp_path: Path
) -> None:
    from watchkeeper.db.archive import read_archive
    from watchkeeper.db.retention import Pruner, RetentionPolicy

    first = datetime(2026, 10, 1, tzinfo=UTC)
    make_days(postgres_engine, first, 1)
    log = Log(postgres_engine)
    ids = log.requests(first + timedelta(hours=1), 30, items=2)
    log.label(ids[0][0], ago(400), actual=7.0)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    policy = RetentionPolicy(
        raw_days=30, labelled_days=365, history_days=730, batch_rows=25, archive_url=str(tmp_path)
    )

    report = Pruner(postgres_engine, policy, clock=lambda: NOW, pause=False).run()

    assert "requests_p20261001" in report.partitions_dropped
    archived = read_archive(str(tmp_path))
    assert set(archived["prediction_id"]) == {p for r in ids for p in r}
    assert archived.loc[archived["prediction_id"] == ids[0][0], "actual"].tolist() == [7.0]


# -- reads across partitions, on both databases ----------------------------------------


def test_watermark_reads_feedback_join_and_retraining_query_across_days(
    engine: sa.Engine,
) -> None:
    if engine.dialect.name == "postgresql":
        make_days(engine, ago(6), 3)  # three of the five days; the others: default
    log = Log(engine)
    written = [
        log.request(ago(6 - day) + timedelta(hours=h), items=2) for day in range(5) for h in (1, 2)
    ]
    labels = {ids[0]: 100.0 + n for n, ids in enumerate(written)}
    for pid, actual in labels.items():
        log.label(pid, ago(0.5), actual=actual)

    rows = LogReader(engine, settle_seconds=0).read(0, log.max_seq())
    assert rows["prediction_id"].tolist() == [p for ids in written for p in ids]
    assert rows["seq"].is_monotonic_increasing
    part = LogReader(engine, settle_seconds=0).read(int(rows["seq"][3]), int(rows["seq"][12]))
    assert part["prediction_id"].tolist() == rows["prediction_id"].tolist()[4:13]
    span = WindowSpan("w", "v1", 1, log.max_seq(), len(rows), ago(6), ago(0))
    with engine.connect() as connection:
        window = read_window_labels(connection, span)
    assert sorted(window["actual"].tolist()) == sorted(labels.values())
    training = labelled_predictions(engine, SCHEMA, since=ago(1)).frame
    assert training["price"].tolist() == list(labels.values())  # oldest prediction first
    if engine.dialect.name == "postgresql":
        spread = {partition_of(engine, requests, "request_id", p.split(".")[0])[0] for p in labels}
        assert len(spread) == 4  # three days and the default partition


# -- the writer's COPY path ------------------------------------------------------------


def test_the_writer_stores_into_the_day_partitions_once(engine: sa.Engine) -> None:
    today = datetime.now(UTC)
    times = [today, today + timedelta(days=1), datetime(2025, 1, 1, tzinfo=UTC)]
    entries = [log_entry(n, when=when) for n, when in enumerate(times)]
    store = LogStore(engine)

    assert store.insert(entries) == Written(3, 6)
    assert store.insert(entries) == Written(0, 0)  # a replayed batch is stored once

    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(predictions.c.request_id, predictions.c.created_at).order_by(
                predictions.c.seq
            )
        ).all()
    assert [r.created_at for r in stored] == [t for t in times for _ in range(2)]
    if engine.dialect.name == "postgresql":
        where = [partition_of(engine, requests, "request_id", e.request_id) for e in entries]
        assert where == [
            [parts.partition_name("requests", today.date())],
            [parts.partition_name("requests", (today + timedelta(days=1)).date())],
            ["requests_default"],
        ]


# -- SQLite: batched deletes and incremental vacuum -----------------------------------


def test_on_sqlite_the_file_stops_growing_once_retention_prunes(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # INCREMENTAL
    log = Log(engine)
    sizes = []
    for cycle in range(5):  # each cycle: a day of traffic, then the prune once it is old
        day = NOW + timedelta(days=31 * cycle)
        log.requests(day, 200, items=10)
        log.request(day + timedelta(days=31))  # the newest, kept
        log.set_watermark(log.max_seq())
        report = prune_at(engine, day + timedelta(days=31))
        assert counts(report)["predictions"] == 2000 + min(cycle, 1), report.lines()
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes.append(path.stat().st_size)
    engine.dispose()
    # the 2,000 rows of each cycle leave nothing behind once pruned
    assert sizes[-1] < sizes[0] * 1.5, sizes


# -- migration 0007 on a populated database ---------------------------------------------


class OldLog:
    """Writes requests and prediction rows as the log's tables were before migration
    0010 (a row per prediction), for the tests of migration 0007."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.n = 0

    def requests(self, when: datetime, count: int, items: int) -> None:
        with self.engine.begin() as connection:
            for _ in range(count):
                self.n += 1
                request_id = f"r{self.n:05d}"
                connection.execute(
                    sa.text(
                        "INSERT INTO requests (request_id, received_at, endpoint, method,"
                        " status_code, latency_seconds, n_items)"
                        " VALUES (:id, :at, '/predict', 'POST', 200, 0.01, :n)"
                    ),
                    {"id": request_id, "at": when, "n": items},
                )
                for i in range(items):
                    connection.execute(
                        sa.text(
                            "INSERT INTO predictions (prediction_id, request_id, item_index,"
                            " created_at, model_version, features, prediction, lower, upper)"
                            " VALUES (:pid, :id, :i, :at, 'v1', CAST(:features AS json),"
                            " 100, 90, 110)"
                        ),
                        {
                            "pid": f"{request_id}.{i}",
                            "id": request_id,
                            "i": i,
                            "at": when,
                            "features": f'{{"area": {1000 + self.n + i}}}',
                        },
                    )

    def label(self, prediction_id: str, when: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO feedback (prediction_id, actual, received_at)"
                    " VALUES (:pid, 105, :at)"
                ),
                {"pid": prediction_id, "at": when},
            )

    def snapshot(self) -> dict[str, list[Any]]:
        with self.engine.connect() as connection:
            return {
                table: [tuple(r) for r in connection.exec_driver_sql(query)]
                for table, query in (
                    (
                        "predictions",
                        "SELECT seq, prediction_id, created_at FROM predictions ORDER BY seq",
                    ),  # fmt: skip
                    ("requests", "SELECT request_id, received_at FROM requests ORDER BY 1"),
                    ("feedback", "SELECT prediction_id, received_at FROM feedback ORDER BY 1"),
                )
            }


def _downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    from watchkeeper.db.migrate import _config

    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _partitions_of(engine: sa.Engine, table: str) -> list[str]:
    """``table``'s day partitions, as this module's functions read them for any table."""
    with engine.connect() as connection:
        return sorted(
            connection.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table"
                    " AND c.relname <> :default"
                ),
                {"table": table, "default": f"{table}_default"},
            ).scalars()
        )


@pytest.mark.postgres
def test_migration_partitions_a_populated_database_and_back(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0007 partitions both tables of the time by day, every row in its day's
    partition; 0010 then keeps the requests' partitions, its predictions in them."""
    monkeypatch.setenv("WATCHKEEPER_RETENTION_DAYS", "0")  # kept for ever: every day
    engine = create_engine(postgres_server.create_database())
    upgrade(engine, "0006")
    log = OldLog(engine)
    days = [datetime(2026, 9, 1, 3, tzinfo=UTC) + timedelta(days=d * 7) for d in range(4)]
    for when in days:
        log.requests(when, 10, items=3)
    log.label("r00001.0", ago(3))
    snapshot = log.snapshot()

    upgrade(engine, "0009")

    assert log.snapshot() == snapshot
    for when in days:
        for table in ("predictions", "requests"):
            assert parts.partition_name(table, when.date()) in _partitions_of(engine, table)
    with engine.connect() as connection:
        wrong = connection.exec_driver_sql(
            "SELECT count(*) FROM predictions WHERE tableoid::regclass::text"
            " <> 'predictions_p' || to_char(created_at AT TIME ZONE 'UTC', 'YYYYMMDD')"
        ).scalar()
        wrong += connection.exec_driver_sql(
            "SELECT count(*) FROM requests WHERE tableoid::regclass::text"
            " <> 'requests_p' || to_char(received_at AT TIME ZONE 'UTC', 'YYYYMMDD')"
        ).scalar()
    assert wrong == 0

    upgrade(engine)

    assert len(Log(engine).ids(predictions, "prediction_id")) == 120
    for when in days:
        assert parts.partition_name("requests", when.date()) in names(engine, "requests")
    new = Log(engine)
    new.n = 1000  # ids after the old log's
    newest = new.max_seq()
    new.request(datetime.now(UTC))  # inserts keep working, after the others
    assert new.max_seq() > newest
    assert len(labelled_predictions(engine, SCHEMA, since=ago(10))) == 1

    _downgrade(engine, "0006")
    with engine.connect() as connection:
        assert not parts.is_partitioned(connection, "predictions")
        assert not parts.is_partitioned(connection, "requests")
    assert len(log.snapshot()["predictions"]) == len(snapshot["predictions"]) + 1
    upgrade(engine)
    assert len(Log(engine).ids(predictions, "prediction_id")) == 121
    engine.dispose()


@pytest.mark.postgres
def test_migration_puts_the_days_past_the_raw_retention_into_the_default_partition(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long log does not get a partition per day of its past (each one more lock for
    every reader across them): days past WATCHKEEPER_RETENTION_DAYS go to the default
    partition, which the first prune empties as it would have without partitions."""
    monkeypatch.setenv("WATCHKEEPER_RETENTION_DAYS", "30")
    engine = create_engine(postgres_server.create_database())
    upgrade(engine, "0006")
    log = OldLog(engine)
    now = datetime.now(UTC)
    old_days = [now - timedelta(days=d) for d in range(40, 400, 3)]  # 120 days
    for when in old_days:
        log.requests(when, 2, items=2)
    recent = [now - timedelta(days=d) for d in (29, 10)]
    for when in recent:
        log.requests(when, 2, items=2)
    snapshot = log.snapshot()

    upgrade(engine)

    assert len(Log(engine).ids(predictions, "prediction_id")) == len(snapshot["predictions"])
    days = names(engine, "requests")
    assert len(days) == len(recent) + len(parts.days_to_cover(now.date()))
    for when in recent:
        assert parts.partition_name("requests", when.date()) in days
    assert in_default(engine, "requests") == 2 * len(old_days)
    Log(engine).set_watermark(Log(engine).max_seq())
    Pruner(engine, POLICY, clock=lambda: now, pause=False).run()
    assert in_default(engine, "requests") == 0
    assert len(Log(engine).ids(predictions, "seq")) == 8
    engine.dispose()


def test_days_to_cover_counts_today_and_the_days_ahead() -> None:
    assert parts.days_to_cover(date(2026, 12, 30), 2) == [
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
    ]
