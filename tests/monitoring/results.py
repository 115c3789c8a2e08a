"""Window results as the monitor builds them, for tests of what reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from monitoring.window_result import Check, WindowResult

AT = datetime(2026, 1, 1, tzinfo=UTC)


def window_result(
    check: str,
    *,
    window_id: str = "v1:1-500",
    model_version: str = "v1",
    n_rows: int = 500,
    is_drift: bool | None = None,
    score: float | None = None,
    details: dict[str, Any] | None = None,
    evaluated_at: datetime = AT,
) -> WindowResult:
    """A result of ``check``; positions and times are placeholders nothing reads."""
    return WindowResult(
        window_id=window_id,
        model_version=model_version,
        check=Check(check),
        first_seq=1,
        last_seq=n_rows,
        n_rows=n_rows,
        started_at=AT,
        ended_at=AT,
        evaluated_at=evaluated_at,
        is_drift=is_drift,
        score=score,
        details=details or {},
    )
