"""One local run per data directory: a second is refused naming the first's pid, and
the lock goes with the run that held it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.platform.conftest import platform_env, run_platform_refused
from watchkeeper.local_run.run_lock import DataDirInUse, RunLock


def test_a_second_lock_on_one_data_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    held = RunLock.acquire(data_dir)
    try:
        with pytest.raises(DataDirInUse) as refused:
            RunLock.acquire(data_dir)
    finally:
        held.release()
    assert str(refused.value) == (
        f"{data_dir} (WATCHKEEPER_DATA_DIR) is in use by another `make run` "
        f"(pid {os.getpid()}): stop it first, or set WATCHKEEPER_DATA_DIR to another directory"
    )


def test_a_released_or_left_behind_lock_file_does_not_block(tmp_path: Path) -> None:
    RunLock.acquire(tmp_path).release()
    (tmp_path / "run.lock").write_text("999999\n")  # a run killed long ago
    again = RunLock.acquire(tmp_path)
    assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"
    again.release()


def test_a_second_run_whose_ports_the_first_holds_is_refused_for_the_data_dir(
    tmp_path: Path,
) -> None:
    """A second `make run` on one data directory (same settings, so the first holds its
    ports) said "port 8000 is already in use: ... set WATCHKEEPER_PORT to another port",
    advice that only led to the lock's refusal."""
    data_dir = tmp_path / "var"
    env = platform_env(data_dir)
    held = RunLock.acquire(data_dir)
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", int(env["WATCHKEEPER_PORT"])))
            server.listen()
            result = run_platform_refused(env)
    finally:
        held.release()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {data_dir} (WATCHKEEPER_DATA_DIR) is in use by another `make run` "
        f"(pid {os.getpid()}): stop it first, or set WATCHKEEPER_DATA_DIR to another directory"
    ], result.stderr
