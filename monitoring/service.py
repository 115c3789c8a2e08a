"""``watchkeeper monitor``: the long-running monitor (or one cycle with ``--once``)."""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry

from monitoring.metrics import MonitorCollector
from monitoring.monitor import Monitor
from monitoring.retention_loop import RetentionLoop
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import require_current
from watchkeeper.listen_address import ListenAddress
from watchkeeper.registry import ModelRegistry
from watchkeeper.service_loop import ServiceLoop
from watchkeeper.settings import Settings
from watchkeeper.status_server import Heartbeat

log = logging.getLogger(__name__)


def build_monitor(settings: Settings) -> Monitor:
    engine = create_engine(settings.storage.database_url)
    require_current(engine)
    registry = ModelRegistry(
        settings.storage.registry_path, trusted_types=settings.storage.trusted_types
    )
    return Monitor(settings, engine, registry)


def run(settings: Settings, *, once: bool = False) -> int:
    monitor = build_monitor(settings)
    if once:
        errors_before = sum(monitor.status.window_errors.values())
        windows = monitor.run_once()
        print(f"evaluated {windows} window(s); watermark at {monitor.reader.watermark()}")
        failed = sum(monitor.status.window_errors.values()) - errors_before
        if failed:
            print(f"error: {failed} check(s) failed on those windows; see the log above")
            return 1
        return 0
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor.status, monitor.served_version))
    retention = RetentionLoop(settings)  # the log's size and age; prunes it
    retention.register(registry)
    loop = ServiceLoop(
        "monitor",
        ListenAddress(settings.monitor.host, settings.monitor.port, "monitor_host", "monitor_port"),
        settings.monitor.interval,
        settings.monitor.stall_seconds + settings.monitor.interval,
    )
    read_once = threading.Event()  # the first cycle is done: the log may be pruned

    def cycle(heartbeat: Heartbeat, stop: threading.Event) -> None:
        # beats after each window stored: a long catch-up is progress, not a stall
        monitor.run_once(stop, on_progress=heartbeat.beat)  # logs and counts a failure
        read_once.set()

    return loop.run(registry, cycle, on_start=lambda stop: retention.start(stop, read_once))
