"""Watchkeeper processes started by tests: real ``watchkeeper serve`` (gunicorn) and
``watchkeeper monitor`` on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from tests.orphan_guard import guard_process


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a gunicorn master's workers, a postmaster's
    backends)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def query(url: str, sql: str) -> list[Any]:
    """The rows of ``sql`` on the database at ``url``: what a server process logged."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def sqlite_url(data_dir: Path) -> str:
    """The embedded log database of a process started with ``data_dir``."""
    return f"sqlite:///{data_dir / 'watchkeeper.db'}"


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class Process:
    """A ``watchkeeper`` subcommand with its own environment and log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, url: str) -> None:
        self.url = url
        self.log_path = log_path
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper_cli", *args],
                env={**os.environ, **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._guard = guard_process(self.process.pid)

    def wait_ready(self, path: str, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                return requests.get(f"{self.url}{path}", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_for(ready, timeout=timeout, interval=0.2), self.log_path.read_text()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}{path}", timeout=30, **kwargs)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._guard.release()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._guard.release()


def metric(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from a text exposition (labels in any order), or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None
