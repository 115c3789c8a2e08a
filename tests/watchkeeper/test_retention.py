"""Retention of the log on SQLite and PostgreSQL: what a prune deletes and keeps, that
it never takes what the monitor or retraining still need, and its metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from monitoring.accuracy import WindowSpan, read_window_labels
from monitoring.log_reader import WATERMARK, LogReader
from monitoring.retention_loop import RetentionLoop
from retrain.data import labelled_predictions
from tests.processes import Process, sqlite_url, wait_for
from watchkeeper.db import log_stats
from watchkeeper.db.archive import (
    Archive,
    archived_labels,
    feature_column,
    feature_name,
    read_archive,
    read_rows,
)
from watchkeeper.db.engine import create_engine
from watchkeeper.db.positions import read_position
from watchkeeper.db.prune_lock import one_prune_at_a_time
from watchkeeper.db.retention import (
    MONITOR_WATERMARK,
    REQUESTS_POSITION,
    Pruner,
    RetentionPolicy,
)
from watchkeeper.db.tables import (
    feedback,
    predictions,
    requests,
    retrain_requests,
    retrain_runs,
    window_results,
)
from watchkeeper.schema import Feature, FeatureSchema
from watchkeeper.settings import Settings
from watchkeeper_cli.main import main

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(raw_days=30, labelled_days=365, history_days=730, batch_rows=5000)
SCHEMA = FeatureSchema((Feature("area", "numeric"),), target="price")


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


class Log:
    """Writes requests, predictions and labels at chosen times."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.n = 0

    def request(self, when: datetime, items: int = 1) -> list[str]:
        """A request of ``items`` predictions (none: a rejected one); their ids."""
        return self.requests(when, 1, items)[0]

    def requests(self, when: datetime, count: int, items: int = 1) -> list[list[str]]:
        """``count`` requests in one transaction; the ids of each one's predictions
        (a single record's is its request id, a batch item's ``<request id>.<index>``)."""
        request_rows, ids = [], []
        for _ in range(count):
            self.n += 1
            request_id = f"r{self.n:05d}"
            ids.append([request_id] if items == 1 else [f"{request_id}.{i}" for i in range(items)])
            request_rows.append(
                {
                    "request_id": request_id,
                    "received_at": when,
                    "endpoint": "/predict",
                    "method": "POST",
                    "status_code": 200 if items else 400,
                    "latency_seconds": 0.01,
                    "model_version": "v1" if items else None,
                    "n_items": items,
                    "features": {"area": [1000.0 + self.n + i for i in range(items)]}
                    if items
                    else None,
                    "single": items == 1 if items else None,
                    # SQL NULL, as the writer stores it (SQLite's JSON type: ``null``)
                    "outputs": [[100.0, 90.0, 110.0]] * items if items else sa.null(),
                }
            )
        with self.engine.begin() as connection:
            # one statement per row keeps ``seq`` in the order written
            for row in request_rows:
                connection.execute(requests.insert().values(**row))
        return ids

    def label(self, prediction_id: str, when: datetime, actual: float = 105.0) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                feedback.insert().values(
                    prediction_id=prediction_id, actual=actual, received_at=when
                )
            )

    def history(self, when: datetime, status: str = "done") -> None:
        self.n += 1
        with self.engine.begin() as connection:
            connection.execute(
                window_results.insert().values(
                    window_id=f"w{self.n}",
                    model_version="v1",
                    detector="feature_drift",
                    first_seq=1,
                    last_seq=2,
                    n_rows=2,
                    started_at=when,
                    ended_at=when,
                    evaluated_at=when,
                    details={},
                )
            )
            run_id = connection.execute(
                retrain_runs.insert().values(
                    started_at=when,
                    finished_at=when if status == "done" else None,
                    trigger="manual",
                    reason="test",
                    request_ids=[],
                    data={},
                    outcome="promoted" if status == "done" else "running",
                )
            ).inserted_primary_key[0]
            connection.execute(
                retrain_requests.insert().values(
                    requested_at=when,
                    trigger="manual",
                    reason="test",
                    evidence={},
                    status=status,
                    run_id=run_id,
                )
            )

    def ids(self, table: sa.Table, column: str) -> set[Any]:
        with self.engine.connect() as connection:
            return set(connection.execute(sa.select(table.c[column])).scalars())

    def set_watermark(self, value: int) -> None:
        LogReader(self.engine, settle_seconds=0).set_watermark(value)

    def max_seq(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.max(predictions.c.seq))).scalar() or 0)


def pruner(engine: sa.Engine, policy: RetentionPolicy = POLICY) -> Pruner:
    return Pruner(engine, policy, clock=lambda: NOW, pause=False)


