"""The registry's ``CURRENT`` pointer, moved only by compare-and-set.

``CURRENT`` holds the served version's name on its first line (all a reader reads) and,
on its second, the number of the move that wrote it::

    v7
    move 12 <writer>
    reaffirms 11

A writer moves it from the pointer it read (version and move) and only if no other move
came in between; one that finds ``CURRENT`` moved since does not move it, and is told
what it names. A job that paused after deciding to serve its candidate can therefore
never put it back over a newer promotion, nor a recovery over a rollback made a moment
before.

A move to the version ``CURRENT`` names already (a rollback to it: servers that refused
its files load them again once they are restored) writes ``CURRENT`` too, but changes
nothing served: its third line names the move it *reaffirms*
(:attr:`CurrentPointer.reaffirms`), so that a writer that decided on an earlier pointer
of that version may tell it from a real move and move on from it (a retraining job's
promotion). It names the *root* of the run of such moves: the real move that last put
the version in ``CURRENT``, carried forward by each reaffirm of a reaffirm, so that two
rollbacks to the version current already (or a rollback retried) hold back a writer no
more than one does. A version that came back after another was current (v1, v2, v1) is
a real move, the root of its own run: a writer that read the first v1 is refused.

How, with ``rename`` and ``mkdir`` only (atomic on a local file system and on an NFS or
CephFS server alike; no file lock, for the reasons the registry gives):

1. **Claim** a move number: the new ``CURRENT`` is written whole into a private
   directory, beside a ``claim`` file naming its writer, the version and the move it
   replaces (kept for ever: the installed moves, each naming the one before, are the
   history of what was served, :func:`named_since`), and the directory is renamed
   to ``moves/<n>/`` for the next free ``n``. Renaming onto an existing, non-empty
   directory fails (the ``claim`` file stays: renaming onto an empty one succeeds), so
   each number has one claimant; claims are never removed, so a claim's number is above
   every claim made before it.
2. **Fence** every claim between the pointer read and this one: its
   ``moves/<m>/CURRENT`` is deleted. A writer that claimed earlier and has not yet put
   its file in place never can (step 4 renames that file); claims below the pointer
   read were fenced by the move that wrote it.
3. **Check** that ``CURRENT`` still holds the pointer read; else unclaim and refuse.
4. **Install**: rename ``moves/<n>/CURRENT`` onto ``CURRENT`` (readers see the old file
   or the new one). A later writer fences this claim before its own check, so either
   this rename comes first (and its check sees it) or it fails (the file is gone): a
   writer paused anywhere between its check and its rename, for however long, cannot
   write over a move it did not see. A paused writer holds nobody back either: the next
   writer claims the next number and fences it. A writer fenced by one that has not
   moved ``CURRENT`` (not yet, or refused: it had read an older pointer) finds it still
   holding the pointer read, and tries again from step 1 rather than fail for nothing.

Why not the alternatives: a write of ``CURRENT`` after checking it (what the registry
did) lets a writer paused in between overwrite what came meanwhile; ``flock`` is not
shared between NFS clients on every mount, blocks everyone behind a paused holder and is
released by an NFS server under a holder cut off by a partition; ``link(2)`` is not on
every volume the registry runs on. The cost is one directory holding one small file
under ``moves/`` per move (promotions and rollbacks: a few a day at most), never reused.

A ``CURRENT`` written by hand (one line) or by an earlier Watchkeeper is read as move 0.
One that cannot be read as a pointer (not UTF-8 text, empty, a directory, far too long:
a failing disk or a slip of the hand) names no version: :func:`read_current` raises
:class:`UnreadableCurrent` saying what is wrong with it, and a writer may still move
``CURRENT`` from what it found (:attr:`UnreadableCurrent.found`), by the same
compare-and-set: a repair that another writer's repair or move came before is refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from watchkeeper.errors import RegistryError
from watchkeeper.registry_writes import (
    discard_leftovers,
    fsync_dir,
    private_name,
    write_file,
)

CURRENT_FILE = "CURRENT"
MOVES_DIR = "moves"
CLAIM_PREFIX = ".claim."
CLAIM_FILE = "claim"
UNREADABLE_PREFIX = f".{CURRENT_FILE}.unreadable."

# The new CURRENT is written through a temporary file named after the process, as every
# registry file is; the threads of one process take turns at it (not a file lock: it
# never spans processes, and it is held only while one small file is written).
_TEMPORARY_FILE = threading.Lock()

# Tries of a writer fenced each time by another that then did not move CURRENT either:
# writers moving from the same pointer at the same instant, each undoing the other's
# claim. One of them moves it at the first or second try; the rest are then refused.
_ATTEMPTS = 20

# A pointer is a version name and a line naming its move: tens of bytes. Anything this
# long is not one, and is not read whole.
MAX_CURRENT_BYTES = 4096


@dataclass(frozen=True)
class CurrentPointer:
    """What ``CURRENT`` names, and the move that wrote it: what a writer read, and
    expects to replace (:func:`move_current`)."""

    version: str | None
    """``None`` while no version is current."""
    move: int
    """0 for a ``CURRENT`` written by hand or by an earlier Watchkeeper, or none."""
    problem: str | None = None
    """Set when ``CURRENT`` is there but is no pointer (``version`` is then ``None``):
    what is wrong with it, naming the file."""
    found: str | None = field(default=None, repr=False)
    """With ``problem``: a digest of what was found, so that a writer moving from one
    unreadable ``CURRENT`` is refused if another replaced it meanwhile."""
    reaffirms: int | None = None
    """Set when the move that wrote it named the version already current: the real move
    that last put that version in ``CURRENT`` (the root of the run of moves that only
    wrote it again, see the module), which it changed nothing of."""

    @property
    def root(self) -> int:
        """The real move that put this pointer's version in ``CURRENT``: its own move,
        or the one it (and every move between) only reaffirmed."""
        return self.move if self.reaffirms is None else self.reaffirms

    def reaffirmed(self, earlier: CurrentPointer) -> bool:
        """Whether this pointer only wrote ``earlier``'s version again, by moves made
        from ``earlier`` or from one another since: nothing served changed between the
        two. Each move is a compare-and-set from the pointer before it, so a pointer
        whose root is ``earlier``'s root (or ``earlier`` itself) descends from it by
        such moves alone."""
        return (
            earlier.problem is None
            and self.reaffirms is not None
            and self.move != earlier.move  # itself: no move since (a writer's loop ends)
            and self.version == earlier.version
            and self.reaffirms == earlier.root
        )


class UnreadableCurrent(RegistryError):
    """``CURRENT`` is there but is no pointer: which version is current is unknown.
    ``found`` is what was read: the pointer a repair moves from."""

    def __init__(self, found: CurrentPointer) -> None:
        assert found.problem is not None
        super().__init__(found.problem)
        self.found = found


@dataclass(frozen=True)
class CurrentMove:
    """The result of :func:`move_current`."""

    moved: bool
    """Whether this writer moved ``CURRENT``; false when another moved it first."""
    now: CurrentPointer
    """What ``CURRENT`` names after the attempt: this writer's, or what refused it."""


