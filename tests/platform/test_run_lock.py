"""One local run per data directory: a second is refused naming the first's pid, and
the lock goes with the run that held it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
