"""The registry's durable writes, and the private directories a killed writer leaves.

Every write of the registry that others may read is made whole under a private name and
then renamed into place (:func:`write_atomic`, and the directories of
:meth:`~watchkeeper.registry.ModelRegistry.settle_promotion` and
:mod:`watchkeeper.current_pointer`). A writer killed before its rename leaves its
private directory, which nothing reads: :func:`discard_leftovers` removes those whose
writer is dead, never one a live writer may still rename.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

LEFTOVER_AGE = timedelta(hours=1)
"""A private directory of a writer on another host (whose process cannot be asked
whether it is alive) is discarded once it is this much older than the directory of the
writer that finds it: the two times are the volume's, not two hosts' clocks. A writer
paused for longer (it would be a very long pause) then fails to rename it and says so;
it never renames a half-removed one into place (below)."""

DISCARDED_PREFIX = ".discarded."

log = logging.getLogger(__name__)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (for a rename to publish)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_file(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class Owner:
    """The writer a private directory's name records."""

    host: str
    pid: int


def private_name(prefix: str) -> str:
    """A name no other writer uses, recording this writer (``<prefix><host>.<pid>.<id>``)
    so that a writer on the same host can tell whether it is still alive."""
    return f"{prefix}{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}"


def owner(name: str, prefix: str) -> Owner | None:
    """Who wrote the private directory ``name``; ``None`` for a name without its host
    (written before names recorded it) or not of this form."""
    parts = name.removeprefix(prefix).rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return Owner(parts[0], int(parts[1]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def abandoned(entry: Path, prefix: str, reference_ns: int) -> bool:
    """Whether the writer of the private directory ``entry`` can no longer rename it.

    On this host its process is asked (a pid the kernel reused keeps the directory until
    that process ends: harmless); a process id means nothing on another host, where only
    the directory's age counts."""
    written_by = owner(entry.name, prefix)
    if written_by is not None and written_by.host == socket.gethostname():
        return written_by.pid != os.getpid() and not _alive(written_by.pid)
    try:
        age_ns = reference_ns - entry.stat().st_mtime_ns
    except OSError:  # renamed into place or discarded meanwhile: not a leftover
        return False
    return age_ns > LEFTOVER_AGE.total_seconds() * 1e9


def discard_leftovers(directory: Path, prefix: str, reference: Path) -> list[str]:
    """Remove the private directories named ``<prefix>…`` in ``directory`` whose writers
    died before renaming them (:func:`abandoned`); ``reference`` is a directory the
    caller just wrote on the same volume (its time is the volume's "now"). Returns the
    names removed.

    A leftover is first renamed to a ``.discarded.*`` name, atomically, and only then
    deleted: a writer that was only paused and renames its own at the same moment either
    wins (its rename publishes it whole, and this one finds it gone) or finds it gone
    and fails saying so; it can never publish a directory half deleted. ``.discarded.*``
    directories, which no writer renames, are deleted whatever their age (their remover
    died). Never raises: a leftover that cannot be removed now is left for the next."""
    removed: list[str] = []
    try:
        reference_ns = reference.stat().st_mtime_ns
        entries = list(directory.iterdir())
    except OSError as exc:
        log.warning("registry: cannot look for leftovers in %s: %s", directory, exc)
        return removed
    for entry in entries:
        name = entry.name
        if name.startswith(DISCARDED_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)
            continue
        if not name.startswith(prefix) or not abandoned(entry, prefix, reference_ns):
            continue
        discarded = directory / f"{DISCARDED_PREFIX}{uuid.uuid4().hex}"
        try:
            os.rename(entry, discarded)
        except FileNotFoundError:  # its writer renamed it, or another finder took it
            continue
        except OSError as exc:
            log.warning("registry: cannot discard %s: %s", entry, exc)
            continue
        shutil.rmtree(discarded, ignore_errors=True)
        removed.append(name)
    if removed:
        log.warning(
            "registry: removed %s in %s, left by writers that died before finishing",
            ", ".join(removed),
            directory,
        )
    return removed
