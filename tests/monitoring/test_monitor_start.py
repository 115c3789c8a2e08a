"""``watchkeeper monitor`` started while PostgreSQL does not answer: it starts, says
so on ``/healthz`` and once in its log, and runs once the database answers; an outage
later is said once too, not at every cycle."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor, MonitorStatus
from monitoring.monitor_start import MonitorStart
from tests.conftest import running_postgres
from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.processes import Process, metric, wait_for
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade

DOWN = "monitor: the database does not answer"
BACK = "monitor: the database answers again"


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    yield from running_postgres()


def _ran(monitor: Process) -> bool:
    text = monitor.get("/metrics").text
    return metric(text, "watchkeeper_monitor_last_success_timestamp_seconds") is not None


def test_a_database_that_does_not_answer_is_retried_backing_off_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_engine(f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x")
    collector = MonitorCollector(MonitorStatus())

    def build() -> Monitor:
        raise AssertionError("built before the database answered")

    start = MonitorStart(engine, build, collector, interval=2.0)
    stop = threading.Event()
    with caplog.at_level(logging.WARNING):
        began = time.monotonic()
        assert start.wait(stop) is None  # tried at 0, 0.5 and 1.5 s: then the interval
        first = time.monotonic() - began
        began = time.monotonic()
        assert start.wait(stop) is None  # once: the loop's interval paces it now
        second = time.monotonic() - began
    engine.dispose()

    assert 1.4 < first < 5.0
    assert second < 1.0
    assert start.waiting() == "the database to answer"
    assert collector.status.errors == 2  # a failed cycle each
    said = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 1, said


@pytest.mark.integration
@pytest.mark.postgres
def test_a_monitor_started_while_the_database_is_down_waits_for_it_and_then_runs(
    start_watchkeeper: Callable[..., Process], own_postgres: PostgresServer
) -> None:
    url = own_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    own_postgres.stop()
    try:
        monitor = start_watchkeeper(
            "monitor", WATCHKEEPER_DATABASE_URL=url, WATCHKEEPER_MONITOR_INTERVAL="0.5"
        )
        health = monitor.get("/healthz")
        time.sleep(2.0)  # cycles come and retry
        errors = metric(monitor.get("/metrics").text, "watchkeeper_monitor_errors_total")
        log_while_down = monitor.log_path.read_text()
    finally:
        own_postgres.start()

    assert health.status_code == 200, health.text
    assert health.json()["waiting_for"].startswith("the database to answer")
    assert errors is not None and errors >= 1
    assert log_while_down.count(DOWN) == 1, log_while_down
    assert "Traceback" not in log_while_down, log_while_down
    assert wait_for(lambda: _ran(monitor), timeout=30), monitor.log_path.read_text()
    assert "waiting_for" not in monitor.get("/healthz").json()
    assert monitor.log_path.read_text().count(BACK) == 1

    # An outage later: said once, and its end.
    own_postgres.stop()
    time.sleep(2.0)
    own_postgres.start()
    assert wait_for(lambda: monitor.log_path.read_text().count(BACK) == 2, timeout=30), (
        monitor.log_path.read_text()
    )
    log = monitor.log_path.read_text()
    assert log.count(DOWN) == 2, log
    # (the retention thread may log a traceback for a prune the shutdown cut short)
    assert "monitor cycle failed" not in log, log
    assert monitor.stop() == 0
