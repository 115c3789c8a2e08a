"""Prediction-log entries as a request thread journals them, for the tests of what
stores and reads them (the writer, partitions, retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from serving.log_entry import LogEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def log_entry(n: int, items: int = 2, *, when: datetime | None = None, **fields: Any) -> LogEntry:
    """Request ``n`` (its id ``n`` in hex) of ``items`` predictions, received at ``when``
    (``T0`` + ``n`` seconds unless given); keyword arguments replace fields."""
    values: dict[str, Any] = dict(
        request_id=f"{n:032x}",
        received_at=when or T0 + timedelta(seconds=n),
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version="v1",
        single=items == 1,
        columns={"area": [100.0 * n + i for i in range(items)]},
        values=[float(n)] * items,
        lower=[n - 1.0] * items,
        upper=[n + 1.0] * items,
    )
    values.update(fields)
    return LogEntry(**values)


def journaled(entry: LogEntry) -> LogEntry:
    """``entry`` as the writer gets it: read back from its journal line."""
    return LogEntry.from_line(entry.to_line()[:-1])
