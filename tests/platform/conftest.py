"""Fixtures: the whole platform started as ``make run`` starts it, on free ports and in a
temporary data directory, with short intervals set through the settings."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.orphan_guard import guard_process
from tests.ports import free_port
from tests.processes import children, wait_for

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
READY_LINE = "Ctrl-C stops everything."
# Generous: the machine is shared and busy; starting takes ~15 s when it is quiet.
START_TIMEOUT = 280.0


@dataclass
class Platform:
    process: subprocess.Popen[bytes]
    output_path: Path
    data_dir: Path
    env: dict[str, str]
    started: set[int] = field(default_factory=set)
    """Every process of the run once it was up (make, the launcher, their children)."""

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def url(self, setting: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.env[setting]}{path}"

    @property
    def summary(self) -> str:
        text = self.output()
        start = text.index("Watchkeeper is up")
        return text[start : text.index(READY_LINE, start)]

    def summary_urls(self) -> dict[str, str]:
        """Label → URL of each summary line that gives one."""
        found = re.findall(r"^  (\S[\w ]*?)\s{2,}(http://\S+)", self.summary, re.MULTILINE)
        return dict(found)

    def interrupt(self, timeout: float = 120.0) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=timeout)


def descendants(pid: int) -> set[int]:
    found = {pid}
    pending = [pid]
    while pending:
        for child in children(pending.pop()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def platform_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The test's environment without the developer's settings, every port free."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        WATCHKEEPER_DATA_DIR=str(data_dir),
        WATCHKEEPER_PORT=str(free_port()),
        WATCHKEEPER_MONITOR_PORT=str(free_port()),
        WATCHKEEPER_RETRAIN_PORT=str(free_port()),
        WATCHKEEPER_RUN_PROMETHEUS_PORT=str(free_port()),
        WATCHKEEPER_RUN_ALERTMANAGER_PORT=str(free_port()),
        WATCHKEEPER_ALERT_PEOPLE_URL=f"http://127.0.0.1:{free_port()}/notify",
        WATCHKEEPER_GRAFANA_URL=f"http://127.0.0.1:{free_port()}",
    )
    env.update(overrides)
    return env


def run_platform_refused(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``make run``'s entry point, expected to refuse before it starts anything."""
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper.local_run", "--repo", str(REPO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_platform(env: dict[str, str], output_path: Path) -> subprocess.Popen[bytes]:
    """``make run`` as the README says, in its own session so that the test can send
    Ctrl-C to its process group as a terminal does. ``-o`` keeps make from reinstalling
    the virtualenv that this very test runs in."""
    with open(output_path, "wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", f"{VENV}/.installed", "run", f"VENV={VENV}"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # never released: it acts only if the test run dies while the platform's session runs
    guard_process(process.pid, group=True)
    return process


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be created in, even by root (as CI runs): immutable."""
    path = tmp_path / "unwritable"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot make a directory immutable here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def refused_start(env: dict[str, str], output_path: Path) -> tuple[int, str]:
    """``make run`` expected to refuse: its exit status and output. One that comes up
    instead is stopped with Ctrl-C as soon as it says so."""
    process = start_platform(env, output_path)

    def ended_or_up() -> bool:
        return process.poll() is not None or READY_LINE in output_path.read_text(errors="replace")

    wait_for(ended_or_up, timeout=START_TIMEOUT, interval=0.2)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=120), output_path.read_text(errors="replace")


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def require_services() -> None:
    for name in ("prometheus", "prometheus-alertmanager", "make"):
        if shutil.which(name) is None:
            require_service(f"{name} (`make test` installs it)")


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, registry_template: Path
) -> Iterator[Platform]:
    """The platform, up, with a registered model and intervals short enough for tests;
    nothing but the tests asks for a retrain (the monitor's own trigger is off)."""
    require_services()
    root = tmp_path_factory.mktemp("platform")
    data_dir = root / "var"
    registry = root / "registry"
    shutil.copytree(registry_template, registry)
    env = platform_env(
        data_dir,
        WATCHKEEPER_REGISTRY_PATH=str(registry),
        # 15 times production's pace: every `for:` and Alertmanager's group wait
        # last as many scrapes as with the default 15 s
        WATCHKEEPER_RUN_SCRAPE_INTERVAL="1",
        WATCHKEEPER_RUN_ALERT_SPEEDUP="15",
        WATCHKEEPER_MODEL_POLL_SECONDS="0.5",
        WATCHKEEPER_RETRAIN_POLL_SECONDS="0.5",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE="100",
        WATCHKEEPER_MONITOR_MIN_SAMPLES="50",
        WATCHKEEPER_DRIFT_MULTIVARIATE="false",
        WATCHKEEPER_TRIGGER_DRIFT_WINDOWS="1000",
        WATCHKEEPER_TRIGGER_OOD_FRACTION="1",
        WATCHKEEPER_TRIGGER_MAE_DEGRADATION="100",
    )
    output = root / "make-run.out"
    process = start_platform(env, output)
    running = Platform(process, output, data_dir, env)

    def up() -> bool:
        assert process.poll() is None, running.output()[-4000:]
        return READY_LINE in running.output()

    try:
        assert wait_for(up, timeout=START_TIMEOUT, interval=0.5), running.output()[-4000:]
        running.started = descendants(process.pid)
        yield running
    finally:
        if process.poll() is None:
            try:
                running.interrupt()
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                for pid in alive(descendants(process.pid)):
                    os.kill(pid, signal.SIGKILL)