def read_current(root: Path) -> CurrentPointer:
    """The pointer in ``root/CURRENT``; raises :class:`UnreadableCurrent` if it is there
    but is no pointer."""
    pointer = inspect_current(root)
    if pointer.problem is not None:
        raise UnreadableCurrent(pointer)
    return pointer


def inspect_current(root: Path) -> CurrentPointer:
    """The pointer in ``root/CURRENT``, or, if it is no pointer, one saying why
    (:attr:`CurrentPointer.problem`): what a writer compares with what it read."""
    path = root / CURRENT_FILE
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CURRENT_BYTES + 1)
    except FileNotFoundError:
        return CurrentPointer(None, 0)
    except OSError as exc:  # a directory, no permission, an I/O error
        # strerror, not str(exc): that ends in the absolute path, and answers go to clients
        return _unreadable(f"cannot be read ({exc.strerror or type(exc).__name__})", b"")
    if len(raw) > MAX_CURRENT_BYTES:
        return _unreadable(f"is longer than {MAX_CURRENT_BYTES} bytes: not a version name", raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _unreadable(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})", raw
        )
    lines = text.splitlines()
    version = lines[0].strip() if lines else ""
    if not version:
        return _unreadable("names no version (its first line is empty)", raw)
    fields = lines[1].split() if len(lines) > 1 else []
    move = int(fields[1]) if len(fields) > 1 and fields[0] == "move" and fields[1].isdigit() else 0
    then = lines[2].split() if len(lines) > 2 else []
    reaffirms = (
        int(then[1]) if len(then) == 2 and then[0] == "reaffirms" and then[1].isdigit() else None
    )
    return CurrentPointer(version, move, reaffirms=reaffirms)


