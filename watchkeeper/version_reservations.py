"""Empty ``vN`` reservations left by registrations killed before publishing into them.

A registration reserves its version's number with ``mkdir vN``, then renames its private
directory (``versions/.version.<host>.<pid>.<id>/``, whose ``metadata.json`` names
``vN`` already) onto it (:meth:`~watchkeeper.registry.ModelRegistry._publish`). One
killed between the two leaves ``vN`` empty: never listed, but kept for ever, and its
number skipped. The next registration removes it when it is safe to, that is when no
writer can still publish into it:

1. the private directory naming it is a dead writer's (on this host its process is
   asked; on another, the directory is older than
   :data:`~watchkeeper.registry_writes.LEFTOVER_AGE`), and ``vN`` was made after that
   writer named it (its own reservation, not one it found taken and gave up); or
2. no private directory names it, and it is older than ``LEFTOVER_AGE``, on the
   volume's clock: an earlier Watchkeeper's reservation (still running during a rolling
   upgrade, it reserves ``vN`` and writes into it at once, naming no writer), or a
   writer's whose private directory is gone.

A ``vN`` that the private directory of a live writer names is never removed, however
old. The removal is an ``rmdir``, which fails on a directory that is no longer empty: a
version published onto it meanwhile stays.

A removed reservation's number is never given again: a registration whose rename failed
("cannot register v5: …") left it, and that reason names it in the failed run's record
and the command's output; a later model registered as v5 would be a second model of
that name in the audit trail. So before ``vN`` is removed, ``.retired.vN`` is made
beside it (a ``mkdir``, atomic), a mark that numbers count from
(:func:`highest_number`). Only the highest mark is needed, and none once a version is
published past it: the registration that removed a reservation removes the marks its
own version makes needless (:func:`drop_needless_marks`), so none is left but after a
registration that failed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from watchkeeper.registry_writes import LEFTOVER_AGE, abandoned, fsync_dir

VERSION_NAME = re.compile(r"v([0-9]{1,18})")
"""A version's directory name. ASCII digits only (``\\d`` takes any script's, and "v١"
would be another directory than "v1"), matched whole (``$`` lets "v1\\n" pass), and
short: a name the file system refuses as too long would be answered with its error,
which names the registry's path."""

RETIRED_PREFIX = ".retired."
"""The mark of a removed reservation's number (``.retired.v5``)."""

log = logging.getLogger(__name__)


def highest_number(entries: Iterable[Path]) -> int:
    """The highest version number ``entries`` (a versions directory's) give or have
    given: their ``vN``, published or reserved, and their marks of removed
    reservations; 0 for none."""
    return max((n for entry in entries if (n := _number(entry.name)) is not None), default=0)


def retired(versions: Path, version: str) -> bool:
    """Whether ``version``'s number was reserved and its empty reservation removed."""
    return (versions / f"{RETIRED_PREFIX}{version}").is_dir()


def _number(name: str) -> int | None:
    match = VERSION_NAME.fullmatch(name.removeprefix(RETIRED_PREFIX))
    return int(match.group(1)) if match else None


def _named(private: Path) -> tuple[str, int] | None:
    """The version a private directory's ``metadata.json`` names, and when it was
    written; ``None`` before it is written (or if it cannot be read)."""
    path = private / "metadata.json"
    try:
        written = path.stat().st_mtime_ns
        version = json.loads(path.read_bytes()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return (version, written) if isinstance(version, str) else None


def _empty(directory: Path) -> bool:
    try:
        return next(directory.iterdir(), None) is None
    except OSError:  # removed meanwhile, or not a directory
        return False


def discard_reservations(versions: Path, prefix: str, reference: Path) -> list[str]:
    """Remove the empty ``vN`` in ``versions`` that no writer can still publish into
    (see the module); ``prefix`` names the writers' private directories, ``reference``
    is one the caller just made there (its time is the volume's "now"). Call it before
    those of dead writers are discarded: they say whose a reservation was. Returns the
    names removed; never raises."""
    try:
        reference_ns = reference.stat().st_mtime_ns
        entries = list(versions.iterdir())
    except OSError as exc:
        log.warning("registry: cannot look for abandoned reservations in %s: %s", versions, exc)
        return []
    live: set[str] = set()
    dead: dict[str, int] = {}  # version: when the dead writer naming it named it
    for entry in entries:
        if not entry.name.startswith(prefix) or entry == reference:
            continue
        named = _named(entry)
        if named is None:
            continue
        version, written = named
        if abandoned(entry, prefix, reference_ns):
            dead[version] = min(written, dead.get(version, written))
        else:
            live.add(version)
    removed = []
    for entry in entries:
        if not VERSION_NAME.fullmatch(entry.name) or entry.name in live or not _empty(entry):
            continue
        try:
            made = entry.stat().st_mtime_ns
        except OSError:
            continue
        named_at = dead.get(entry.name)
        own = named_at is not None and made >= named_at
        if not own and reference_ns - made <= LEFTOVER_AGE.total_seconds() * 1e9:
            continue
        try:
            # its number marked first: no moment where the number could be taken again
            (versions / f"{RETIRED_PREFIX}{entry.name}").mkdir(exist_ok=True)
            fsync_dir(versions)
        except OSError as exc:  # kept, its number skipped, until it can be marked
            log.warning("registry: cannot mark %s retired: %s", entry, exc)
            continue
        try:
            os.rmdir(entry)
        except OSError:  # published into meanwhile (not empty), or removed by another
            continue
        removed.append(entry.name)
    if removed:
        drop_needless_marks(versions)
        fsync_dir(versions)
        log.warning(
            "registry: removed the empty reservation(s) %s in %s, left by registrations "
            "that died or failed before publishing into them (their numbers are not "
            "given again)",
            ", ".join(removed),
            versions,
        )
    return removed


def drop_needless_marks(versions: Path) -> None:
    """Remove the marks of removed reservations that a higher number, a version's or
    another mark's, makes needless. Safe with writers at work: a version is never
    removed, and a reservation only once its own mark is made, so the highest number
    stays given."""
    try:
        entries = list(versions.iterdir())
    except OSError:
        return
    highest = highest_number(entries)
    for entry in entries:
        if entry.name.startswith(RETIRED_PREFIX) and (_number(entry.name) or 0) < highest:
            try:
                entry.rmdir()
            except OSError:  # removed by another meanwhile: the same end
                continue