def counts(report: Any) -> dict[str, int]:
    return {t.table: t.rows for t in report.tables}


def test_prune_keeps_what_each_retention_covers_and_a_dry_run_counts_the_same(
    engine: sa.Engine,
) -> None:
    log = Log(engine)
    old = log.request(ago(40), items=2)  # unlabelled, past raw retention: goes
    rejected = log.request(ago(40), items=0)  # a rejected request: goes
    recent_label = log.request(ago(200))  # labelled 100 days ago: kept with its request
    log.label(recent_label[0], ago(100))
    aged_label = log.request(ago(500))  # label older than the labelled retention: goes
    log.label(aged_label[0], ago(400))
    half = log.request(ago(40), items=2)  # one labelled item keeps the request whole
    log.label(half[1], ago(35))
    young = log.request(ago(1))
    log.label("never-logged", ago(400))  # an old orphan label: goes
    log.label("not-yet-logged", ago(2))  # a recent orphan label: kept
    log.history(ago(800))
    log.history(ago(800), status="pending")  # still to do: kept
    log.history(ago(10))
    newest = log.request(ago(0))
    log.set_watermark(log.max_seq())

    expected = {
        "predictions": 3,
        "requests": 3,
        "feedback": 2,
        "window_results": 2,
        "retrain_requests": 1,
        "retrain_runs": 1,
    }
    before = {t.name: log.ids(t, t.primary_key.columns.keys()[0]) for t in (requests, feedback)}
    dry = pruner(engine).run(dry_run=True)
    assert counts(dry) == expected
    assert log.ids(requests, "request_id") == before["requests"]  # nothing deleted

    report = pruner(engine).run()

    assert counts(report) == expected
    remaining = log.ids(predictions, "prediction_id")
    assert remaining == {*recent_label, *half, *young, *newest}
    assert not remaining & {*old, *aged_label}
    kept_requests = log.ids(requests, "request_id")
    assert {p.split(".")[0] for p in remaining} == kept_requests
    assert rejected == [] and len(kept_requests) == 4
    assert log.ids(feedback, "prediction_id") == {recent_label[0], half[1], "not-yet-logged"}
    assert len(log.ids(window_results, "id")) == 1
    assert log.ids(retrain_requests, "status") == {"pending", "done"}
    assert counts(pruner(engine).run()) == dict.fromkeys(expected, 0)  # nothing left to do

    # what retraining and the accuracy checks read still holds together
    labelled = labelled_predictions(engine, SCHEMA, since=ago(365)).frame
    assert sorted(labelled["area"]) == sorted(labelled["area"].dropna())
    assert len(labelled) == 2 and labelled["price"].tolist() == [105.0, 105.0]


def test_prune_never_deletes_what_the_monitor_has_not_read(engine: sa.Engine) -> None:
    log = Log(engine)
    read = log.request(ago(40))
    log.set_watermark(log.max_seq())
    unread = log.request(ago(40), items=3)
    log.request(ago(0))

    pruner(engine).run()

    assert log.ids(predictions, "prediction_id") >= set(unread)
    assert not log.ids(predictions, "prediction_id") & set(read)
    assert unread[0].split(".")[0] in log.ids(requests, "request_id")

    log.set_watermark(log.max_seq())  # the monitor caught up
    report = pruner(engine).run()

    assert counts(report)["predictions"] == 3 and counts(report)["requests"] == 1
    assert not log.ids(predictions, "prediction_id") & set(unread)


def test_a_request_the_monitor_read_part_of_is_kept_until_it_read_all_of_it(
    engine: sa.Engine,
) -> None:
    """The watermark is a prediction's position: a window may end inside a batch. The
    batch goes once the watermark reaches its last item, not before."""
    log = Log(engine)
    batch = log.request(ago(40), items=3)
    log.request(ago(0))
    with engine.connect() as connection:
        seqs = (
            connection.execute(
                sa.select(predictions.c.seq)
                .where(predictions.c.prediction_id.in_(batch))
                .order_by(predictions.c.seq)
            )
            .scalars()
            .all()
        )

    log.set_watermark(seqs[1])
    assert counts(pruner(engine).run())["predictions"] == 0
    log.set_watermark(seqs[2])
    assert counts(pruner(engine).run())["predictions"] == 3
    assert not log.ids(predictions, "prediction_id") & set(batch)


def test_a_log_no_monitor_has_read_loses_no_prediction_unless_told_so(
    engine: sa.Engine,
) -> None:
    """Without the monitor's watermark the prune kept only the newest prediction: a
    monitor started on a 60-day-old log found the first 30 days gone before it read
    them."""
    log = Log(engine)
    unread = log.request(ago(40), items=3)
    log.request(ago(0))

    kept = pruner(engine).run()
    told = pruner(engine, replace(POLICY, without_monitor=True)).run()

    assert counts(kept)["predictions"] == 0
    assert counts(told)["predictions"] == 3
    assert not log.ids(predictions, "prediction_id") & set(unread)


