"""The prediction log's journal: per-process append-only segment files on local disk.

A request thread appends its entry, one JSON line, to its process's current segment
with a plain ``write`` before the response is sent. No fsync per request: the page
cache outlives a killed process, so ``kill -9`` loses nothing; a sync thread
``fdatasync``s the segment once per flush interval when something was appended, so
a power loss can only lose what was appended in about the last interval. The writer
tails the segments into the database and records how far it got in a checkpoint
file; consumed segments are deleted.

Each journal holds an exclusive ``flock`` on its checkpoint file for the life of its
process. The kernel drops the lock when the process dies however it dies, so a
journal whose lock can be taken belongs to a dead process: any live process may
claim it and replay it past its checkpoint (inserts ignore rows already stored, so a
replay that overlaps the checkpoint stores nothing twice). Unlike process ids, locks
cannot be fooled by a new process that reuses a dead one's id. The directory must be
on a local filesystem of the host.

Disk bound: a journal counts the bytes of its segment files, consumed or not, against
its limit, and so does every process for journals of ended processes (their bytes
wait for a replay): ``workers`` journals of at most ``max_bytes`` each then never take
more than ``workers × max_bytes`` in all, however often workers are replaced
(:class:`DirectoryUsage`). A fully consumed segment is given back at once when the
room is needed or the disk is short.

Files: ``<id>.ckpt`` (checkpoint and lock) and ``<id>.<segment>.seg``, with
``id = j-<pid>-<random>``; ``<id>.ckpt.new`` while a journal is being created.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(?P<id>j-\d+-[0-9a-f]+)\.(?P<index>\d{8})\.seg$")
_CHECKPOINT = re.compile(r"^(?P<id>j-\d+-[0-9a-f]+)\.ckpt$")
_STAGING = re.compile(r"^(?P<id>j-\d+-[0-9a-f]+)\.ckpt\.new$")
# A creation a scan removes before it is locked is made again (Journal._create_checkpoint).
_CREATE_ATTEMPTS = 5
# Errors that say the disk has no room; the journal waits for room rather than failing.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
# Fixed width, so that an in-place rewrite never leaves a longer old value's tail.
_CHECKPOINT_FORMAT = "{:020d} {:020d}\n"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A point in a journal: a segment and a byte offset inside it (ordered as the
    journal is)."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Complete lines read from a journal, from ``start`` to just before ``end``."""

    lines: list[memoryview]  # valid as long as they are referenced
    start: Position
    end: Position
    size: int
    # (index of a line, where it starts) for the first line of each run of lines read
    # from one segment in one go: enough to place every line (:meth:`positions`)
    runs: tuple[tuple[int, Position], ...] = ()
    # The read stopped at its budget, not at the end of what was written: more lines
    # may follow (a chunk of long lines can be well short of the budget and still cut).
    cut: bool = False

    @property
    def moved(self) -> bool:
        return self.end != self.start

    def positions(self) -> list[Position]:
        """Where each line starts in its journal: a line's key, the same whichever
        process reads it (the writer asks only for lines it sets aside, so the reader
        records runs rather than a position per line)."""
        found: list[Position] = []
        stops = [first for first, _ in self.runs[1:]] + [len(self.lines)]
        for (first, start), stop in zip(self.runs, stops, strict=True):
            offset = start.offset
            for line in self.lines[first:stop]:
                found.append(Position(start.segment, offset))
                offset += len(line) + 1
        return found


class JournalUnavailable(Exception):
    """An entry cannot be journaled; the request must not be acknowledged."""


class JournalFull(JournalUnavailable):
    """The journal holds more uncommitted bytes than its limit allows."""


