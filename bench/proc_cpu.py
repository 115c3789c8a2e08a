"""CPU time of whole process trees, read from ``/proc``.

A server's cost is every process it runs: the gunicorn master and its workers, a
peer's supervisor and workers, PostgreSQL's postmaster and backends. Each live
process counts ``utime + stime`` plus ``cutime + cstime``: the latter hold the CPU
of children it has already reaped, so a backend or helper that exits during a run
is still counted (once: a reaped child is no longer in the tree).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    return parents


def tree(roots: Iterable[int]) -> set[int]:
    """``roots`` and all their live descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    pending = [pid for pid in roots if Path(f"/proc/{pid}").exists()]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU seconds of the trees under ``roots``, reaped children included."""
    total = 0
    for pid in tree(roots):
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15).
            total += sum(int(value) for value in fields[11:15])
    return total / _TICKS
