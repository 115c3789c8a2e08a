"""Fixtures shared by every test layer: the Ames data, a trained model registered
once per session, isolated settings, and real services.

A service the tests need but cannot find is a skip on a developer's machine and a
failure in CI (``CI`` set), so CI can never go green without running them.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from watchkeeper.threads import limit_threads, thread_environment, threads_from_environment

# The test runner is a Watchkeeper process too: size its numeric thread pools from the
# setting before numpy and scikit-learn load below, so that the libraries read the
# variables, and the processes the tests start inherit them.
os.environ.update(thread_environment(threads_from_environment()))

import numpy as np
import pandas as pd
import pytest

from tests.ports import free_port
from tests.postgres import PostgresServer, find_bindir
from tests.processes import Process
from tests.thread_guard import outliving
from watchkeeper.dataset import Dataset, load_ames
from watchkeeper.listen_address import http_url, reachable
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel, train

pytest_plugins = ["pytester", "tests.observability", "tests.xdist_groups"]

# Libraries a plugin loaded before this file are sized at run time.
limit_threads(threads_from_environment())


def require_service(what: str) -> None:
    message = f"{what} is not available; `make test` installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they set, never the developer's shell."""
    for name in _shell_settings():
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_component_thread_outlives_its_test() -> Iterator[None]:
    """A test shuts down what it starts (``tests/thread_guard.py``: a leaked thread fails
    later tests); after the test's own fixtures, which are torn down first. A leaked
    thread runs on, so the long wait costs only a failing test: a probe asked to stop
    during a check of a slow database ends when the check does, later on a busy machine."""
    before = set(threading.enumerate())
    yield
    if left := outliving(before, timeout=30.0):
        pytest.fail(f"threads left running: {sorted(thread.name for thread in left)}")


def _shell_settings() -> list[str]:
    return [
        name
        for name in os.environ
        if name.startswith("WATCHKEEPER_") or name == "PROMETHEUS_MULTIPROC_DIR"
    ]


@pytest.fixture(scope="session")
def ames() -> Dataset:
    return load_ames()


@pytest.fixture(scope="session")
def trained(ames: Dataset) -> TrainedModel:
    """The default model: trained on 2006–2007, validated on 2008."""
    return train(ames.between(None, 200712), ames.between(200801, 200812))


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory, trained: TrainedModel) -> Path:
    root = tmp_path_factory.mktemp("registry-template")
    ModelRegistry(root).register(trained)
    return root


@pytest.fixture
def registry_dir(tmp_path: Path, registry_template: Path) -> Path:
    """A private copy of a registry holding the default model as current."""
    target = tmp_path / "registry"
    shutil.copytree(registry_template, target)
    return target


@pytest.fixture
def three_versions(registry_dir: Path, trained: TrainedModel) -> ModelRegistry:
    """v1 current; v2 and v3 registered beside it."""
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False)
    registry.register(trained, make_current=False)
    return registry


def json_record(row: pd.Series) -> dict[str, Any]:
    """A dataset row as a client would send it: NaN becomes null, NumPy scalars
    become plain numbers."""
    record = {}
    for name, value in row.items():
        if isinstance(value, float) and np.isnan(value):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        record[name] = value
    return record


@pytest.fixture(scope="session")
def replay_records(ames: Dataset, trained: TrainedModel) -> list[dict[str, Any]]:
    """Sales of 2009–2010 as request records."""
    names = list(trained.model.schema.names)
    frame = ames.between(200901, None).frame[names]
    return [json_record(row) for _, row in frame.iterrows()]


@pytest.fixture
def make_settings(tmp_path: Path, registry_dir: Path) -> Any:
    """Settings isolated in the test's temp dir; keyword arguments override fields."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "var", "registry_path": registry_dir}
        values.update(overrides)
        return Settings(**values)

    return factory


def running_postgres() -> Iterator[PostgresServer]:
    """A new PostgreSQL server for as long as the generator runs; resumed if a test
    froze it, then destroyed."""
    bindir = find_bindir()
    if bindir is None:
        require_service("PostgreSQL (Debian package postgresql)")
    server = PostgresServer(bindir).init()
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.destroy()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from running_postgres()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite log migrated once: each test's copy of the file costs a millisecond,
    migrating it 70 ms."""
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "log.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # checkpoints the WAL into the file: the file alone is the database
    return path


