"""``python -m watchkeeper.local_run``: what ``make run`` runs (through scripts/run-platform).

1. Refuse, in one line, a setting the run cannot start with: a port two components
   share or another process holds, an alert token file that does not hold the admin
   token, a data directory another run holds (each run locks its own).
2. Generate the admin token on first start (unless ``WATCHKEEPER_ADMIN_TOKEN`` is set)
   and the configuration files of the run.
3. Train and register the Ames model if none is current; bring the schema up to date.
4. Start the notification sink, Alertmanager, Prometheus, the prediction server, the
   monitor, the retraining worker and Grafana where installed; wait until each answers.
5. Print one summary, then run until Ctrl-C (or until a component stops), and stop
   every process it started.

Watchkeeper's own processes write to the terminal; Prometheus, Alertmanager and
Grafana write to ``<data_dir>/run/*.log``, shown when one fails to start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from pydantic import ValidationError

from watchkeeper.admin_token import AdminToken, ensure_admin_token, write_secret
from watchkeeper.local_run.configs import write_configs
from watchkeeper.local_run.layout import Layout, UnusableSetting, explicitly_set, layout
from watchkeeper.local_run.preflight import Refused, check_alert_token_file, check_ports
from watchkeeper.local_run.run_lock import DataDirInUse, RunLock
from watchkeeper.local_run.summary import grafana_note, render_summary, shown
from watchkeeper.local_run.supervisor import Supervisor
from watchkeeper.settings import Settings, config_problems
from watchkeeper.version_metadata import DataSource

# Generous: on two busy cores the first start (imports, detector fitting) can be slow.
READY_TIMEOUT = 300.0
STOP_TIMEOUT = 45.0


class StartFailed(Exception):
    """Why the platform could not start: printed as one line."""


def _say(message: str) -> None:
    print(message, flush=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "watchkeeper_cli", *args]


def _admin_token(settings: Settings, plan: Layout) -> tuple[AdminToken | None, Path]:
    """The generated token (None when one is configured) and the file Alertmanager
    reads the token from."""
    if settings.serving.admin_token is None:
        token = ensure_admin_token(plan.token_file)
        return token, token.path
    if explicitly_set("alert_token_file"):
        chosen = Path(settings.alerting.token_file)
        check_alert_token_file(chosen, settings.serving.admin_token.get_secret_value())
        return None, chosen
    # The configured token, in a file of this run only Alertmanager (and you) can read.
    copy = plan.run_dir / "alertmanager-token"
    write_secret(copy, settings.serving.admin_token.get_secret_value())
    return None, copy


def _prepare(plan: Layout, settings: Settings) -> tuple[AdminToken | None, dict[str, Path]]:
    """Write the run's token and configuration files (the data directory locked)."""
    token, token_file = _admin_token(settings, plan)
    return token, write_configs(plan, settings, token_file)


def _unwritable(plan: Layout, exc: OSError) -> str:
    where = exc.filename or plan.data_dir
    return (
        f"cannot write {where}: {exc.strerror or exc}; WATCHKEEPER_DATA_DIR "
        f"({plan.data_dir}) must be a directory this user can write"
    )


def _run_setup(env: dict[str, str], stop: threading.Event) -> bool:
    """Train if no model is current, migrate the schema; False if Ctrl-C or SIGTERM
    stopped it."""
    for args in (("train", "--if-missing"), ("db", "upgrade")):
        # in the terminal's process group: Ctrl-C stops it as well as us
        with subprocess.Popen(_cli(*args), env=env) as child:
            while child.poll() is None:
                if stop.wait(0.2):
                    try:
                        child.wait(timeout=2)  # Ctrl-C reached it too: it ends itself
                    except subprocess.TimeoutExpired:
                        # a SIGTERM sent to us alone (a service manager, `kill`) is
                        # passed on: the run waited for a whole training, registered
                        # its model, then exited
                        child.terminate()
                        child.wait()
        if stop.is_set():
            return False
        if child.returncode != 0:
            raise StartFailed(f"`watchkeeper {' '.join(args)}` failed (its error is above)")
    return True