class _Files:
    """Checkpoint, lock and segment files of one journal, by id."""

    def __init__(self, directory: Path, journal_id: str) -> None:
        self.directory = directory
        self.id = journal_id
        self.checkpoint_path = directory / f"{journal_id}.ckpt"

    def segment_path(self, index: int) -> Path:
        return self.directory / f"{self.id}.{index:08d}.seg"

    def segments(self) -> list[int]:
        indexes = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:  # removed under us: nothing left to read or delete
            return []
        for name in names:
            match = _SEGMENT.match(name)
            if match and match.group("id") == self.id:
                indexes.append(int(match.group("index")))
        return sorted(indexes)

    def read_checkpoint(self, fd: int) -> Position:
        raw = os.pread(fd, 64, 0)
        try:
            segment, offset = (int(part) for part in raw.split())
        except ValueError:  # empty or torn: start from the first segment
            return Position(0, 0)
        return Position(segment, offset)

    def write_checkpoint(self, fd: int, position: Position) -> None:
        os.pwrite(fd, _CHECKPOINT_FORMAT.format(position.segment, position.offset).encode(), 0)


class _Reader:
    """Reads complete lines of one journal from its checkpoint on, and advances it.

    Lines are views into a buffer the reader reuses, not copies: a chunk is up to
    ``WATCHKEEPER_LOG_BATCH_BYTES`` (4 MB) and a 1,000-row request's line ~0.6-1 MB,
    and every fresh copy of that (the read, the split, the header split) cost the
    writer fresh pages: reading and parsing a 1,000-row line took 0.84 ms of CPU
    before, 0.35 ms this way (old and new alternated in one process). A buffer
    is reused only once no line read from it is referenced any more (a chunk kept
    past the next read keeps its own bytes)."""

    def __init__(self, files: _Files, lock_fd: int) -> None:
        self._files = files
        self._lock_fd = lock_fd
        self.position = files.read_checkpoint(lock_fd)
        self._buffer = bytearray()
        self._filled = 0  # bytes of the buffer taken by the chunk being read

    def read(self, max_bytes: int, last_segment: int | None = None) -> Chunk:
        """Up to about ``max_bytes`` of complete lines past the current position.

        ``last_segment`` is the segment still being appended to (``None`` for a
        journal nobody writes any more): only there may a line be incomplete."""
        position = self.position
        lines: list[memoryview] = []
        runs: list[tuple[int, Position]] = []
        size = 0
        cut = False
        self._claim(max_bytes)
        while size < max_bytes:
            budget = max_bytes - size
            start, n = self._read_at(position, budget)
            while not lines and n == budget and self._buffer.find(b"\n", start, start + n) < 0:
                budget *= 2  # one line longer than the budget: read it whole
                self._claim(budget)
                start, n = self._read_at(position, budget)
            end = self._buffer.rfind(b"\n", start, start + n) + 1
            if end:
                runs.append((len(lines), position))
                lines.extend(_lines(self._buffer, start, end))
                self._filled = end  # what follows (a partial line) may be overwritten
                size += end - start
                position = Position(position.segment, position.offset + end - start)
                if n == budget:
                    cut = True  # the budget cut the read: more may follow
                    break
                continue
            if n == budget:
                cut = True  # the next line is longer than what is left of the budget
                break
            # Nothing complete left in this segment: move on if a later one exists.
            if last_segment is not None and position.segment >= last_segment:
                break
            following = [i for i in self._files.segments() if i > position.segment]
            if not following:
                break
            position = Position(following[0], 0)
        return Chunk(lines, self.position, position, size, tuple(runs), cut or size >= max_bytes)

    def _claim(self, size: int) -> None:
        """Start a chunk in a buffer of at least ``size`` bytes that no earlier line
        still views (else in a new one: the old stays with its views)."""
        if len(self._buffer) < size or _viewed(self._buffer):
            self._buffer = bytearray(size)
        self._filled = 0

    def _read_at(self, position: Position, n: int) -> tuple[int, int]:
        """Read up to ``n`` bytes at ``position`` after the chunk's lines so far; returns
        where they start in the buffer and how many there are."""
        if len(self._buffer) - self._filled < n:
            # The chunk's lines so far keep the old buffer alive.
            self._buffer, self._filled = bytearray(max(n, len(self._buffer))), 0
        start = self._filled
        try:
            fd = os.open(self._files.segment_path(position.segment), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return start, 0
        try:
            count = 0
            with memoryview(self._buffer) as view:
                while count < n:
                    got = os.preadv(fd, [view[start + count : start + n]], position.offset + count)
                    if not got:
                        break  # the end of the segment
                    count += got
        finally:
            os.close(fd)
        return start, count

    def commit(self, position: Position) -> range:
        """Record that everything before ``position`` is in the database, and delete
        the segments wholly before it; returns their indexes."""
        self._files.write_checkpoint(self._lock_fd, position)
        previous, self.position = self.position, position
        deleted = range(previous.segment, position.segment)
        for index in deleted:
            self._files.segment_path(index).unlink(missing_ok=True)
        return deleted


def _lines(buffer: bytearray, start: int, end: int) -> list[memoryview]:
    """The lines of ``buffer[start:end]`` (which ends with a newline), without it."""
    lines = []
    with memoryview(buffer) as view:
        while start < end:
            stop = buffer.find(b"\n", start, end)
            lines.append(view[start:stop])
            start = stop + 1
    return lines


def _viewed(buffer: bytearray) -> bool:
    """Whether a view of ``buffer`` is alive (a bytearray cannot change size then)."""
    try:
        buffer.append(0)
    except BufferError:
        return True
    del buffer[-1]
    return False


class Journal:
    """This process's journal: appended by request threads, read by the writer.

    ``max_bytes`` bounds the bytes of its segment files on disk, less what
    :attr:`elsewhere` says other journals take out of its room."""

    def __init__(self, directory: Path, *, segment_bytes: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Consumed bytes of the oldest segment count against the limit until it is
        # deleted: smaller segments than the limit keep them a small part of it.
        self._segment_bytes = min(segment_bytes, max(max_bytes // 4, 1))
        self.max_bytes = max_bytes
        created = None
        for _ in range(_CREATE_ATTEMPTS):
            created = self._create_checkpoint()
            if created is not None:
                break
        if created is None:
            raise OSError(
                f"cannot create a journal in {self.directory}: its creation was removed"
                f" {_CREATE_ATTEMPTS} times before it was locked"
            )
        self._files, self._lock_fd = created
        try:
            self._fd = self._open_segment(0)
        except BaseException:
            self._files.checkpoint_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            raise
        self._reader = _Reader(self._files, self._lock_fd)
        self._append_lock = threading.Lock()
        self._segment = 0
        self._segment_size = 0
        self._sizes: dict[int, int] = {}  # bytes of each segment file not yet deleted
        self._retained = 0  # their sum: what this journal takes on disk
        self._appended = 0  # bytes appended by this process, all segments
        self._committed = 0  # bytes of those the writer has committed
        self.entries_appended = 0
        # Bytes other journals take out of this one's room (set by the owner's
        # periodic directory scan, read on every append without a lock). While ended
        # journals take part of the room the live ones share (``contested``), every
        # append runs the owner's scan (``measure``, which sets both) first: with the
        # periodic scan alone, once a second, two live journals each took the room the
        # other had taken since, and together passed the bound by a second of appends.
        self.elsewhere = 0
        self.contested = False
        self.measure: Callable[[], object] | None = None
        self._unwritable: OSError | None = None  # why the last append failed
        self._failed_bytes = 0  # the size of the entry that failed
        self._reclaim_error = ""
        self._closed = False

    def _create_checkpoint(self) -> tuple[_Files, int] | None:
        """A new journal's checkpoint, locked and named: its files and the lock's
        descriptor; ``None`` when a scan removed the creation first.

        The checkpoint is written under a staging name and locked, then renamed: its
        final name is never seen unlocked, or a scan could claim a live journal. The
        staging name is seen unlocked for an instant, between ``open`` and ``flock``,
        and a sibling's :func:`remove_abandoned` may take it for a creation that died
        there; the rename then finds nothing, and the caller starts again."""
        journal_id = f"j-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        files = _Files(self.directory, journal_id)
        staging = self.directory / f"{journal_id}.ckpt.new"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Written once here, so that later checkpoints rewrite bytes the file has:
            # on a full disk they still succeed.
            files.write_checkpoint(fd, Position(0, 0))
            staging.rename(files.checkpoint_path)
        except FileNotFoundError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            staging.unlink(missing_ok=True)
            raise
        return files, fd

    @property
    def id(self) -> str:
        return self._files.id

    def _measure_now(self) -> None:
        if self.measure is None:
            return
        try:
            self.measure()
        except OSError as exc:  # the owner's own scan goes on, and reports it
            log.debug("journal %s could not measure the directory: %s", self.id, exc)

    def _open_segment(self, index: int) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        return os.open(self._files.segment_path(index), flags, 0o600)

    # -- request threads -------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Append one entry (a line ending in ``\\n``). Returns once the kernel has it.

        Raises :class:`JournalFull` when the writer is too far behind, and
        :class:`JournalUnavailable` when the disk refuses the write: the caller must
        not acknowledge what it cannot log."""
        with self._append_lock:
            if self._closed:
                raise JournalUnavailable("the prediction log is shut down")
            if self.contested and self.measure is not None:
                self._measure_now()
            limit = self.max_bytes - self.elsewhere
            if self._retained >= limit and self._consumed():
                self._guarded(self._drop_consumed, line)
            if self._retained >= limit:
                raise JournalFull(
                    f"the journal takes {self._retained} bytes on disk and may take "
                    f"{max(limit, 0)} ({self.elsewhere} are taken by other journals)"
                )
            try:
                if self._segment_size >= self._segment_bytes:
                    self._rotate()
                self._write(line)
            except OSError as exc:
                if exc.errno not in _NO_ROOM or not self._consumed() or not self._retained:
                    self._fail(line, exc)
                # Room held by entries already in the database: give it back, retry.
                self._guarded(self._drop_consumed, line)
                self._guarded(lambda: self._write(line), line)
            self._segment_size += len(line)
            self._sizes[self._segment] = self._segment_size
            self._retained += len(line)
            self._appended += len(line)
            self.entries_appended += 1
            self._unwritable = None

    def _write(self, line: bytes) -> None:
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            # A half-written line would swallow the next entry: cut it off.
            os.ftruncate(self._fd, self._segment_size)
            raise

    def _guarded(self, action: Callable[[], None], line: bytes) -> None:
        try:
            action()
        except OSError as exc:
            self._fail(line, exc)

    def _fail(self, line: bytes, exc: OSError) -> NoReturn:
        self._unwritable, self._failed_bytes = exc, len(line)
        raise JournalUnavailable(f"cannot write the journal: {exc}") from exc

    def _consumed(self) -> bool:
        return self._committed == self._appended

    def _rotate(self, *, sync: bool = True) -> None:
        # Open the next segment before closing this one: if the open fails, appends
        # go on into the current segment rather than into a closed descriptor.
        fd = self._open_segment(self._segment + 1)
        if sync:  # the sync thread only syncs the segment being appended to
            os.fdatasync(self._fd)
        os.close(self._fd)
        self._fd, self._segment, self._segment_size = fd, self._segment + 1, 0

    def _drop_consumed(self) -> None:
        """Delete every segment file; all their entries are in the database (the
        reader moves past missing segments, also in a replay after a crash)."""
        # The older segments first: a disk too full to create a file may take the
        # next segment once they are gone.
        self._unlink_before(self._segment)
        if self._segment_size:
            self._rotate(sync=False)  # nothing in it needs the disk any more
            self._unlink_before(self._segment)

    def _unlink_before(self, segment: int) -> None:
        for index in list(self._sizes):
            if index < segment:
                self._files.segment_path(index).unlink(missing_ok=True)
                self._retained -= self._sizes.pop(index)

    def reclaim(self, free_bytes: Callable[[Path], int]) -> None:
        """Writer thread: give the disk back the segments whose entries are all in the
        database when the disk is short of room or an append failed, and find out
        whether an append that failed for want of room would now fit."""
        with self._append_lock:
            if self._closed or (not self._retained and self._unwritable is None):
                return
            try:
                if self._consumed() and self._retained:
                    short = self._unwritable is not None
                    if short or free_bytes(self.directory) < self.max_bytes:
                        self._drop_consumed()
                failed = self._unwritable
                if failed is not None and failed.errno not in _NO_ROOM:
                    # An I/O error may pass (a network volume's hiccup); no request
                    # reaches an unready worker to find out: let the next append try.
                    self._unwritable = None
                elif failed is not None and free_bytes(self.directory) >= self._failed_bytes:
                    self._unwritable = None
            except OSError as exc:
                if str(exc) != self._reclaim_error:  # once, not every writer cycle
                    log.warning("prediction log cannot give back journal space: %s", exc)
                self._reclaim_error = str(exc)
            else:
                self._reclaim_error = ""

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writable(self) -> bool:
        """False since an append failed on the disk (no room, an I/O error), until an
        append succeeds or the writer finds room for the failed entry."""
        return self._unwritable is None

    @property
    def full(self) -> bool:
        # consumed bytes are given back (:meth:`_consumed`, inline: every logged request
        # reads this before its view runs)
        used = 0 if self._committed == self._appended else self._retained
        return used >= self.max_bytes - self.elsewhere

    @property
    def backlog_bytes(self) -> int:
        return self._appended - self._committed

    # -- writer thread ---------------------------------------------------------

    def read(self, max_bytes: int) -> Chunk:
        return self._reader.read(max_bytes, last_segment=self._segment)

    def commit(self, chunk: Chunk) -> bool:
        """Checkpoint ``chunk``; False once the journal is closed (nothing recorded)."""
        with self._append_lock:
            if self._closed:
                return False  # the lock file is closed: its descriptor may be reused
            end = chunk.end
            if end.segment < self._segment and end.offset == self._sizes.get(end.segment):
                end = Position(end.segment + 1, 0)  # a finished segment: delete it now
            for index in self._reader.commit(end):
                self._retained -= self._sizes.pop(index, 0)
            self._committed += chunk.size
            return True

    def sync(self) -> None:
        """Flush appended lines to the disk (bounds what a power loss can take)."""
        with self._append_lock:
            if self._closed:
                return
            fd = os.dup(self._fd)  # sync outside the lock: appends must not wait on it
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def close(self, *, may_remove: bool) -> bool:
        """Release the journal; no append succeeds afterwards. Its files are deleted
        when ``may_remove`` and every entry is committed, otherwise they stay for
        another process to replay. Returns whether they were deleted."""
        with self._append_lock:
            if self._closed:
                return False
            self._closed = True
            try:
                os.fsync(self._fd)
            except OSError as exc:  # a failing disk: what the page cache has stays
                log.error("prediction log cannot flush journal %s: %s", self.id, exc)
            os.close(self._fd)
            drained = self._appended == self._committed
        removed = may_remove and drained
        if removed:
            for index in self._files.segments():
                self._files.segment_path(index).unlink(missing_ok=True)
            self._files.checkpoint_path.unlink(missing_ok=True)
        os.close(self._lock_fd)  # releases the lock
        return removed


class OrphanJournal:
    """A journal left by a dead process, claimed (locked) by this one for replay."""

    def __init__(self, files: _Files, lock_fd: int) -> None:
        self._files = files
        self._lock_fd = lock_fd
        self._reader = _Reader(files, lock_fd)

    @property
    def id(self) -> str:
        return self._files.id

    def read(self, max_bytes: int) -> Chunk:
        return self._reader.read(max_bytes)

    def commit(self, chunk: Chunk) -> bool:
        self._reader.commit(chunk.end)
        return True

    def finish(self) -> None:
        """Everything is replayed: delete the journal's files and drop the lock."""
        for index in self._files.segments():
            self._files.segment_path(index).unlink(missing_ok=True)
        self._files.checkpoint_path.unlink(missing_ok=True)
        os.close(self._lock_fd)

    def release(self) -> None:
        """Give the journal back unfinished (the database went away)."""
        os.close(self._lock_fd)


def claim_orphans(directory: Path, *, exclude: str | None = None) -> Iterator[OrphanJournal]:
    """Journals in ``directory`` whose owner is dead, each locked for the caller."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        match = _CHECKPOINT.match(name)
        if not match or match.group("id") == exclude:
            continue
        try:
            fd = os.open(Path(directory) / name, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # replayed and removed by another process meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its owner is alive, or another process is replaying it
        if not (Path(directory) / name).exists():
            os.close(fd)  # finished by another process between listdir and lock
            continue
        yield OrphanJournal(_Files(Path(directory), match.group("id")), fd)


def remove_abandoned(directory: Path) -> None:
    """Delete checkpoints of journals whose creation never finished (a process that
    failed or died while creating its journal): no segment was ever written to them."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if not _STAGING.match(name):
            continue
        path = Path(directory) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # being created right now
        else:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class DirectoryUsage:
    """Bytes of segment files in a journal directory, by whose journal they are."""

    own: int  # the scanning process's own journal
    ended: int  # journals of ended processes, replayed by this process or by nobody yet
    live: int  # journals locked by other processes: theirs, or replayed by them

    @property
    def total(self) -> int:
        return self.own + self.ended + self.live

    def elsewhere(self, workers: int, max_bytes: int) -> int:
        """What other journals take out of the room of one of ``workers`` journals of
        ``max_bytes`` each, so that all of them never take more than
        ``workers × max_bytes``: what the ended journals (no live journal's limit
        counts them, and nothing appends to them any more) and the other live ones
        hold beyond the other workers' share. Not every ended byte: a pod whose one
        replaced worker left a full journal would refuse every request while the disk
        had room; nor a share of them: a worker that filled its room before the other
        one was replaced would then take the bound past ``workers × max_bytes``."""
        return max(0, self.ended + self.live - (workers - 1) * max_bytes)

    def contested(self, workers: int, max_bytes: int) -> bool:
        """Whether this journal's room may shrink between two periodic scans by more
        than an entry: ended journals take part of the room the live ones share, or
        the other live journals hold half of their share or more (their growth then
        comes out of this one's room, by :meth:`elsewhere`)."""
        if self.ended:
            return True
        return bool(self.live) and 2 * self.live >= (workers - 1) * max_bytes


def directory_usage(
    directory: Path, *, own: str | None, replaying: Collection[str] = ()
) -> DirectoryUsage:
    """Scan ``directory``: a directory listing, a ``stat`` per segment and a lock probe
    per other journal (a shared lock, dropped at once: it delays no owner)."""
    sizes: dict[str, int] = {}
    locked: set[str] = set()
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if match := _SEGMENT.match(entry.name):
                    try:
                        size = entry.stat().st_size
                    except FileNotFoundError:
                        continue
                    journal_id = match.group("id")
                    sizes[journal_id] = sizes.get(journal_id, 0) + size
                elif (match := _CHECKPOINT.match(entry.name)) and _locked(Path(entry.path)):
                    locked.add(match.group("id"))
    except FileNotFoundError:
        return DirectoryUsage(0, 0, 0)
    own_bytes = sizes.pop(own, 0) if own is not None else 0
    live = sum(size for key, size in sizes.items() if key in locked and key not in replaying)
    return DirectoryUsage(own_bytes, sum(sizes.values()) - live, live)


def _locked(checkpoint: Path) -> bool:
    """Whether another open file holds ``checkpoint``'s lock (a live journal, or one
    being replayed)."""
    try:
        fd = os.open(checkpoint, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # replayed and removed meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged process may still write on ``directory``'s filesystem."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def pending_bytes(directory: Path) -> int:
    """Bytes of every segment file in ``directory`` (for the disk-usage metric)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(".seg"):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:
                        continue
    except FileNotFoundError:
        return 0
    return total
