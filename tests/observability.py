"""Fixtures: real Prometheus and Alertmanager (Debian packages) on free loopback ports, with
the project's own rules and a rendering of its Alertmanager config; short intervals
and ``for:`` durations in these test copies only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import require_service
from tests.orphan_guard import guard_process
from tests.ports import free_port
from tests.processes import Process, wait_for
from watchkeeper.alertmanager_config import alertmanager_config
from watchkeeper.settings import Settings

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "prometheus"


class Server:
    def __init__(self, argv: list[str], url: str, ready_path: str, log: Path) -> None:
        self.url = url
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self._guard = guard_process(self.process.pid)
        assert wait_for(self._ready(ready_path), timeout=30, interval=0.2), log.read_text()[-2000:]

    def _ready(self, path: str) -> Callable[[], bool]:
        def check() -> bool:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                return requests.get(f"{self.url}{path}", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        return check

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._guard.release()


def binary(name: str, package: str) -> str:
    """Path of a service binary; missing is a skip here and a failure in CI."""
    path = shutil.which(name)
    if path is None:
        require_service(f"{name} (Debian package {package})")
    return path  # type: ignore[return-value]


def fast_rules(directory: Path, for_duration: str = "3s") -> list[Path]:
    """Copies of the rule files with every ``for:`` shortened, for live tests."""
    paths = []
    for source in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        text = re.sub(r"(?m)^(\s+for:) .*$", rf"\1 {for_duration}", source.read_text())
        target = directory / source.name
        target.write_text(text)
        paths.append(target)
    assert paths, f"no rule files in {PROMETHEUS_DIR / 'rules'}"
    return paths


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(settings: Settings) -> Server:
        executable = binary("prometheus-alertmanager", "prometheus-alertmanager")
        config = alertmanager_config(settings)
        config["route"].update(group_wait="1s", group_interval="1s")
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        storage = Path(tempfile.mkdtemp(dir=tmp_path))
        servers.append(
            Server(
                [
                    executable,
                    f"--config.file={path}",
                    f"--storage.path={storage}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                f"http://127.0.0.1:{port}",
                "/-/ready",
                tmp_path / "alertmanager.log",
            )
        )
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(targets: dict[str, str], alertmanager: str | None = None) -> Server:
        executable = binary("prometheus", "prometheus")
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir(exist_ok=True)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in fast_rules(rules_dir)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        if alertmanager:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        servers.append(
            Server(
                [
                    executable,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--rules.alert.resend-delay=1s",
                ],
                f"http://127.0.0.1:{port}",
                "/-/ready",
                tmp_path / "prometheus.log",
            )
        )
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def people() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver standing in for the people's notification channel: its URL
    and the notifications it received."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/notify", received
    server.shutdown()
    server.server_close()


def alert_path(
    start_prometheus: Callable[..., Server],
    start_alertmanager: Callable[..., Server],
    *,
    people_url: str,
    token_file: Path,
    server: Process,
    monitor: Process,
    worker: Process | None = None,
) -> tuple[Server, Server]:
    """Prometheus scraping the given Watchkeeper processes with the project's rules, and
    Alertmanager routing their alerts to ``people_url`` and to the server's ``/alerts``
    with the token in ``token_file``: (prometheus, alertmanager)."""
    alertmanager = start_alertmanager(
        Settings(
            alert_people_url=people_url,
            alert_retrain_url=f"{server.url}/alerts",
            alert_token_file=str(token_file),
        )
    )
    targets = {"watchkeeper-serving": server, "watchkeeper-monitor": monitor}
    if worker is not None:
        targets["watchkeeper-retrain"] = worker
    prometheus = start_prometheus(
        {job: process.url.removeprefix("http://") for job, process in targets.items()},
        alertmanager=alertmanager.url.removeprefix("http://"),
    )
    return prometheus, alertmanager