@pytest.fixture
def migrated_sqlite(sqlite_template: Path) -> Callable[[Path], str]:
    """``migrated(path)``: a migrated SQLite log at ``path``; returns its URL."""

    def migrated(path: Path) -> str:
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"

    return migrated


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of each supported kind."""
    if request.param == "sqlite":
        yield request.getfixturevalue("migrated_sqlite")(tmp_path / "log.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.migrated_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Any]:
    """An engine on the run's database (SQLite, and PostgreSQL under the postgres mark)."""
    from watchkeeper.db.engine import create_engine

    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_server: PostgresServer) -> Iterator[Any]:
    """An engine on a fresh, migrated database of the shared PostgreSQL server."""
    from watchkeeper.db.engine import create_engine

    url = postgres_server.migrated_database()
    engine = create_engine(url)
    yield engine
    engine.dispose()
    postgres_server.drop_database(url)


@contextmanager
def _watchkeeper_starter(directory: Path, registry: Path) -> Iterator[Callable[..., Process]]:
    """``start(command, **env)``: real processes sharing ``directory / "var"`` as their
    data directory and ``registry``; killed on exit if still running."""
    processes: list[Process] = []

    settings_of = {
        "serve": ("WATCHKEEPER_HOST", "WATCHKEEPER_PORT"),
        "monitor": ("WATCHKEEPER_MONITOR_HOST", "WATCHKEEPER_MONITOR_PORT"),
        "retrain worker": ("WATCHKEEPER_RETRAIN_HOST", "WATCHKEEPER_RETRAIN_PORT"),
    }

    def start(command: str, **env: str) -> Process:
        port = free_port()
        host_setting, port_setting = settings_of[command]
        environment = {
            "WATCHKEEPER_DATA_DIR": str(directory / "var"),
            "WATCHKEEPER_REGISTRY_PATH": str(registry),
            port_setting: str(port),
            **env,
        }
        log_path = directory / f"{command.replace(' ', '-')}-{len(processes)}.log"
        url = http_url(reachable(env.get(host_setting, "127.0.0.1")), port)
        process = Process(command.split(), environment, log_path, url)
        processes.append(process)
        process.wait_ready("/readyz" if command == "serve" else "/metrics")
        assert_thread_pools(process, int(env.get("WATCHKEEPER_NUMERIC_THREADS", "1")))
        return process

    try:
        yield start
    finally:
        for process in processes:
            process.kill()


@pytest.fixture
def start_watchkeeper(tmp_path: Path, registry_dir: Path) -> Iterator[Callable[..., Process]]:
    """``start("serve" | "monitor" | "retrain worker", **env)``: a real process sharing
    the test's data directory and registry; killed at teardown if still running."""
    with _watchkeeper_starter(tmp_path, registry_dir) as start:
        yield start


@pytest.fixture(scope="module")
def start_module_watchkeeper(
    tmp_path_factory: pytest.TempPathFactory, registry_template: Path
) -> Iterator[Callable[..., Process]]:
    """:func:`start_watchkeeper` for processes a module's tests share (a start costs
    seconds of CPU): for tests that leave nothing a later one could see, and assert
    nothing of what an earlier one may have left (the log, counters). Started with the
    environment the tests see: without the shell's Watchkeeper settings."""
    directory = tmp_path_factory.mktemp("module-watchkeeper")
    registry = directory / "registry"
    shutil.copytree(registry_template, registry)
    with pytest.MonkeyPatch.context() as patch:
        for name in _shell_settings():
            patch.delenv(name)
        with _watchkeeper_starter(directory, registry) as start:
            yield start


def assert_thread_pools(process: Process, threads: int) -> None:
    """Every numeric thread pool of a started process, as its health endpoint reports
    them, has the size of the setting (libraries not loaded yet are not listed)."""
    pools = process.get("/healthz").json()["thread_pools"]
    assert pools and set(pools.values()) == {threads}, (pools, process.log_path)
