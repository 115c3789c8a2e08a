"""The servers under benchmark, started on 127.0.0.1 with 2 workers and
``OMP_NUM_THREADS=1``, and what the benchmark reads from them: the process trees
whose CPU is counted and, for Watchkeeper with the log on, the number of rows in
the log's ``requests`` table.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench.workloads import PREDICT_PATHS, ServerKind

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
WORKERS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _base_env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


class LogCounter:
    """Rows in the prediction log's ``requests`` table, read through its database.

    The benchmark waits on this count, not on any metric of the writer, so it holds
    whatever the writer's design. It counts the rows stored past a position (``seq``,
    indexed, only grows: a run's rows are the ones past the position before it), a
    range of the run's own rows: PostgreSQL's CPU is charged to the server, and a
    ``count(*)`` of the whole table, tens of thousands of rows by the last rounds,
    charged it several ms a poll that SQLite's (in this process) was not."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        self._connection: sa.Connection | None = None

    def _scalar(self, statement: str, **parameters: int) -> int:
        if self._connection is None:
            self._connection = self._engine.connect()
        return int(self._connection.execute(sa.text(statement), parameters).scalar())

    def position(self) -> int:
        """The last stored row's position; call it when nothing is in flight."""
        return self._scalar("SELECT coalesce(max(seq), 0) FROM requests")

    def count_since(self, position: int) -> int:
        """Rows stored past ``position``."""
        return self._scalar("SELECT count(*) FROM requests WHERE seq > :p", p=position)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._engine.dispose()


@dataclass
class Server:
    """A running server. ``extra_roots`` are process trees it depends on (PostgreSQL)."""

    name: str
    kind: ServerKind
    port: int
    process: subprocess.Popen[bytes]
    ready_path: str
    output: Path
    log: LogCounter | None = None
    extra_roots: list[int] = field(default_factory=list)

    @property
    def predict_path(self) -> str:
        return PREDICT_PATHS[self.kind]

    def roots(self) -> list[int]:
        return [self.process.pid, *self.extra_roots]

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", self.ready_path)
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        tail = self.output.read_text(errors="replace")[-2000:] if self.output.exists() else ""
        raise RuntimeError(f"{self.name} did not become ready:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.log is not None:
            self.log.close()


def _spawn(argv: list[str], env: dict[str, str], cwd: Path, output: Path) -> subprocess.Popen:
    with open(output, "wb") as out:
        # A session of its own: a hung server can be killed with everything it started.
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_watchkeeper(
    name: str,
    workdir: Path,
    registry: Path,
    *,
    log_enabled: bool,
    database_url: str = "",
    ood_in_response: bool = True,
    root: Path = ROOT,
    settings: Mapping[str, str] | None = None,
) -> Server:
    """Watchkeeper serving from the code in ``root`` (this checkout, or another tree of
    the repository to compare with); ``settings`` are more ``WATCHKEEPER_*`` variables."""
    data_dir = workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = (
        _base_env(root)
        | {
            "WATCHKEEPER_DATA_DIR": str(data_dir),
            "WATCHKEEPER_REGISTRY_PATH": str(registry),
            "WATCHKEEPER_HOST": "127.0.0.1",
            "WATCHKEEPER_PORT": str(port),
            "WATCHKEEPER_WORKERS": str(WORKERS),
            "WATCHKEEPER_LOG_ENABLED": "true" if log_enabled else "false",
            "WATCHKEEPER_OOD_IN_RESPONSE": "true" if ood_in_response else "false",
        }
        | dict(settings or {})
    )
    if database_url:
        env["WATCHKEEPER_DATABASE_URL"] = database_url
    process = _spawn(
        [sys.executable, "-m", "watchkeeper_cli", "serve"], env, root, workdir / f"{name}.out"
    )
    url = database_url or f"sqlite:///{data_dir / 'watchkeeper.db'}"
    return Server(
        name,
        ServerKind.WATCHKEEPER,
        port,
        process,
        "/readyz",
        workdir / f"{name}.out",
        log=LogCounter(url) if log_enabled else None,
    )


def start_bentoml(bin_dir: Path, workdir: Path, registry: Path) -> Server:
    port = free_port()
    env = _base_env() | {
        "WK_BENCH_REGISTRY": str(registry),
        "WK_BENCH_WORKERS": str(WORKERS),
        "BENTOML_HOME": str(workdir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    argv = [
        str(bin_dir / "bentoml"),
        "serve",
        "bentoml_service:WatchkeeperPeer",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    output = workdir / "bentoml.out"
    return Server(
        "bentoml", ServerKind.BENTOML, port, _spawn(argv, env, PEERS_DIR, output), "/readyz", output
    )


def start_mlserver(bin_dir: Path, workdir: Path, registry: Path) -> Server:
    port = free_port()
    config = workdir / "mlserver"
    model_dir = config / "watchkeeper"
    model_dir.mkdir(parents=True, exist_ok=True)
    (config / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": WORKERS,
                "debug": False,
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps({"name": "watchkeeper", "implementation": "mlserver_runtime.WatchkeeperRuntime"})
    )
    env = _base_env() | {"WK_BENCH_REGISTRY": str(registry)}
    env["PYTHONPATH"] = os.pathsep.join([str(PEERS_DIR), env["PYTHONPATH"]])
    output = workdir / "mlserver.out"
    process = _spawn([str(bin_dir / "mlserver"), "start", str(config)], env, config, output)
    return Server(
        "mlserver",
        ServerKind.MLSERVER,
        port,
        process,
        "/v2/models/watchkeeper/ready",
        output,
    )