def move_made_ns(root: Path, move: int) -> int | None:
    """When move ``move`` put its file in ``CURRENT``, on the registry volume's clock (ns);
    ``None`` when that cannot be told: move 0 (no claim: ``CURRENT`` written by hand or
    by an earlier Watchkeeper), or a claim gone or unreadable.

    It is the modification time of the claim's directory, ``moves/<n>/``: the claim file
    and the new ``CURRENT`` are written into it, and the install renames that file out of
    it, the last change to it ever (a fence of an installed claim finds no file to
    delete; claims are never removed). Meaningful for a move that was installed, as the
    one a pointer reaffirms was."""
    if move <= 0:
        return None
    try:
        return (root / MOVES_DIR / str(move)).stat().st_mtime_ns
    except OSError:
        return None


def _unreadable(problem: str, raw: bytes) -> CurrentPointer:
    return CurrentPointer(
        None,
        0,
        problem=f"the registry's {CURRENT_FILE} file {problem}",
        found=hashlib.sha256(raw).hexdigest(),
    )


def move_current(root: Path, version: str, *, expected: CurrentPointer) -> CurrentMove:
    """Point ``CURRENT`` at ``version`` if it still holds ``expected`` (the pointer the
    caller read and decided on), as one compare-and-set (see the module). Whether the
    version is registered is the caller's to check. ``expected`` may be an unreadable
    ``CURRENT`` (:attr:`UnreadableCurrent.found`): this repairs it, unless another
    writer replaced it first."""
    moves = root / MOVES_DIR
    moves.mkdir(parents=True, exist_ok=True)
    same = expected.problem is None and expected.version == version
    # the root carried forward: a reaffirm of a reaffirm names the move both reaffirm
    reaffirms = expected.root if same else None
    for _ in range(_ATTEMPTS):
        number = _claim(root, moves, version, reaffirms, expected.move)
        claimed = moves / str(number) / CURRENT_FILE
        for earlier in range(expected.move + 1, number):
            (moves / str(earlier) / CURRENT_FILE).unlink(missing_ok=True)
        found = inspect_current(root)
        if found != expected:
            claimed.unlink(missing_ok=True)
            return CurrentMove(False, found)
        before_install(root, number)
        aside = _set_aside_directory(root) if expected.problem is not None else None
        try:
            os.rename(claimed, root / CURRENT_FILE)
        except FileNotFoundError:
            if aside is not None:  # put back what was found: the fencer compares with it
                _rename_quietly(aside, root / CURRENT_FILE)
            # fenced by a later claim; or, over NFS, a retried rename of ours whose first
            # reply was lost: the move number in CURRENT says which
            found = inspect_current(root)
            if found.move == number:
                return CurrentMove(True, found)
            if found != expected:
                return CurrentMove(False, found)
            continue  # its fencer has not moved CURRENT: nothing came between, again
        fsync_dir(root)
        if aside is not None:
            with contextlib.suppress(OSError):  # kept, if not empty, for a person to look at
                aside.rmdir()
        return CurrentMove(True, CurrentPointer(version, number, reaffirms=reaffirms))
    return CurrentMove(False, inspect_current(root))


def _set_aside_directory(root: Path) -> Path | None:
    """A directory named ``CURRENT`` (no file can be renamed onto it) renamed to a
    private name, for a repair to install its file; ``None`` if ``CURRENT`` is none."""
    if not (root / CURRENT_FILE).is_dir():
        return None
    aside = root / private_name(UNREADABLE_PREFIX)
    return aside if _rename_quietly(root / CURRENT_FILE, aside) else None


def _rename_quietly(source: Path, target: Path) -> bool:
    try:
        os.rename(source, target)
    except OSError:
        return False
    return True


def before_install(root: Path, number: int) -> None:
    """Called between the check and the install of move ``number``: nothing here; the
    tests pause a writer at this point, the one where it used to overwrite others."""


