"""Durable spill files for log entries the database could not take.

Each process appends to its own open file, ``spill-<pid>-<id>.open``, with an
fsync per write. Before replaying, a process seals its open file (renames it to
``.jsonl``); any process may then claim a sealed file by renaming it to
``.replaying-<pid>`` — a rename succeeds for exactly one claimant. Files left open
or half-replayed by a process that died are claimed like sealed ones. Replayed
rows go through duplicate-ignoring inserts, so a replay cut short and repeated
stores each entry once.

The directory must be local to the host: process ids mean nothing across hosts.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from serving.log_entry import LogEntry

log = logging.getLogger(__name__)

_NAME = re.compile(r"^spill-(?P<pid>\d+)-(?P<id>[0-9a-f]+)\.(?P<state>open|jsonl|replaying-\d+)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SpillStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._handle: int | None = None
        self._path: Path | None = None

    def write(self, entries: list[LogEntry]) -> None:
        """Append ``entries`` and fsync before returning: once this returns, they
        survive a crash of this process."""
        data = b"".join(entry.to_json() + b"\n" for entry in entries)
        with self._lock:
            if self._handle is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._path = self.directory / f"spill-{os.getpid()}-{uuid.uuid4().hex}.open"
                self._handle = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(self._handle, view)
                view = view[written:]
            os.fsync(self._handle)

    def seal(self) -> None:
        """Close this process's open file so that it can be replayed."""
        with self._lock:
            if self._handle is None or self._path is None:
                return
            os.close(self._handle)
            self._path.rename(self._path.with_suffix(".jsonl"))
            self._handle, self._path = None, None

    def has_pending(self) -> bool:
        try:
            return any(_NAME.match(name) for name in os.listdir(self.directory))
        except FileNotFoundError:
            return False

    def claim(self) -> list[Path]:
        """Seal our own file, then take every file no live process is using."""
        self.seal()
        claimed = []
        me = os.getpid()
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        for name in names:
            match = _NAME.match(name)
            if not match:
                continue
            state, owner = match.group("state"), int(match.group("pid"))
            if state.startswith("replaying-"):
                owner = int(state.split("-", 1)[1])
            if state != "jsonl" and owner != me and _pid_alive(owner):
                continue  # another live process is writing or replaying it
            source = self.directory / name
            target = (
                self.directory / f"spill-{match.group('pid')}-{match.group('id')}.replaying-{me}"
            )
            try:
                source.rename(target)
            except FileNotFoundError:
                continue  # another process claimed it first
            claimed.append(target)
        return claimed

    def read(self, path: Path, chunk: int) -> Iterator[list[LogEntry]]:
        """Entries of a claimed file in chunks. A line that does not parse (a write
        cut short by a crash) is logged and skipped."""
        batch: list[LogEntry] = []
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    batch.append(LogEntry.from_json(line))
                except (ValueError, TypeError, KeyError):
                    log.error("skipping unreadable line %d of spill file %s", number, path)
                    continue
                if len(batch) >= chunk:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def release(self, path: Path) -> None:
        """Give back a claimed file that could not be replayed, for a later attempt."""
        path.rename(path.with_name(path.name.rsplit(".", 1)[0] + ".jsonl"))

    def dead_letter(self, entries: list[LogEntry]) -> Path:
        """Keep entries the database refused as invalid, for an operator to inspect;
        these files are never replayed automatically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"deadletter-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        with open(path, "wb") as fh:
            fh.write(b"".join(entry.to_json() + b"\n" for entry in entries))
            fh.flush()
            os.fsync(fh.fileno())
        return path

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)
