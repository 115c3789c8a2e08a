"""The log's size, age and pruning as Prometheus metrics, from the latest figures the
retention loop (:mod:`monitoring.retention_loop`) recorded: a custom collector, read
at scrape time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from watchkeeper.db.log_stats import LogStats
from watchkeeper.db.retention import PruneReport

PREFIX = "watchkeeper_retention_"


@dataclass
class RetentionStatus:
    """What the retention loop last saw and did; shared with the collector."""

    limits: dict[str, float]
    """Seconds each table's oldest row may reach (``RetentionPolicy.limits``)."""
    stats: LogStats | None = None
    last_prune: PruneReport | None = None
    pruned: dict[str, int] = field(default_factory=dict)
    prune_errors: int = 0
    stats_errors: int = 0
    partition_errors: int = 0
    """Checks of the day partitions ahead that failed (PostgreSQL): an error, or a day
    from today to 7 days ahead left without partition (its lock not granted in time)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_prune(self, report: PruneReport) -> None:
        with self.lock:
            self.last_prune = report
            for table in report.tables:
                self.pruned[table.table] = self.pruned.get(table.table, 0) + table.rows


class RetentionCollector(Collector):
    def __init__(self, status: RetentionStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Any]:
        status = self.status
        with status.lock:
            stats, last, pruned = status.stats, status.last_prune, dict(status.pruned)
            errors = {
                "prune": status.prune_errors,
                "stats": status.stats_errors,
                "partitions": status.partition_errors,
            }
        limit = GaugeMetricFamily(
            PREFIX + "limit_seconds",
            "Age the oldest row of a table may reach under the retention settings "
            "(tables kept for ever have none).",
            labels=["table"],
        )
        for table, seconds in sorted(status.limits.items()):
            limit.add_metric([table], seconds)
        yield limit
        failures = CounterMetricFamily(
            PREFIX + "errors",
            "Prunes, size readings and checks of the day partitions ahead that failed.",
            labels=["task"],
        )
        for task, n in errors.items():
            failures.add_metric([task], n)
        yield failures
        removed = CounterMetricFamily(
            PREFIX + "rows_pruned", "Rows deleted by the monitor's prunes.", labels=["table"]
        )
        for table, n in sorted(pruned.items()):
            removed.add_metric([table], n)
        yield removed
        if last is not None:
            yield _gauge(
                "last_prune_timestamp_seconds",
                "Unix time the last successful prune finished.",
                last.finished_at.timestamp(),
            )
            yield _gauge(
                "last_prune_duration_seconds",
                "Seconds the last successful prune took, pauses for the writers included.",
                (last.finished_at - last.started_at).total_seconds(),
            )
        if stats is not None:
            yield from _stats(stats)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _stats(stats: LogStats) -> Iterator[Any]:
    rows = GaugeMetricFamily(
        PREFIX + "rows",
        "Rows in a log table (an estimate on PostgreSQL, exact on SQLite).",
        labels=["table"],
    )
    oldest = GaugeMetricFamily(
        PREFIX + "oldest_row_timestamp_seconds",
        "Unix time of a table's oldest row; for requests and predictions, the oldest the "
        "prune has not passed yet (labelled rows kept longer are left out).",
        labels=["table"],
    )
    for table in stats.tables:
        rows.add_metric([table.table], table.rows)
        if table.oldest is not None:
            oldest.add_metric([table.table], table.oldest.timestamp())
    yield rows
    yield oldest
    if stats.database_bytes is not None:
        yield _gauge("database_bytes", "Size of the log's database on disk.", stats.database_bytes)
