"""``watchkeeper serve`` for real: gunicorn with two workers on a loopback port.

Metrics aggregate across workers (multiprocess mode), and SIGTERM drains every
worker's queued log entries before the processes exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.ports import free_port
from tests.serving.conftest import wait_for

pytestmark = pytest.mark.integration


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, data_dir: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.session = requests.Session()

    def predict(self, record: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.url}/predict", json={"features": record}, timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def start_server(tmp_path: Path, registry_dir: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(**env_overrides: str) -> Server:
        port = free_port()
        data_dir = tmp_path / "var"
        env = {
            **os.environ,
            "WATCHKEEPER_DATA_DIR": str(data_dir),
            "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
            "WATCHKEEPER_PORT": str(port),
            "WATCHKEEPER_WORKERS": "2",
            **env_overrides,
        }
        with open(tmp_path / "server.log", "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper.cli", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        server = Server(process, port, data_dir)
        servers.append(server)

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return requests.get(f"{server.url}/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_for(ready, timeout=60, interval=0.2)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_request_count_is_exact_across_two_workers(
    start_server: Callable[..., Server], replay_records: list[dict[str, Any]]
) -> None:
    server = start_server()
    n = 240

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda r: server.predict(r).status_code, replay_records[:n]))

    assert statuses == [200] * n
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert (
        _metric(
            text, 'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="200"}'
        )
        == n
    )
    assert _metric(text, 'watchkeeper_predictions_total{model_version="v1"}') == n
    assert (
        _metric(text, 'watchkeeper_http_request_duration_seconds_count{endpoint="/predict"}') == n
    )
    worker_files = {
        p.name.rsplit("_", 1)[-1] for p in (server.data_dir / "prometheus-multiproc").glob("*.db")
    }
    assert len(worker_files) >= 2, "both workers should have served requests"


def test_sigterm_drains_every_accepted_request_into_the_log(
    start_server: Callable[..., Server], replay_records: list[dict[str, Any]]
) -> None:
    # A long flush interval keeps entries queued in the workers when SIGTERM lands.
    server = start_server(WATCHKEEPER_LOG_FLUSH_INTERVAL="5", WATCHKEEPER_LOG_BATCH_SIZE="100000")
    n = 150

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(server.predict, replay_records[:n]))
    accepted = {r.headers["X-Request-ID"] for r in responses if r.status_code == 200}
    assert len(accepted) == n
    assert server.stop() == 0

    engine = sa.create_engine(f"sqlite:///{server.data_dir / 'watchkeeper.db'}")
    with engine.connect() as connection:
        logged = {row[0] for row in connection.execute(sa.text("SELECT request_id FROM requests"))}
        n_predictions = connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar()
    engine.dispose()
    assert logged == accepted
    assert n_predictions == n
