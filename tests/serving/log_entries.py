"""Log entries of the prediction log's tests: one regression prediction each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from serving.log_entry import LogEntry


def make_entry(n: int, **overrides: Any) -> LogEntry:
    """Entry ``n``: request id ``n`` in hex, one prediction ``n`` in ``[n - 1, n + 1]``,
    features ``x = n`` and ``kind = "a"``; ``overrides`` replace any field."""
    values: dict[str, Any] = dict(
        request_id=f"{n:032x}",
        received_at=datetime.now(UTC),
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version="v1",
        columns={"x": [n], "kind": ["a"]},
        values=[float(n)],
        lower=[n - 1.0],
        upper=[n + 1.0],
    )
    values.update(overrides)
    return LogEntry(**values)
