"""The background writer on its own: batching, back-pressure by spilling, refused
rows set aside, and spill files of dead processes replayed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.log_entry import LogEntry
from serving.metrics import LogMetrics
from serving.prediction_log import PredictionLog
from serving.spill import SpillStore
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import requests


def _entry(n: int, **overrides: object) -> LogEntry:
    values = dict(
        request_id=f"{n:032x}",
        received_at=datetime.now(UTC),
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version="v1",
        features=[{"x": n}],
        values=[float(n)],
        lower=[n - 1.0],
        upper=[n + 1.0],
    )
    values.update(overrides)
    return LogEntry(**values)  # type: ignore[arg-type]


def _count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        n = connection.execute(sa.select(sa.func.count()).select_from(requests)).scalar()
    engine.dispose()
    return int(n)


@pytest.fixture
def make_log(database_url: str) -> Iterator[Callable[..., PredictionLog]]:
    engines: list[sa.Engine] = []

    def factory(spill_dir: Path, registry: CollectorRegistry, **options: float) -> PredictionLog:
        engines.append(create_engine(database_url))
        return PredictionLog(engines[-1], SpillStore(spill_dir), LogMetrics(registry), **options)

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    return tmp_path / "spill"


def test_entries_are_written_in_batches_and_drained_on_close(
    database_url: str, spill_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(spill_dir, registry, batch_size=7, flush_interval=0.01).start()

    for n in range(100):
        log.submit(_entry(n))
    log.close()

    assert _count(database_url) == 100
    assert (
        registry.get_sample_value("watchkeeper_log_rows_written_total", {"table": "predictions"})
        == 100
    )
    assert registry.get_sample_value("watchkeeper_log_queue_depth") == 0


def test_full_queue_spills_instead_of_dropping_and_replays_later(
    database_url: str, spill_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(spill_dir, registry, queue_size=5)  # writer not started yet

    for n in range(20):
        log.submit(_entry(n))

    assert registry.get_sample_value("watchkeeper_log_rows_spilled_total") == 15
    log.start()
    log.close()
    assert _count(database_url) == 20
    assert registry.get_sample_value("watchkeeper_log_rows_replayed_total") == 15


def test_entry_the_database_refuses_is_dead_lettered_without_losing_its_batch(
    database_url: str, spill_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(spill_dir, registry, flush_interval=0.05).start()

    log.submit(_entry(1))
    log.submit(_entry(2, status_code=70_000))  # overflows SMALLINT on PostgreSQL; SQLite takes it
    log.submit(_entry(3))
    log.close()

    stored = _count(database_url)
    dead = list(spill_dir.glob("deadletter-*.jsonl"))
    assert stored + len(dead) == 3
    assert stored >= 2


def test_spill_files_left_by_a_dead_process_are_replayed_once(
    database_url: str, spill_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    spill_dir.mkdir()
    (spill_dir / f"spill-{dead_pid}-abc.open").write_bytes(
        b"".join(_entry(n).to_json() + b"\n" for n in range(5)) + b'{"cut short'
    )
    registry = CollectorRegistry()
    log = make_log(spill_dir, registry, flush_interval=0.01).start()
    log.close()

    assert _count(database_url) == 5
    assert registry.get_sample_value("watchkeeper_log_rows_replayed_total") == 5
    assert os.listdir(spill_dir) == []


def test_replaying_the_same_entries_twice_stores_them_once(
    database_url: str, spill_dir: Path, make_log: Callable[..., PredictionLog]
) -> None:
    registry = CollectorRegistry()
    log = make_log(spill_dir, registry, flush_interval=0.01).start()
    entries = [_entry(n) for n in range(10)]
    for entry in entries + entries:
        log.submit(entry)
    log.close()

    assert _count(database_url) == 10
