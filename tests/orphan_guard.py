"""Cleanup that survives a killed test run.

What a test starts can outlive the run when the run is killed (SIGKILL, a CI timeout, a
developer stopping it) before its fixtures' ``finally`` blocks run: a daemonised
PostgreSQL cluster, Prometheus, a gunicorn master, Chromium. On a shared machine they
then hold memory and ports for hours. A guard is a small shell in its own session (a
signal to the run's process group does not reach it) that reads a pipe only the test
process holds: released, it exits; at end of file, the test process having died without
releasing it, it runs its cleanup.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

# every guard not yet released: kept for the life of the run, so that none is collected
# (its pipe closed, the guard acting) while what it guards still runs
_UNRELEASED: set[OrphanGuard] = set()


class OrphanGuard:
    """Runs ``script`` (shell) if this process dies before :meth:`release`."""

    def __init__(self, script: str) -> None:
        # the pipe's write end is close-on-exec, so no child started later holds it open
        self._process = subprocess.Popen(
            ["sh", "-c", f'read -r line; [ "$line" = released ] && exit 0; {script}'],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _UNRELEASED.add(self)

    def release(self) -> None:
        """The test cleaned up itself: the guard exits without acting."""
        _UNRELEASED.discard(self)
        pipe = self._process.stdin
        if pipe is None or pipe.closed:
            return
        try:
            pipe.write(b"released\n")
            pipe.close()
        except BrokenPipeError:  # the guard is gone already
            pass
        self._process.wait(timeout=10)


def terminate(pid: int, *, group: bool = False) -> str:
    """Shell that sends SIGTERM to ``pid`` (its process group if ``group``), then SIGKILL
    10 s later if it still runs; nothing if ``pid`` is now another process (its start
    time, read now, tells)."""
    start = _start_time(pid)
    target = f"-{pid}" if group else str(pid)
    alive = f"[ \"$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -d' ' -f20)\" = {start} ]"
    return (
        f"if {alive}; then kill -TERM {target}; i=0; "
        f"while {alive} && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
        f"if {alive}; then kill -KILL {target}; fi; fi"
    )


def guard_process(pid: int, *, group: bool = False) -> OrphanGuard:
    return OrphanGuard(terminate(pid, group=group))


def remove(path: Path) -> str:
    return f"rm -rf -- {shlex.quote(str(path))}"


def _start_time(pid: int) -> str:
    """Field 22 of ``/proc/PID/stat``: the process's start time in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]
