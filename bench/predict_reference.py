"""The in-process reference: CPU of ``Model.predict`` called the way ``/predict``
calls it (a dict of column lists built from JSON records, not a DataFrame)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.workloads import columns_of
from watchkeeper.model import Model


def predict_cpu_ms(model: Model, records: list[dict[str, Any]], rows: int) -> float:
    """Median over blocks of process CPU milliseconds per ``model.predict`` call.

    CPU, not wall-clock time: on a shared machine the wall clock measures the
    neighbours. Building the columns is outside the timed part, as in the server
    (validation builds them)."""
    columns = columns_of(records[:rows], model.schema)
    calls = max(10, 200 // max(1, rows // 10))
    for _ in range(3):
        model.predict(columns)
    blocks = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            model.predict(columns)
        blocks.append((time.process_time() - start) / calls * 1e3)
    return statistics.median(blocks)
