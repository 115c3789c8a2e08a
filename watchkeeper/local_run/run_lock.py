"""One local run per data directory: an exclusive lock, held as long as the run lives.

A second run on the same data directory would rewrite the first one's generated configs,
and start a second Prometheus on its TSDB and a second Alertmanager on its storage
(Debian's Prometheus takes no lock of its own unless told to). The lock is an ``flock``
on ``<data_dir>/run.lock``: the kernel drops it when its holder ends, however it ends, so
a killed run leaves no stale lock behind. The file holds the holder's pid, for the
refusal to name it.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "run.lock"


class DataDirInUse(Exception):
    """Another local run holds the data directory."""

    def __init__(self, data_dir: Path, pid: str) -> None:
        super().__init__(
            f"{data_dir} (WATCHKEEPER_DATA_DIR) is in use by another `make run` "
            f"(pid {pid or 'unknown'}): stop it first, or set WATCHKEEPER_DATA_DIR "
            "to another directory"
        )


@dataclass
class RunLock:
    path: Path
    descriptor: int

    @classmethod
    def acquire(cls, data_dir: Path) -> RunLock:
        """Take the lock, creating the data directory if needed. Raises
        :class:`DataDirInUse` when another run holds it, ``OSError`` when the directory
        cannot be written."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip()
            os.close(descriptor)
            raise DataDirInUse(data_dir.resolve(), holder) from None
        except OSError:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        return cls(path, descriptor)

    def release(self) -> None:
        os.close(self.descriptor)  # closing drops the flock
