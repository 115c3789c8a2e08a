"""Helpers of the ``/predict`` tests: bodies from records, problems from answers, and
the CPU of a request against the model's own ``predict``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def columns_of(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Records as a ``columns`` body's arrays, in the first record's order."""
    return {name: [r[name] for r in records] for name in records[0]}


def problems_of(response: Any) -> dict[str, str]:
    """A 4xx answer's problems, by field."""
    return {d["field"]: d["problem"] for d in response.json["error"].get("details", [])}


def cheapest_cpu_ratio(
    call: Callable[[], Any], reference: Callable[[], Any], *, rounds: int = 9
) -> float:
    """This thread's CPU for ``call`` ÷ for ``reference``, in interleaved rounds of five
    calls each, the cheapest round of each counted so that a busy machine inflates
    neither."""

    def cpu(function: Callable[[], Any]) -> float:
        start = time.thread_time()
        for _ in range(5):
            function()
        return (time.thread_time() - start) / 5

    call()
    measured = [(cpu(call), cpu(reference)) for _ in range(rounds)]
    return min(c for c, _ in measured) / min(r for _, r in measured)
