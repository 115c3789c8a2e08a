"""Numeric thread pools: every process sizes them from ``WATCHKEEPER_NUMERIC_THREADS``
(default one per process), whatever stray ``OMP_NUM_THREADS`` its environment holds;
the long-running ones say so on ``/healthz``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import assert_thread_pools
from tests.processes import Process, wait_for
from watchkeeper.threads import (
    SETTING_VARIABLE,
    THREAD_VARIABLES,
    limit_threads,
    thread_environment,
    thread_pools,
    threads_from_environment,
)
from watchkeeper_cli.main import main

# What a developer's shell or a base image may carry: the setting must win over it.
STRAY = {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}


@pytest.fixture
def restore_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the test process's own pools and variables back after a test changes them."""
    threads = threads_from_environment()  # before the test sets it (undone after this)
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    yield
    limit_threads(threads, environ={})


def test_the_setting_defaults_to_one_thread_per_process() -> None:
    assert threads_from_environment({}) == 1
    assert threads_from_environment({SETTING_VARIABLE: "4"}) == 4
    with pytest.raises(ValueError, match="at least 1"):
        threads_from_environment({SETTING_VARIABLE: "0"})
    assert thread_environment(2)["OMP_NUM_THREADS"] == "2"
    assert set(thread_environment(2)) == set(THREAD_VARIABLES)


def test_the_test_runner_and_what_it_starts_use_one_thread_per_pool() -> None:
    pools = thread_pools()

    assert pools.get("openmp") == 1 and pools.get("blas") == 1, pools
    for name in THREAD_VARIABLES:  # inherited by every subprocess a test starts
        assert os.environ[name] == "1", name


@pytest.mark.usefixtures("restore_pools")
def test_every_command_sizes_the_pools_from_the_setting_over_stray_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``main`` applies the setting before any command runs: to the variables (read by
    libraries loaded later, and by child processes) and to the pools already loaded."""
    for name, value in STRAY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(SETTING_VARIABLE, "2")

    assert main(["settings", "--markdown"]) == 0

    assert {os.environ[name] for name in THREAD_VARIABLES} == {"2"}
    assert set(thread_pools().values()) == {2}


def _wait_for_openmp(process: Process) -> None:
    """scikit-learn's OpenMP pool loads with the model (the monitor's: in its first cycle)."""

    def loaded() -> bool:
        return "openmp" in process.get("/healthz").json()["thread_pools"]

    assert wait_for(loaded, timeout=120, interval=0.5), process.log_path.read_text()[-3000:]


@pytest.mark.integration
@pytest.mark.parametrize("command", ["serve", "monitor", "retrain worker"])
def test_each_component_runs_one_thread_per_pool_despite_stray_variables(
    start_watchkeeper: Callable[..., Process], command: str
) -> None:
    if command != "serve":
        start_watchkeeper("serve")  # migrates the database the others need
    process = start_watchkeeper(command, WATCHKEEPER_MONITOR_INTERVAL="0.5", **STRAY)

    if command != "retrain worker":  # the worker loads OpenMP only for a job
        _wait_for_openmp(process)
    assert_thread_pools(process, 1)
    assert process.get("/healthz").json()["thread_pools"]["blas"] == 1


@pytest.mark.integration
def test_a_component_uses_the_number_of_threads_set(
    start_watchkeeper: Callable[..., Process],
) -> None:
    start_watchkeeper("serve")
    monitor = start_watchkeeper(
        "monitor", WATCHKEEPER_NUMERIC_THREADS="2", WATCHKEEPER_MONITOR_INTERVAL="0.5", **STRAY
    )

    _wait_for_openmp(monitor)
    assert_thread_pools(monitor, 2)