def _start_all(
    supervisor: Supervisor,
    plan: Layout,
    settings: Settings,
    files: dict[str, Path],
    env: dict[str, str],
    token: AdminToken | None,
    grafana: str | None,
) -> None:
    logs = plan.run_dir
    if plan.sink is not None:
        supervisor.start(
            "notification sink",
            [
                sys.executable,
                "-m",
                "watchkeeper.notification_sink",
                f"--listen={plan.sink.host}:{plan.sink.port}",
                f"--path={plan.sink_path}",
                f"--log={plan.notifications_log}",
                f"--runbook-base={plan.repo.resolve()}",
            ],
            env,
            f"{plan.sink.url}/healthz",
        )
    supervisor.start(
        "Alertmanager",
        [
            "prometheus-alertmanager",
            f"--config.file={files['alertmanager']}",
            f"--storage.path={plan.data_dir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{plan.alertmanager.port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
        env,
        f"{plan.alertmanager.url}/-/ready",
        logs / "alertmanager.log",
    )
    supervisor.start(
        "Prometheus",
        [
            "prometheus",
            f"--config.file={files['prometheus']}",
            f"--storage.tsdb.path={plan.data_dir / 'prometheus'}",
            # off in Debian's build: a second Prometheus on this TSDB is refused
            "--storage.tsdb.use-lockfile",
            f"--web.listen-address=127.0.0.1:{plan.prometheus.port}",
        ],
        env,
        f"{plan.prometheus.url}/-/ready",
        logs / "prometheus.log",
    )
    serving_env = dict(env)
    if token is not None:
        serving_env["WATCHKEEPER_ADMIN_TOKEN"] = token.value
    supervisor.start("prediction server", _cli("serve"), serving_env, f"{plan.serving.url}/readyz")
    supervisor.start("monitor", _cli("monitor"), env, f"{plan.monitor.url}/healthz")
    supervisor.start(
        "retraining worker", _cli("retrain", "worker"), env, f"{plan.worker.url}/healthz"
    )
    if grafana is not None and plan.grafana is not None:
        supervisor.start(
            "Grafana",
            [grafana, f"--homepath={_grafana_home(grafana)}", f"--config={files['grafana']}"],
            env,
            f"{plan.grafana.url}/api/health",
            logs / "grafana.log",
        )


def _grafana_home(binary: str) -> Path:
    """Grafana's install directory (its ``conf/defaults.ini``): next to a tarball's
    ``bin/``, or where the Debian and RPM packages put it."""
    for candidate in (Path(binary).resolve().parent.parent, Path("/usr/share/grafana")):
        if (candidate / "conf" / "defaults.ini").exists():
            return candidate
    return Path("/usr/share/grafana")


def _served_model(plan: Layout) -> tuple[str, DataSource | None]:
    """The served version and its recorded training data, as ``/model`` shows them."""
    try:
        body = requests.get(f"{plan.serving.url}/model", timeout=5).json()
        version = str(body["version"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return "(unknown)", None
    try:
        source = DataSource.model_validate(body["metadata"]["data_source"])
    except (KeyError, TypeError, ValidationError):
        source = None
    return version, source


def run(repo: Path, bin_dir: str) -> int:
    started = time.monotonic()
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid configuration: {config_problems(exc)}", file=sys.stderr)
        return 2
    grafana = shutil.which("grafana-server")
    env = dict(os.environ)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    supervisor = Supervisor()
    lock: RunLock | None = None
    try:
        plan = layout(settings, repo, grafana_installed=grafana is not None)
        try:
            # before the ports: a second run on this data directory finds them taken by
            # the first, and "set WATCHKEEPER_PORT" would be the wrong advice
            lock = RunLock.acquire(plan.data_dir)
        except OSError as exc:
            raise StartFailed(_unwritable(plan, exc)) from exc
        check_ports(plan)
        try:
            token, files = _prepare(plan, settings)
        except OSError as exc:
            raise StartFailed(_unwritable(plan, exc)) from exc
        if not _run_setup(env, stop):
            _say("stopped before anything started")
            return 130
        _start_all(supervisor, plan, settings, files, env, token, grafana)
        failed = supervisor.wait_ready(READY_TIMEOUT, stop.is_set)
        if failed is not None:
            code = failed.exited()
            what = "did not get ready" if code is None else f"exited with status {code}"
            tail = failed.output_tail()
            where = f" (log {shown(failed.log_path)})" if failed.log_path else " (see above)"
            raise StartFailed(f"{failed.name} {what}{where}" + (f":\n{tail}" if tail else ""))
        if stop.is_set():
            return 130
        if token is not None and token.created:
            _say(f"admin token (generated once, kept in {shown(token.path)}): {token.value}")
        note = grafana_note(settings.grafana.url, installed=grafana is not None)
        if note is not None:
            _say(note)
        elapsed = time.monotonic() - started
        version, source = _served_model(plan)
        _say(render_summary(plan, bin_dir, token, version, elapsed, source))
        while not stop.wait(0.5):
            gone = supervisor.first_exited()
            if gone is not None:
                raise StartFailed(f"{gone.name} stopped (status {gone.exited()}); stopping all")
        return 0
    except (StartFailed, Refused, UnusableSetting, DataDirInUse) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if supervisor.children:
            _say("stopping Watchkeeper...")
            supervisor.stop(STOP_TIMEOUT)
            _say("stopped")
        if lock is not None:
            lock.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run-platform", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the checkout")
    parser.add_argument("--bin", default=".venv/bin", help="the virtualenv's bin, as printed")
    args = parser.parse_args(argv)
    return run(args.repo, args.bin)


if __name__ == "__main__":
    raise SystemExit(main())
