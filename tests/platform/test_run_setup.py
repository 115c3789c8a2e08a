"""`make run`'s set-up (the first training, the schema's migration) and its stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.orphan_guard import guard_process
from tests.platform.conftest import REPO, alive, descendants, platform_env
from tests.processes import wait_for


def _training(pid: int) -> bool:
    """Whether a descendant of ``pid`` runs ``watchkeeper train``."""
    for child in descendants(pid) - {pid}:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"watchkeeper_cli" in command and b"train" in command:
            return True
    return False


def test_a_sigterm_during_the_first_training_stops_it_and_registers_nothing(
    tmp_path: Path,
) -> None:
    """A SIGTERM to the run's process alone (a service manager's stop, `kill`) while it
    trained the first model was not passed on: the run waited for the whole training,
    registered v1, then exited without a word."""
    data_dir = tmp_path / "var"
    output = tmp_path / "run.log"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper.local_run", "--repo", str(REPO)],
            env=platform_env(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no terminal's Ctrl-C: the signal reaches it alone
        )
    guard_process(process.pid, group=True)
    assert wait_for(lambda: _training(process.pid), timeout=120, interval=0.05), output.read_text(
        errors="replace"
    )
    started = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    text = output.read_text(errors="replace")
    assert code == 130, text
    assert not alive(started), text  # the training stopped with the run
    assert "stopped before anything started" in text
    assert "registered v1" not in text
    registry = data_dir / "registry"
    versions = sorted(p.name for p in registry.iterdir()) if registry.exists() else []
    assert not [v for v in versions if v.startswith("v")], versions
