"""Dead-letter files: journal lines that cannot be stored even on their own.

A line lands here when the database refuses its rows as invalid, or when it cannot
be parsed or encoded at all. Lines are kept byte for byte as they were journaled,
each followed by ``\\n`` (a journal line never holds one; split on ``\\n`` only, not
on every line break): JSON, with ``\\u`` escapes for what UTF-8 cannot hold (a lone
surrogate, NUL) and a rejected body in the log's escaped form
(:mod:`serving.log_body`), or a damaged line's bytes as they were. So nothing a
client sent is lost; an operator inspects them and replays what can be fixed. They
are never replayed automatically. Files are private to the service user (0600), like
the journal.

Their bytes are bounded, all workers' files together (``max_bytes``,
``WATCHKEEPER_LOG_DEAD_LETTER_MAX_BYTES``): once the files take that much, no more are
written (:class:`DeadLettersFull`), and the writer keeps refused lines in its journal
and retries them, so that a database refusing every entry (a constraint a migration
added) fills the journal, whose bound refuses requests (503), rather than the disk.
The last file written may take the total past the bound by one chunk's lines.

Setting lines aside is idempotent across crashes. The writer sets a chunk's refused
lines aside before it checkpoints the chunk, so a process killed in between leaves a
journal whose replay refuses the same lines again. Each file is therefore named for
the journal and the span of it the chunk covered,
``deadletter-<journal id>-<segment>.<offset>-<segment>.<offset>.jsonl``, and appears
whole or not at all (written and synced under a temporary name, then renamed): a line
whose position lies in the span of an existing file of its journal was set aside (or
stored) by an earlier attempt, and is neither written nor counted again. Only the
process holding a journal's lock writes dead letters for it. The writer counts the
lines as soon as the file has its name, and only then syncs the directory: a kill
can fall only between the rename and the count (microseconds), where it would leave
them set aside once and uncounted rather than counted twice.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.journal import Position

_FILE = re.compile(
    r"^deadletter-(?P<id>j-\d+-[0-9a-f]+)-(?P<s>\d+)\.(?P<so>\d+)-(?P<e>\d+)\.(?P<eo>\d+)\.jsonl$"
)


@dataclass(frozen=True, slots=True)
class Span:
    """The part of a journal one chunk covered: from ``start`` to just before ``end``."""

    journal_id: str
    start: Position
    end: Position

    def holds(self, position: Position) -> bool:
        return self.start <= position < self.end

    @property
    def file_name(self) -> str:
        s, e = self.start, self.end
        return f"deadletter-{self.journal_id}-{s.segment}.{s.offset}-{e.segment}.{e.offset}.jsonl"


@dataclass(frozen=True, slots=True)
class SetAside:
    """What :meth:`DeadLetters.write` did: lines it wrote to ``path`` (None when every
    line had been set aside before), and lines an earlier attempt already had."""

    path: Path | None
    written: int
    already: int


class DeadLettersFull(OSError):
    """The dead-letter files take their whole room: the lines stay where they are."""


class DeadLetters:
    def __init__(self, directory: Path, *, max_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def write(self, span: Span, lines: Sequence[tuple[Position, bytes | memoryview]]) -> SetAside:
        """Keep ``lines`` (each with where it starts in the journal, all within
        ``span``) in a file for ``span``, except those an earlier attempt kept. The
        file is on disk (fsync'd) when this returns, its name once :meth:`sync` has
        returned: call it before checkpointing past the lines."""
        self.directory.mkdir(parents=True, exist_ok=True)
        earlier = self._spans(span.journal_id)
        new = [line for position, line in lines if not any(s.holds(position) for s in earlier)]
        if not new:
            return SetAside(None, 0, len(lines))
        if self.max_bytes is not None:
            used = self.used_bytes()
            if used >= self.max_bytes:
                raise DeadLettersFull(
                    f"dead-letter files take {used} bytes, at their limit of {self.max_bytes}"
                    " (WATCHKEEPER_LOG_DEAD_LETTER_MAX_BYTES): the refused entries wait in"
                    " the journal"
                )
        path = self.directory / span.file_name
        temporary = self.directory / f".{span.file_name}.{uuid.uuid4().hex}.tmp"
        self._remove_temporaries(span.journal_id)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                data = memoryview(b"".join(part for line in new for part in (line, b"\n")))
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            # Renamed when whole: the name never shows a partial file. A file of this
            # very span would have held every line (read above): the rename replaces none.
            os.rename(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)  # a full disk: the caller retries later
            raise
        return SetAside(path, len(new), len(lines) - len(new))

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("deadletter-*.jsonl"))

    def used_bytes(self) -> int:
        """Bytes of the dead-letter files in the directory, every journal's."""
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if _FILE.match(entry.name):
                        try:
                            total += entry.stat().st_size
                        except FileNotFoundError:  # removed by an operator meanwhile
                            continue
        except FileNotFoundError:
            return 0
        return total

    @staticmethod
    def read(path: Path) -> list[bytes]:
        """The lines of a dead-letter file, each as it was journaled."""
        return path.read_bytes().split(b"\n")[:-1]

    def _spans(self, journal_id: str) -> list[Span]:
        spans = []
        for name in os.listdir(self.directory):
            match = _FILE.match(name)
            if match and match.group("id") == journal_id:
                start = Position(int(match.group("s")), int(match.group("so")))
                spans.append(
                    Span(journal_id, start, Position(int(match.group("e")), int(match.group("eo"))))
                )
        return spans

    def _remove_temporaries(self, journal_id: str) -> None:
        """Temporary files of this journal left by a process killed while writing one
        (the caller holds the journal's lock: no one else is writing one)."""
        for path in self.directory.glob(f".deadletter-{journal_id}-*.tmp"):
            path.unlink(missing_ok=True)

    def sync(self) -> None:
        """Put the names of files written so far on disk: a power loss after the
        checkpoint moves past their lines must not lose them."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
