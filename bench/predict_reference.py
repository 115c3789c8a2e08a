"""The in-process reference: CPU of ``Model.predict`` called the way ``/predict``
calls it (a dict of column lists built from JSON records, not a DataFrame).

It is measured in every round, in its turn among the servers, as one more "server"
(:data:`REFERENCE`): a figure taken once at the start, on a machine still quiet, and
divided into servers' figures taken later under load, would charge the servers the
load."""

from __future__ import annotations

import os
import time
from typing import Any

from bench.serving_runs import Run
from bench.workloads import Scenario, columns_of
from watchkeeper.model import Model

REFERENCE = "predict"


class PredictReference:
    """``model.predict`` on each scenario's rows, one call after another in this thread."""

    def __init__(self, model: Model, records: list[dict[str, Any]]) -> None:
        self._model = model
        self._records = records
        self._columns: dict[int, dict[str, list[Any]]] = {}

    def measure(self, scenario: Scenario, *, seconds: float, round_: int) -> Run:
        """Calls for ``seconds``, charged this thread's CPU (nothing else runs in the
        benchmark's process meanwhile; its load generator is another process)."""
        columns = self._columns.get(scenario.rows)
        if columns is None:
            columns = columns_of(self._records[: scenario.rows], self._model.schema)
            self._columns[scenario.rows] = columns
            for _ in range(3):  # first calls fill caches
                self._model.predict(columns)
        calls = 0
        deadline = time.monotonic() + seconds
        start = time.thread_time()
        while calls < 10 or time.monotonic() < deadline:
            self._model.predict(columns)
            calls += 1
        return Run(
            server=REFERENCE,
            scenario=scenario.name,
            round=round_,
            answered=calls,
            not_ok=0,
            cpu_seconds=time.thread_time() - start,
            load_average=os.getloadavg()[0],
            p50_ms=None,
        )
