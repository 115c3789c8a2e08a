"""The processes of a local run: started together, waited on until ready, stopped together.

Each child runs in a process group of its own, so that Ctrl-C reaches only the
supervisor, which then stops the children in order with SIGTERM (gunicorn drains its
prediction log on SIGTERM; on SIGINT it would not wait). Each child also asks the
kernel for SIGTERM should the supervisor die without cleaning up: no orphans either way.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child between fork and exec: SIGTERM when the supervisor ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    ready_url: str
    log_path: Path | None = None
    """Where its output goes; None means the terminal."""
    ready: bool = False

    def exited(self) -> int | None:
        return self.process.poll()

    def output_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        ready_url: str,
        log_path: Path | None = None,
    ) -> Child:
        output: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(output)
        process = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        child = Child(name, process, ready_url, log_path)
        self.children.append(child)
        return child

    def wait_ready(
        self, timeout: float, stop: Callable[[], bool] = lambda: False, interval: float = 0.25
    ) -> Child | None:
        """Wait until every child answers 200 on its readiness URL. Returns the first
        child that exited meanwhile (or is still not ready at the deadline), else None."""
        deadline = time.monotonic() + timeout
        while not stop():
            pending = [c for c in self.children if not c.ready]
            if not pending:
                return None
            for child in pending:
                if child.exited() is not None:
                    return child
                try:
                    child.ready = requests.get(child.ready_url, timeout=2).status_code == 200
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                return next(c for c in self.children if not c.ready)
            time.sleep(interval)
        return None

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.exited() is not None), None)

    def stop(self, timeout: float) -> None:
        """SIGTERM to every child still running, then SIGKILL to what is left after
        ``timeout`` seconds; returns when all have ended."""
        for child in self.children:
            if child.exited() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        for output in self._logs:
            output.close()
