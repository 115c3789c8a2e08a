"""Dead-letter files: journal lines that cannot be stored even on their own.

A line lands here when the database refuses its rows as invalid, or when it cannot
be parsed or encoded at all. Lines are kept byte for byte as they were journaled
(JSON, with ``\\u`` escapes for what UTF-8 cannot hold), so nothing a client sent is
lost; an operator inspects them and replays what can be fixed. They are never
replayed automatically. Files are private to the service user (0600), like the
journal.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def write(self, lines: Sequence[bytes | memoryview]) -> Path:
        """Keep ``lines`` durably (fsync'd) in a new file and return its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"deadletter-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            data = memoryview(b"".join(part for line in lines for part in (line, b"\n")))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("deadletter-*.jsonl"))
