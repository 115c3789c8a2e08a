"""The log's promise under the worst endings, with ``watchkeeper serve`` for real:
``kill -9`` of workers and the master under load loses no accepted prediction, and a
frozen database at peak batch rate neither grows a worker's memory nor loses rows."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.postgres import PostgresServer
from tests.processes import Process, children, query, sqlite_url, wait_for

pytestmark = pytest.mark.integration


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _logged(url: str, ids: set[str]) -> int:
    return len(ids & {row[0] for row in query(url, "SELECT request_id FROM requests")})


class _Load:
    """Client threads posting one body over and over; keeps the ids answered 200."""

    def __init__(self, url: str, body: bytes, threads: int, pause: float = 0.0) -> None:
        self.accepted: set[str] = set()
        self.answered = 0
        self._url, self._body, self._pause = url, body, pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _run(self) -> None:
        # closed on the way out: a session left to the garbage collector raised its
        # sockets' ResourceWarning as an error in whichever later test it happened to run
        with requests.Session() as session:
            self._send(session)

    def _send(self, session: requests.Session) -> None:
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                response = session.post(self._url, data=self._body, headers=headers, timeout=30)
            except requests.RequestException:
                time.sleep(0.02)  # the server is down: keep trying until told to stop
                continue
            with self._lock:
                self.answered += 1
                if response.status_code == 200:
                    self.accepted.add(response.headers["X-Request-ID"])
            if self._pause:
                self._stop.wait(self._pause)


def test_kill_9_of_a_worker_and_then_the_master_loses_no_accepted_prediction(
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    # A slow writer keeps entries in the journal when the processes die.
    env = {"WATCHKEEPER_WORKERS": "2", "WATCHKEEPER_LOG_WRITE_INTERVAL": "3"}
    server = start_watchkeeper("serve", **env)
    master = server.process.pid
    body = orjson.dumps({"features": replay_records[0]})
    with _Load(f"{server.url}/predict", body, threads=4) as load:
        assert wait_for(lambda: load.answered > 100, timeout=60)
        os.kill(children(master)[0], signal.SIGKILL)
        assert wait_for(lambda: load.answered > 300, timeout=60)
        workers = children(master)
        os.kill(master, signal.SIGKILL)
        for worker in workers:  # a crash of the whole tree, not a graceful worker exit
            os.kill(worker, signal.SIGKILL)
        server.process.wait(timeout=30)
    accepted = load.accepted
    assert len(accepted) > 300

    start_watchkeeper("serve", **env)  # the new workers replay the dead ones' journals
    url = sqlite_url(tmp_path / "var")
    assert wait_for(lambda: _logged(url, accepted) == len(accepted), timeout=120, interval=0.5), (
        f"{_logged(url, accepted)} of {len(accepted)} accepted predictions logged"
    )


@pytest.mark.postgres
def test_frozen_database_at_peak_batch_rate_bounds_worker_memory_and_loses_nothing(
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
) -> None:
    url = private_postgres.create_database()
    server = start_watchkeeper(
        "serve", WATCHKEEPER_WORKERS="2", WATCHKEEPER_DATABASE_URL=url, WATCHKEEPER_AUTO_MIGRATE="1"
    )
    workers = children(server.process.pid)
    batch = [replay_records[i % len(replay_records)] for i in range(1000)]
    body = orjson.dumps({"instances": batch})
    with _Load(f"{server.url}/predict", body, threads=2, pause=0.25) as load:
        assert wait_for(lambda: load.answered >= 8, timeout=60)
        baseline = max(_rss_bytes(pid) for pid in workers)
        private_postgres.stall()
        peak, stalled_at, before = baseline, time.monotonic(), load.answered
        try:
            while time.monotonic() - stalled_at < 60:
                peak = max(peak, *(_rss_bytes(pid) for pid in workers))
                time.sleep(0.5)
        finally:
            private_postgres.resume()
        answered_while_frozen = load.answered - before
    accepted = load.accepted

    assert answered_while_frozen >= 60, "the server must keep answering while the database hangs"
    # The writer holds at most one chunk (WATCHKEEPER_LOG_BATCH_BYTES, 4 MiB) in memory;
    # the rest waits on disk. The margin covers a request's own working set.
    assert peak - baseline < 150 * 1024 * 1024, f"RSS grew {(peak - baseline) / 2**20:.0f} MiB"
    engine_url = url
    assert wait_for(
        lambda: _logged(engine_url, accepted) == len(accepted), timeout=180, interval=1
    ), f"{_logged(engine_url, accepted)} of {len(accepted)} logged"