def test_a_new_prediction_after_a_prune_is_above_the_monitor_watermark(
    engine: sa.Engine,
) -> None:
    """SQLite hands out a deleted highest rowid again: had the prune deleted every
    row, the next prediction would take a ``seq`` the monitor has already passed."""
    log = Log(engine)
    for _ in range(3):
        log.request(ago(40))
    log.set_watermark(log.max_seq())
    reader = LogReader(engine, settle_seconds=0)
    watermark = reader.watermark()

    pruner(engine).run()
    new = log.request(ago(0))

    rows = reader.read(watermark, reader.high_mark())
    assert rows["prediction_id"].tolist() == new


def test_small_batches_delete_the_same_rows_and_resume_where_they_stopped(
    engine: sa.Engine,
) -> None:
    log = Log(engine)
    for i in range(30):
        ids = log.request(ago(40 + i % 3), items=2)
        if i % 7 == 0:
            log.label(ids[0], ago(30))
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    small = RetentionPolicy(raw_days=30, labelled_days=365, history_days=730, batch_rows=4)

    report = pruner(engine, small).run()

    assert counts(report)["predictions"] == 60 - 10  # labelled requests kept whole
    assert counts(report)["requests"] == 30 - 5
    assert counts(pruner(engine, small).run())["predictions"] == 0


def test_a_writer_keeps_writing_while_a_prune_runs(engine: sa.Engine) -> None:
    log = Log(engine)
    log.requests(ago(40), 300, items=5)
    log.set_watermark(log.max_seq())
    log.request(ago(0))
    policy = RetentionPolicy(raw_days=30, labelled_days=365, history_days=730, batch_rows=50)
    done = threading.Event()
    reports = []

    def prune() -> None:
        reports.append(Pruner(engine, policy, clock=lambda: NOW).run())
        done.set()

    thread = threading.Thread(target=prune)
    thread.start()
    writer = Log(engine)
    writer.n = 10_000
    written, slowest = 0, 0.0
    while not done.is_set() or written < 5:
        started = time.monotonic()
        writer.request(ago(0))
        slowest = max(slowest, time.monotonic() - started)
        written += 1
        done.wait(0.02)  # a writer's pace between batches (it is not a wait for a condition)
    thread.join(60)

    assert counts(reports[0])["predictions"] == 1500
    assert len(log.ids(predictions, "prediction_id")) == written + 1
    assert slowest < 5.0  # one batch at a time; it is milliseconds on an idle machine