def _claim(root: Path, moves: Path, version: str, reaffirms: int | None, after: int) -> int:
    """Claim the next free move number for a move to ``version`` from move ``after``;
    returns it."""
    staging = moves / private_name(CLAIM_PREFIX)
    staging.mkdir()
    try:
        number = _claim_with(root, moves, staging, version, reaffirms, after)
        # the private directory just written dates the others
        discard_leftovers(moves, CLAIM_PREFIX, reference=moves / str(number))
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed
    return number


def _claim_with(
    root: Path, moves: Path, staging: Path, version: str, reaffirms: int | None, after: int
) -> int:
    writer = staging.name.removeprefix(CLAIM_PREFIX)
    # A claim keeps this file for ever: a rename onto an *empty* directory succeeds, so a
    # claim whose CURRENT was moved out would otherwise be claimed again. Its next lines
    # are the move's version and the move it replaces, which never leave it
    # (:func:`named_since`).
    write_file(staging / CLAIM_FILE, f"{writer}\n{version}\nfrom {after}\n".encode())
    numbers = [int(entry.name) for entry in moves.iterdir() if entry.name.isdigit()]
    number = max(numbers, default=0) + 1
    while True:
        with _TEMPORARY_FILE:
            temporary = root / f".{CURRENT_FILE}.{os.getpid()}.tmp"
            then = "" if reaffirms is None else f"reaffirms {reaffirms}\n"
            write_file(temporary, f"{version}\nmove {number} {writer}\n{then}".encode())
            os.replace(temporary, staging / CURRENT_FILE)
        try:
            os.rename(staging, moves / str(number))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                number += 1  # claimed by another: numbers are contiguous, try the next
                continue
            if exc.errno == errno.ENOENT and _claimed_by(moves / str(number), writer):
                return number  # over NFS, a retried rename of ours
            raise RegistryError(f"cannot move CURRENT to {version!r}: {exc}") from exc
        fsync_dir(moves)
        return number


def _claimed_by(claim: Path, writer: str) -> bool:
    try:
        lines = (claim / CLAIM_FILE).read_text().splitlines()
    except OSError:
        return False
    return bool(lines) and lines[0].strip() == writer


@dataclass(frozen=True)
class _Claim:
    """What a claim file says of its move, when its writer recorded it."""

    version: str
    after: int
    """The move the claim's writer read and replaces: for an installed move, the one
    installed before it (each move is a compare-and-set from it)."""


def _read_claim(moves: Path, number: int) -> _Claim | None:
    """The version and the move before of claim ``number``; ``None`` for a claim gone,
    unreadable or written by a Watchkeeper that did not record them (its writer alone)."""
    try:
        lines = (moves / str(number) / CLAIM_FILE).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    fields = lines[2].split() if len(lines) > 2 else []
    if len(fields) != 2 or fields[0] != "from" or not fields[1].isdigit() or not lines[1]:
        return None
    return _Claim(lines[1].strip(), int(fields[1]))


def named_since(root: Path, version: str, since_ns: int) -> bool | None:
    """Whether ``CURRENT`` named ``version`` at any moment after ``since_ns`` (the
    registry volume's clock, as file times are): what the served history says, not what
    any writer meant to do. ``None`` when that cannot be told.

    The moves installed form a chain, each a compare-and-set from the one before it, and
    each claim records its version and the move it replaces: walked back from
    ``CURRENT``, the chain lists exactly what was served, newest first (a fenced or
    refused claim is in no chain), down to the first move installed before
    ``since_ns`` (:func:`move_made_ns`). It cannot be told past a move of an earlier
    Watchkeeper (its claim records its writer alone), a ``CURRENT`` written by hand
    (move 0) or one that is no pointer, or a repair of one (moved from move 0)."""
    moves = root / MOVES_DIR
    pointer = inspect_current(root)
    if pointer.problem is not None:
        return None
    if pointer.version == version:
        return True
    number = pointer.move
    while number > 0:
        made = move_made_ns(root, number)
        claim = _read_claim(moves, number)
        if made is None or claim is None or claim.after >= number:
            return None
        if claim.version == version:
            return True
        if made < since_ns:
            return False  # installed before: so was every move down the chain
        number = claim.after
    return None
