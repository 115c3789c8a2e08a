"""Where each component of a local run listens and keeps its files, from the settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from watchkeeper.settings import ENV_PREFIX, Settings

# Addresses a process on this host can bind; a URL elsewhere is someone else's service.
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


def reachable(host: str) -> str:
    """The address to call a server bound to ``host`` at (a wildcard is not one)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


@dataclass(frozen=True)
class Listener:
    """A port one component binds, and the setting that chooses it."""

    component: str
    host: str
    port: int
    setting: str

    @property
    def url(self) -> str:
        return f"http://{reachable(self.host)}:{self.port}"

    def in_use(self) -> bool:
        """Whether another process holds the port (checked as the servers bind it)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host or "0.0.0.0", self.port))
            except OSError:
                return True
        return False


@dataclass(frozen=True)
class Layout:
    repo: Path
    data_dir: Path
    serving: Listener
    monitor: Listener
    worker: Listener
    prometheus: Listener
    alertmanager: Listener
    sink: Listener | None
    """None when the people's webhook is not on this host: nothing to receive here."""
    sink_path: str
    grafana: Listener | None
    """None when Grafana is not installed."""

    @property
    def run_dir(self) -> Path:
        """Generated configuration files and the logs of the third-party servers."""
        return self.data_dir / "run"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "admin-token"

    @property
    def notifications_log(self) -> Path:
        return self.data_dir / "notifications.log"

    @property
    def sink_url(self) -> str | None:
        return None if self.sink is None else f"{self.sink.url}{self.sink_path}"

    @property
    def retrain_webhook_url(self) -> str:
        return f"{self.serving.url}/alerts"

    def listeners(self) -> list[Listener]:
        found = [self.serving, self.monitor, self.worker, self.prometheus, self.alertmanager]
        return found + [x for x in (self.sink, self.grafana) if x is not None]


def layout(settings: Settings, repo: Path, grafana_installed: bool) -> Layout:
    people = urlsplit(settings.alerting.people_url)
    sink = None
    if people.scheme == "http" and (people.hostname or "") in _LOCAL_HOSTS:
        sink = Listener(
            "notification sink",
            people.hostname or "127.0.0.1",
            people.port or 80,
            f"{ENV_PREFIX}ALERT_PEOPLE_URL",
        )
    grafana = None
    if grafana_installed:
        parsed = urlsplit(settings.grafana.url)
        grafana = Listener(
            "Grafana",
            parsed.hostname or "127.0.0.1",
            parsed.port or 3000,
            "WATCHKEEPER_GRAFANA_URL",
        )
    return Layout(
        repo=repo,
        data_dir=settings.storage.data_dir,
        serving=Listener(
            "prediction server", settings.serving.host, settings.serving.port, "WATCHKEEPER_PORT"
        ),
        monitor=Listener(
            "monitor", settings.monitor.host, settings.monitor.port, "WATCHKEEPER_MONITOR_PORT"
        ),
        worker=Listener(
            "retraining worker",
            settings.retrain.host,
            settings.retrain.port,
            "WATCHKEEPER_RETRAIN_PORT",
        ),
        prometheus=Listener(
            "Prometheus",
            "127.0.0.1",
            settings.run.prometheus_port,
            "WATCHKEEPER_RUN_PROMETHEUS_PORT",
        ),
        alertmanager=Listener(
            "Alertmanager",
            "127.0.0.1",
            settings.run.alertmanager_port,
            "WATCHKEEPER_RUN_ALERTMANAGER_PORT",
        ),
        sink=sink,
        sink_path=people.path or "/",
        grafana=grafana,
    )


def explicitly_set(name: str, environ: dict[str, str] | None = None) -> bool:
    """Whether the user set ``WATCHKEEPER_<NAME>``: such a setting wins over what a local
    run would choose."""
    return f"{ENV_PREFIX}{name.upper()}" in (os.environ if environ is None else environ)