def test_the_monitor_exports_the_log_size_age_and_prunes(
    engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    log = Log(engine)
    log.request(ago(40), items=2)
    log.request(ago(0))
    settings = Settings(data_dir=tmp_path, database_url=database_url, retention_prune_interval=3600)
    loop = RetentionLoop(settings)
    registry = CollectorRegistry()
    loop.register(registry)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")  # the row estimate comes from statistics

    loop.read_stats()
    rows = registry.get_sample_value("watchkeeper_retention_rows", {"table": "predictions"})
    oldest = registry.get_sample_value(
        "watchkeeper_retention_oldest_row_timestamp_seconds", {"table": "predictions"}
    )
    assert rows == 3
    assert oldest == pytest.approx(ago(40).timestamp())
    assert registry.get_sample_value("watchkeeper_retention_database_bytes") > 0
    assert registry.get_sample_value(
        "watchkeeper_retention_limit_seconds", {"table": "feedback"}
    ) == pytest.approx(365 * 86400)

    log.set_watermark(log.max_seq())  # the monitor has read the log
    loop.prune()
    loop.read_stats()
    loop.engine.dispose()

    pruned = registry.get_sample_value(
        "watchkeeper_retention_rows_pruned_total", {"table": "predictions"}
    )
    assert pruned == 2
    assert registry.get_sample_value("watchkeeper_retention_last_prune_timestamp_seconds") > 0
    oldest = registry.get_sample_value(
        "watchkeeper_retention_oldest_row_timestamp_seconds", {"table": "predictions"}
    )
    assert oldest > ago(1).timestamp()


def test_window_labels_and_log_reads_across_a_prune(engine: sa.Engine) -> None:
    log = Log(engine)
    log.request(ago(40))
    first = log.max_seq() + 1
    kept = log.request(ago(5), items=3)
    log.label(kept[1], ago(4), actual=120.0)
    log.set_watermark(log.max_seq())

    pruner(engine).run()

    span = WindowSpan("w", "v1", first, log.max_seq(), 3, ago(5), ago(5))
    with engine.connect() as connection:
        labels = read_window_labels(connection, span)
    assert labels["actual"].tolist() == [120.0]
    rows = LogReader(engine, settle_seconds=0).read(0, log.max_seq())
    assert rows["prediction_id"].tolist() == kept
    # features come by column (feature:<name>), each row's at its place
    areas = rows["feature:area"].tolist()
    assert areas == sorted(areas)


def test_db_prune_prints_one_line_per_table(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(database_url)
    log = Log(engine)
    log.request(datetime.now(UTC) - timedelta(days=40))
    log.request(datetime.now(UTC))
    engine.dispose()
    monkeypatch.setenv("WATCHKEEPER_DATABASE_URL", database_url)

    assert main(["db", "prune", "--dry-run", "--without-monitor"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert main(["db", "prune", "--without-monitor"]) == 0  # no monitor reads this log
    done = capsys.readouterr().out.splitlines()

    assert len(dry) == 6
    assert len(done) == (7 if database_url.startswith("sqlite") else 6)  # + pages returned
    assert dry[0].split()[:4] == ["predictions", "would", "remove", "1"]
    assert done[0].split()[:3] == ["predictions", "removed", "1"]
    assert done[1].split()[:3] == ["requests", "removed", "1"]


def test_policy_keeps_labelled_rows_at_least_the_retraining_window(tmp_path: Path) -> None:
    policy = RetentionPolicy.from_settings(
        Settings(data_dir=tmp_path, retention_days=30, retention_labelled_days=90)
    )
    assert policy.labelled_days == 365  # WATCHKEEPER_RETRAIN_WINDOW_DAYS
    forever = RetentionPolicy.from_settings(Settings(data_dir=tmp_path, retention_days=0))
    assert forever.raw_days is None and forever.labelled_days is None
    assert MONITOR_WATERMARK == WATERMARK
    stats = log_stats.LogStats((), None)
    assert stats.tables == ()


def test_on_sqlite_a_prune_hands_the_deleted_pages_back_to_the_file_system(
    tmp_path: Path,
) -> None:
    from watchkeeper.db.migrate import upgrade

    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    log = Log(engine)
    log.requests(ago(40), 400, items=20)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    with engine.begin() as connection:  # fold the WAL into the file before measuring
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size

    report = pruner(engine).run()

    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        free = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
    engine.dispose()
    assert counts(report)["predictions"] == 8000
    assert report.freed_bytes is not None and report.freed_bytes > before / 2
    assert path.stat().st_size < before / 2 and free == 0
    assert report.lines()[-1].split()[:2] == ["(file)", "returned"]


def test_archived_rows_equal_what_the_prune_deleted(engine: sa.Engine, tmp_path: Path) -> None:
    log = Log(engine)
    batch = log.requests(ago(40), 3, items=4)  # unlabelled, by range
    aged = log.request(ago(500))  # labelled long ago: deleted with its label
    log.label(aged[0], ago(400), actual=321.0)
    with engine.begin() as connection:  # a categorical feature, missing in one row
        connection.execute(
            requests.update()
            .where(requests.c.request_id == batch[0][0].split(".")[0])
            .values(features={"area": [1.5, None, 3.0, 4.0], "zone": ["RL", "RM", None, "RL"]})
        )
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    with engine.connect() as connection:
        gone = connection.execute(
            sa.select(predictions.c.seq).where(predictions.c.created_at < ago(30))
        ).scalars()
        expected = read_rows(connection, list(gone))
    policy = RetentionPolicy(
        raw_days=30, labelled_days=365, history_days=730, batch_rows=5, archive_url=str(tmp_path)
    )

    report = Pruner(engine, policy, clock=lambda: NOW, pause=False).run()

    archived = read_archive(str(tmp_path)).drop(columns=["date"], errors="ignore")
    assert counts(report)["predictions"] == 13 == len(archived)
    pd.testing.assert_frame_equal(
        archived[expected.columns].reset_index(drop=True),
        expected.reset_index(drop=True),
        check_dtype=False,
    )
    assert archived["area"].dtype == "float64" and archived["zone"].dtype == object
    assert archived.loc[archived["prediction_id"] == aged[0], "actual"].tolist() == [321.0]
    assert not log.ids(predictions, "prediction_id") & set(archived["prediction_id"])
    # a retried batch rewrites its file rather than adding a copy
    files = sorted(p.name for p in tmp_path.rglob("*.parquet"))
    assert len(files) == len(set(files)) and not list(tmp_path.rglob("*.partial"))


def test_the_running_monitor_prunes_the_log_and_exports_it(
    start_watchkeeper: Callable[..., Process], tmp_path: Path
) -> None:
    from watchkeeper.db.migrate import upgrade

    engine = create_engine(sqlite_url(tmp_path / "var"))
    upgrade(engine)
    log = Log(engine)
    log.requests(datetime.now(UTC) - timedelta(days=40), 20, items=3)
    log.request(datetime.now(UTC))
    engine.dispose()

    monitor = start_watchkeeper("monitor", WATCHKEEPER_RETENTION_PRUNE_INTERVAL="3600")

    def pruned() -> float | None:
        for line in monitor.get("/metrics").text.splitlines():
            if line.startswith('watchkeeper_retention_rows_pruned_total{table="predictions"}'):
                return float(line.split()[-1])
        return None

    assert wait_for(lambda: pruned() == 60, timeout=60), monitor.log_path
    metrics = monitor.get("/metrics").text
    assert 'watchkeeper_retention_rows{table="predictions"} 1.0' in metrics
    assert "watchkeeper_retention_last_prune_timestamp_seconds" in metrics


def test_labels_pruned_into_the_archive_can_still_train(engine: sa.Engine, tmp_path: Path) -> None:
    log = Log(engine)
    old = log.request(ago(500))
    log.label(old[0], ago(400), actual=250.0)
    recent = log.request(ago(20))
    log.label(recent[0], ago(10), actual=260.0)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    since = ago(450)
    before = labelled_predictions(engine, SCHEMA, since=since)
    policy = RetentionPolicy(
        raw_days=30, labelled_days=365, history_days=730, batch_rows=50, archive_url=str(tmp_path)
    )

    Pruner(engine, policy, clock=lambda: NOW, pause=False).run()

    kept = labelled_predictions(engine, SCHEMA, since=since)
    archived = archived_labels(str(tmp_path), SCHEMA.names, SCHEMA.target, since=since)
    assert len(before) == 2 and len(kept) == 1 and len(archived) == 1
    both = pd.concat([archived.frame, kept.frame], ignore_index=True)
    pd.testing.assert_frame_equal(
        both[["area", "price"]], before.frame[["area", "price"]], check_dtype=False
    )


@pytest.mark.parametrize(
    ("url", "raw_days"), [("postgresql://db/log", 31), ("sqlite:///log.db", 30), ("", 30)]
)
def test_the_raw_limit_allows_the_day_partitioned_log_its_extra_day(
    tmp_path: Path, url: str, raw_days: int
) -> None:
    """On PostgreSQL raw rows go by whole UTC days (up to a day past the retention):
    a limit of the retention alone would have the overdue alert fire every night."""
    settings = Settings(data_dir=tmp_path, database_url=url, retention_days=30)
    limits = RetentionPolicy.from_settings(settings).limits()
    assert limits["predictions"] == limits["requests"] == raw_days * 86400
    assert limits["feedback"] == 365 * 86400


def _archived_seqs(root: Path) -> list[int]:
    """Every ``seq`` in the archive's files, as often as the files hold it."""
    return [s for f in root.rglob("*.parquet") for s in pq.read_table(f)["seq"].to_pylist()]


def test_a_prune_stopped_after_archiving_and_retried_archives_each_row_once(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(engine)
    old = log.requests(ago(40), 6, items=2)
    newest = log.request(ago(0))
    with engine.connect() as connection:
        read_to = connection.execute(
            sa.select(sa.func.max(predictions.c.seq)).where(
                predictions.c.request_id == old[3][0].split(".")[0]
            )
        ).scalar_one()
    log.set_watermark(read_to)  # the monitor read the first four requests
    policy = replace(POLICY, batch_rows=50, archive_url=str(tmp_path))
    write = Archive.write

    def killed(self: Archive, connection: sa.Connection, seqs: Any) -> int:
        write(self, connection, seqs)
        raise RuntimeError("killed before the delete committed")

    monkeypatch.setattr(Archive, "write", killed)
    with pytest.raises(RuntimeError, match="killed"):
        pruner(engine, policy).run()
    monkeypatch.setattr(Archive, "write", write)
    assert len(_archived_seqs(tmp_path)) == 8 and len(log.ids(predictions, "seq")) == 13
    # the retry's batch differs: the monitor read on, a label arrived for the second
    log.set_watermark(log.max_seq())
    log.label(old[1][0], ago(0))

    pruner(engine, policy).run()

    seqs = _archived_seqs(tmp_path)
    assert len(seqs) == len(set(seqs)) == 12  # the labelled request's two as well
    assert log.ids(predictions, "prediction_id") - set(old[1]) == set(newest)
    assert set(read_archive(str(tmp_path))["prediction_id"]) == {p for r in old for p in r}

    # once the label ages out its request goes, archived again with its label: still once
    later = Pruner(engine, policy, clock=lambda: NOW + timedelta(days=400), pause=False)
    later.run()

    seqs = _archived_seqs(tmp_path)
    assert len(seqs) == len(set(seqs)) == 12
    archived = read_archive(str(tmp_path))
    assert archived.loc[archived["prediction_id"] == old[1][0], "actual"].tolist() == [105.0]


def test_an_archive_write_that_fails_leaves_no_partial_file(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log(engine)
    log.requests(ago(40), 3)
    log.request(ago(0))
    log.set_watermark(log.max_seq())

    def full_disk(table: Any, where: Any, **_: Any) -> None:
        where.write(b"PAR1")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space"):
        pruner(engine, replace(POLICY, archive_url=str(tmp_path / "archive"))).run()

    assert not [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
    assert len(log.ids(requests, "request_id")) == 4  # nothing deleted unarchived


def test_requests_dated_ahead_of_the_clock_go_with_the_old_ones_stored_after_them(
    engine: sa.Engine,
) -> None:
    """Stored before requests that are old, requests dated ahead (a server's clock ran
    ahead) are old too: they go with them, and stop neither the prune nor its resume
    point (one dated decades ahead held it for decades)."""
    log = Log(engine)
    log.requests(ago(40), 5)
    log.requests(NOW + timedelta(days=30), 3)  # a server's clock ran ahead
    log.requests(NOW + timedelta(days=365 * 70), 2)  # a clock set decades ahead
    log.requests(ago(40), 20, items=2)
    young = log.requests(ago(1), 2)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    small = replace(POLICY, batch_rows=4)

    report = pruner(engine, small).run()

    assert counts(report)["predictions"] == 5 + 5 + 40
    left = log.ids(requests, "request_id")
    assert left == {r[0] for r in young} | {max(left)}
    with engine.connect() as connection:  # past every request deleted
        resume = read_position(connection, REQUESTS_POSITION)
        first_young = connection.execute(
            sa.select(sa.func.min(requests.c.seq)).where(
                requests.c.request_id.in_([r[0] for r in young])
            )
        ).scalar_one()
    assert resume == first_young - 1


def test_requests_dated_decades_ahead_go_once_a_request_stored_after_them_is_old(
    engine: sa.Engine,
) -> None:
    """Requests dated decades ahead with nothing old after them yet hold the resume
    point; once requests stored after them are old, they go with them, not decades
    later."""
    log = Log(engine)
    log.requests(ago(40), 2)
    far = log.requests(NOW + timedelta(days=365 * 70), 3)
    log.requests(ago(1), 4)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    assert counts(pruner(engine).run())["requests"] == 2
    assert {r[0] for r in far} <= log.ids(requests, "request_id")  # nothing old after them

    later = Pruner(engine, POLICY, clock=lambda: NOW + timedelta(days=31), pause=False)

    assert counts(later.run())["requests"] == 3 + 4
    assert not {r[0] for r in far} & log.ids(requests, "request_id")


def test_a_labelled_request_dated_ahead_goes_once_its_label_ages(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """The raw pass passed a request dated decades ahead, kept for its recent label,
    once old requests were stored after it; when the label aged the labelled pass took
    only requests dated before the cut-off, so it stayed with its label for decades."""
    log = Log(engine)
    log.requests(ago(40), 2)
    far = log.requests(NOW + timedelta(days=365 * 70), 2)
    log.label(far[0][0], ago(5))
    log.requests(ago(35), 3)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    policy = replace(POLICY, archive_url=str(tmp_path))

    def at(days: float) -> Pruner:
        return Pruner(engine, policy, clock=lambda: NOW + timedelta(days=days), pause=False)

    assert counts(at(0).run())["requests"] == 2 + 1 + 3
    assert counts(at(300).run())["requests"] == 0  # its label is within the retention
    assert far[0][0] in log.ids(requests, "request_id") & log.ids(feedback, "prediction_id")

    dry = at(400).run(dry_run=True)
    report = at(400).run()

    assert counts(dry) == counts(report)
    assert counts(report)["requests"] == counts(report)["feedback"] == 1
    assert far[0][0] not in log.ids(requests, "request_id") | log.ids(feedback, "prediction_id")
    archived = read_archive(str(tmp_path))  # written before the delete, with its label
    assert archived.loc[archived["prediction_id"] == far[0][0], "actual"].tolist() == [105.0]
    assert counts(at(401).run())["requests"] == 0


def test_requests_dated_ahead_go_in_batches_of_batch_rows(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests dated ahead read in earlier batches were all deleted in the batch that
    met an old request stored after them, past ``batch_rows`` (up to 10,000 more)."""
    log = Log(engine)
    log.requests(ago(40), 3, items=2)
    log.requests(NOW + timedelta(days=365 * 70), 11, items=2)
    log.requests(ago(40), 3, items=2)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    deletes: list[int] = []
    delete = Pruner._delete

    def counted(self: Pruner, connection: sa.Connection, rows: Any) -> None:
        deletes.append(sum(r.n_items for r in rows))
        delete(self, connection, rows)

    monkeypatch.setattr(Pruner, "_delete", counted)

    report = pruner(engine, replace(POLICY, batch_rows=4)).run()

    assert counts(report)["predictions"] == 2 * (3 + 11 + 3)
    assert max(deletes) <= 4
    assert len(log.ids(requests, "request_id")) == 1


def test_any_number_of_requests_dated_ahead_in_a_row_go(engine: sa.Engine) -> None:
    """More than 10,000 requests dated ahead in a row stopped the raw pass at the
    10,001st for good: none of them, nor any later request, went until their date."""
    log = Log(engine)
    log.requests(ago(40), 2)
    far = log.requests(NOW + timedelta(days=365 * 70), 10_001)
    log.requests(ago(1), 3)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    assert counts(pruner(engine).run())["requests"] == 2

    later = Pruner(engine, POLICY, clock=lambda: NOW + timedelta(days=31), pause=False)

    assert counts(later.run())["requests"] == 10_001 + 3
    assert not {r[0] for r in far} & log.ids(requests, "request_id")


def test_old_requests_a_prune_read_and_did_not_delete_go_at_the_next_prune(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune stopped between its batches (a restart, a database error) had kept how
    far it read, but not which of those requests it knew to be old: the next prunes
    read on from there, and the old ones in between stayed until a later request got
    old (up to the raw retention more; the log's oldest row said so all along)."""
    log = Log(engine)
    log.requests(ago(40), 6, items=2)
    log.request(ago(1))
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    small = replace(POLICY, batch_rows=10)
    delete = Pruner._delete
    calls = 0

    def failing_second(self: Pruner, connection: sa.Connection, rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sa.exc.OperationalError("DELETE", {}, Exception("the database went away"))
        delete(self, connection, rows)

    monkeypatch.setattr(Pruner, "_delete", failing_second)
    with pytest.raises(sa.exc.OperationalError):
        pruner(engine, small).run()
    monkeypatch.setattr(Pruner, "_delete", delete)

    pruner(engine, small).run()

    assert log.ids(requests, "request_id") == {"r00007", "r00008"}


def test_requests_dated_just_ahead_go_by_their_own_date_in_a_quiet_log(
    engine: sa.Engine,
) -> None:
    """Once read past, requests dated an hour ahead were never checked by date again:
    with no request stored after them getting old (a quiet log: the newest is always
    kept) they stayed for good."""
    log = Log(engine)
    log.requests(ago(40), 2)
    ahead = log.requests(NOW + timedelta(hours=1), 3)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    assert counts(pruner(engine).run())["requests"] == 2

    later = Pruner(engine, POLICY, clock=lambda: NOW + timedelta(days=31), pause=False)

    assert counts(later.run())["requests"] == 3
    assert not {r[0] for r in ahead} & log.ids(requests, "request_id")


def test_requests_dated_ahead_the_monitor_has_not_read_are_kept(engine: sa.Engine) -> None:
    """Requests dated ahead are deleted once an old one stored after them comes, each
    checked again: a watermark moved back keeps those past it, and those before them
    (no old request is read after them), and the prune after it caught up takes them."""
    log = Log(engine)
    log.requests(ago(40), 2)
    far = log.requests(NOW + timedelta(days=365 * 70), 3)
    log.request(ago(1), items=0)  # rejected: old a month later, read or not
    log.requests(ago(1), 2)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    assert counts(pruner(engine).run())["requests"] == 2
    with engine.connect() as connection:
        first_far = connection.execute(
            sa.select(sa.func.min(predictions.c.seq)).where(
                predictions.c.prediction_id.in_([r[0] for r in far])
            )
        ).scalar_one()
    log.set_watermark(first_far)  # moved back: only the first of them read
    later = Pruner(engine, POLICY, clock=lambda: NOW + timedelta(days=31), pause=False)

    assert counts(later.run())["requests"] == 0
    assert {r[0] for r in far} <= log.ids(requests, "request_id")

    log.set_watermark(log.max_seq())
    assert counts(later.run())["requests"] == 3 + 1 + 2
    assert len(log.ids(requests, "request_id")) == 1


def test_a_prune_waits_for_one_under_way_and_then_runs(engine: sa.Engine) -> None:
    """Two prunes at once (the monitor's, `db prune`, two monitors in a rolling update)
    could lose archived rows: one took rows out of the other's archive file, then failed
    before writing its own."""
    log = Log(engine)
    log.requests(ago(40), 3, items=2)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    reports: list[Any] = []

    with one_prune_at_a_time(engine):
        second = threading.Thread(target=lambda: reports.append(pruner(engine).run()))
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive() and reports == []  # waiting, nothing deleted
        assert len(log.ids(predictions, "prediction_id")) == 7
    second.join(timeout=60)

    assert counts(reports[0])["predictions"] == 6
    assert pruner(engine).run(dry_run=True)  # a dry run takes no lock


# features named as the archive's own columns, or as another feature's archive column
CLASHING = {
    "seq": [0.5, 1.5],
    "feature_seq": [-1.0, -2.0],
    "date": [3.0, 4.0],
    "actual": [7.0, 8.0],
    "label": ["a", "b"],
    "feature_x": ["p", None],
}


def _log_labelled_long_ago(engine: sa.Engine, features: dict[str, list[Any]]) -> list[str]:
    """One request of two predictions with ``features``, labelled long ago (so a prune
    archives it), and a recent one; the old predictions' ids."""
    log = Log(engine)
    old = log.request(ago(500), items=2)
    with engine.begin() as connection:
        connection.execute(
            requests.update()
            .where(requests.c.request_id == old[0].split(".")[0])
            .values(features=features)
        )
    for i, pid in enumerate(old):
        log.label(pid, ago(400), actual=200.0 + i)
    log.request(ago(0))
    log.set_watermark(log.max_seq())
    return old


def test_features_named_as_archive_columns_are_archived_and_read_back_as_themselves(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """``seq`` and ``feature_seq`` were both archived as ``feature_seq``: every prune
    failed (duplicate column names) and the log grew without bound."""
    old = _log_labelled_long_ago(engine, CLASHING)
    policy = replace(POLICY, batch_rows=50, archive_url=str(tmp_path))

    report = pruner(engine, policy).run()

    assert counts(report)["predictions"] == 2
    archived = read_archive(str(tmp_path))
    assert archived["prediction_id"].tolist() == old
    assert archived["actual"].tolist() == [200.0, 201.0]  # the label, not the feature
    columns = {feature_name(c): c for c in archived.columns if c.startswith("feature_")}
    assert columns == {name: feature_column(name) for name in CLASHING}
    for name, values in CLASHING.items():
        assert archived[feature_column(name)].tolist() == values, name
    schema = FeatureSchema(
        tuple(
            Feature(n, "categorical" if n in {"label", "feature_x"} else "numeric")
            for n in CLASHING
        ),
        target="price",
    )
    rows = archived_labels(str(tmp_path), schema.names, "price", since=ago(450))
    assert rows.frame.to_dict("list") == {**CLASHING, "price": [200.0, 201.0]}
    assert rows.prediction_ids == tuple(old)


def _as_written_before_the_naming_rule(root: Path) -> None:
    """Rewrite every archive file as the earlier writer named its columns: a feature
    ``feature_<log column>`` only when its name was a log column's, no naming key."""
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path).drop_columns(["date"])
        earlier = {feature_column(n) for n in ("seq", "date", "actual", "label", "prediction")}
        names = [c if c in earlier else feature_name(c) for c in table.column_names]
        metadata = {k: v for k, v in table.schema.metadata.items() if b"watchkeeper" not in k}
        pq.write_table(table.rename_columns(names).replace_schema_metadata(metadata), path)


@pytest.mark.parametrize(
    "features",
    [
        {"seq": [0.5, 1.5], "feature_x": ["p", None], "area": [1.0, 2.0]},
        {"feature_seq": [-1.0, -2.0]},  # a feature of that very name, no ``seq`` one
    ],
)
def test_an_archive_written_before_the_naming_rule_reads_back_the_same_features(
    engine: sa.Engine, tmp_path: Path, features: dict[str, list[Any]]
) -> None:
    old = _log_labelled_long_ago(engine, features)
    pruner(engine, replace(POLICY, archive_url=str(tmp_path))).run()
    names = tuple(features)
    current = archived_labels(str(tmp_path), names, "price", since=ago(450))

    _as_written_before_the_naming_rule(tmp_path)

    earlier = archived_labels(str(tmp_path), names, "price", since=ago(450))
    assert earlier.frame.to_dict("list") == {**features, "price": [200.0, 201.0]}
    pd.testing.assert_frame_equal(earlier.frame, current.frame)
    assert earlier.prediction_ids == current.prediction_ids == tuple(old)
