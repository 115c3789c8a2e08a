"""One measured run: load one server with one scenario and charge it its CPU.

CPU is the whole process tree's (see :mod:`bench.proc_cpu`), read before the load
and again once the server has finished everything the run caused: for a server
with a prediction log, after the log's ``requests`` table holds one row per request
answered (the writer's drain is part of the cost). The load generator is a separate
process; its CPU is not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.proc_cpu import cpu_seconds
from bench.servers import Server
from bench.workloads import JSON, Scenario, ServerKind

LOAD_CLIENT = Path(__file__).resolve().parent / "load_client.py"


@dataclass(frozen=True)
class Run:
    server: str
    scenario: str
    round: int
    answered: int
    not_ok: int
    cpu_seconds: float
    load_average: float
    p50_ms: float | None
    logged: int | None = None  # rows the run added to the log
    drain_seconds: float | None = None  # load stopped → last row in the log

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.cpu_seconds / self.answered * 1e3 if self.answered else None

    @property
    def lost(self) -> int | None:
        return None if self.logged is None else self.answered - self.logged


def _load(
    server: Server, body_file: Path, concurrency: int, seconds: float, content_type: str
) -> dict:
    argv = [
        sys.executable,
        str(LOAD_CLIENT),
        "--port",
        str(server.port),
        "--path",
        server.predict_path,
        "--body-file",
        str(body_file),
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
        "--content-type",
        content_type,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300, check=True)
    return json.loads(done.stdout)


def _wait_logged(
    server: Server, start: int, expected: int, ended_at: float, timeout: float
) -> float | None:
    """Seconds from the end of the load until the log holds ``expected`` rows past
    ``start``; None if it does not within ``timeout``. Polls a few times a second: on
    PostgreSQL each poll is a query whose CPU is charged to the server."""
    assert server.log is not None
    interval = 0.1 if server.extra_roots else 0.05
    deadline = time.monotonic() + timeout
    while server.log.count_since(start) < expected:
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
    return max(time.time() - ended_at, 0.0)


def measure(
    server: Server,
    scenario: Scenario,
    body_file: Path,
    *,
    seconds: float,
    round_: int,
    drain_timeout: float,
) -> Run:
    roots = server.roots()
    start = server.log.position() if server.log is not None else 0
    before = cpu_seconds(roots)
    content_type = scenario.content_type if server.kind is ServerKind.WATCHKEEPER else JSON
    result = _load(server, body_file, scenario.concurrency, seconds, content_type)
    answered = result["answered"]
    logged = drained = None
    if server.log is not None:
        # Every answered request is logged, whatever its status.
        drained = _wait_logged(server, start, answered, result["ended_at"], drain_timeout)
        logged = server.log.count_since(start)
    after = cpu_seconds(roots)
    not_ok = answered - result["statuses"].get("200", 0) + len(result["failures"])
    return Run(
        server=server.name,
        scenario=scenario.name,
        round=round_,
        answered=answered,
        not_ok=not_ok,
        cpu_seconds=after - before,
        load_average=os.getloadavg()[0],
        p50_ms=result["p50_ms"],
        logged=logged,
        drain_seconds=drained,
    )
