"""``watchkeeper monitor``: the long-running monitor (or one cycle with ``--once``)."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor, MonitorStatus
from monitoring.monitor_start import MonitorStart
from monitoring.retention_loop import RetentionLoop
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import require_current
from watchkeeper.db.reachability import unreachable
from watchkeeper.listen_address import ListenAddress
from watchkeeper.registry import ModelRegistry
from watchkeeper.service_loop import ServiceLoop
from watchkeeper.settings import Settings
from watchkeeper.status_server import Heartbeat

log = logging.getLogger(__name__)

STOP_GRACE = 3.0
"""Seconds a cycle may go on after SIGTERM before the monitor exits without it: the
window in hand takes tens of milliseconds, unless it waits for the database (SQLite's
write lock, for up to its 30 s busy timeout). Each window's results are one
transaction, stored before the watermark moves, so one left behind is evaluated again
at the next start."""


def build_monitor(settings: Settings, engine: sa.Engine | None = None) -> Monitor:
    engine = engine or create_engine(settings.storage.database_url)
    require_current(engine)
    registry = ModelRegistry(
        settings.storage.registry_path, trusted_types=settings.storage.trusted_types
    )
    return Monitor(settings, engine, registry)


def run(settings: Settings, *, once: bool = False) -> int:
    if once:
        return _run_once(build_monitor(settings))
    engine = create_engine(settings.storage.database_url)
    registry = CollectorRegistry()
    collector = MonitorCollector(MonitorStatus())
    registry.register(collector)
    start = MonitorStart(
        engine,
        lambda: build_monitor(settings, engine),
        collector,
        interval=settings.monitor.interval,
    )
    try:
        start.started(build_monitor(settings, engine))
    except sa.exc.OperationalError as exc:
        if not unreachable(exc):
            raise  # an answer (a refusal, another schema): said, and the monitor exits
        start.failed(exc)  # it starts anyway, and waits
    retention = RetentionLoop(settings)  # the log's size and age; prunes it
    retention.register(registry)
    loop = ServiceLoop(
        "monitor",
        ListenAddress(settings.monitor.host, settings.monitor.port, "monitor_host", "monitor_port"),
        settings.monitor.interval,
        settings.monitor.stall_seconds + settings.monitor.interval,
        stop_grace=STOP_GRACE,
    )
    read_once = threading.Event()  # the first cycle is done: the log may be pruned

    def cycle(heartbeat: Heartbeat, stop: threading.Event) -> None:
        running = start.wait(stop)
        if running is None:
            return
        try:
            # beats after each window stored: a long catch-up is progress, not a stall
            running.run_once(stop, on_progress=heartbeat.beat)  # logs and counts a failure
        except Exception as exc:
            start.failed(exc)
            raise
        start.answered()
        read_once.set()

    return loop.run(
        registry,
        cycle,
        on_start=lambda stop: retention.start(stop, read_once),
        waiting=start.waiting,
    )


def _run_once(monitor: Monitor) -> int:
    errors_before = sum(monitor.status.window_errors.values())
    windows = monitor.run_once()
    print(f"evaluated {windows} window(s); watermark at {monitor.reader.watermark()}")
    failed = sum(monitor.status.window_errors.values()) - errors_before
    if failed:
        print(f"error: {failed} check(s) failed on those windows; see the log above")
        return 1
    return 0
