"""A killed test run leaves nothing running: what its tests started is stopped by the
guard they set (``tests/orphan_guard.py``). A run stopped by SIGKILL or a CI timeout
left daemonised PostgreSQL clusters (and Prometheus, gunicorn, Chromium) running for
hours on a shared machine."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.postgres import find_bindir
from tests.processes import wait_for

REPO = Path(__file__).resolve().parents[1]


def _test_run(code: str) -> tuple[subprocess.Popen[str], list[str]]:
    """A stand-in for a test run: ``code`` starts something, prints what to look for,
    then the run waits to be killed."""
    run = subprocess.Popen(
        [sys.executable, "-c", f"{code}\nimport time; time.sleep(600)"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    return run, run.stdout.readline().split()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill(run: subprocess.Popen[str]) -> None:
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.stdout is not None
    run.stdout.close()


def test_a_guarded_process_is_stopped_when_the_test_run_is_killed() -> None:
    run, (pid,) = _test_run(
        "import subprocess; from tests.orphan_guard import guard_process\n"
        "p = subprocess.Popen(['sleep', '600']); guard_process(p.pid); print(p.pid, flush=True)"
    )
    assert _running(int(pid))

    _kill(run)

    assert wait_for(lambda: not _running(int(pid)), timeout=30)


def test_a_released_guard_leaves_its_process_alone() -> None:
    run, (pid, guard) = _test_run(
        "import subprocess; from tests.orphan_guard import guard_process\n"
        "p = subprocess.Popen(['sleep', '600']); g = guard_process(p.pid)\n"
        "g.release(); print(p.pid, g._process.pid, flush=True)"
    )
    try:
        _kill(run)

        assert wait_for(lambda: not _running(int(guard)), timeout=30)
        assert _running(int(pid))
    finally:
        subprocess.run(["kill", "-KILL", pid], check=False)


@pytest.mark.postgres
def test_a_postgresql_cluster_is_stopped_and_removed_when_the_test_run_is_killed() -> None:
    """pg_ctl daemonises the cluster: nothing else would ever stop it."""
    if find_bindir() is None:
        require_service("PostgreSQL (Debian package postgresql)")
    run, (postmaster, root) = _test_run(
        "from tests.postgres import PostgresServer, find_bindir\n"
        "s = PostgresServer(find_bindir()).init(); s.start()\n"
        "pid = (s.datadir / 'postmaster.pid').read_text().split()[0]\n"
        "print(pid, s.root, flush=True)"
    )
    assert _running(int(postmaster))

    _kill(run)

    assert wait_for(lambda: not _running(int(postmaster)), timeout=60)
    assert wait_for(lambda: not Path(root).exists(), timeout=30)
