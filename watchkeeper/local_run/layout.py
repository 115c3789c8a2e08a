"""Where each component of a local run listens and keeps its files, from the settings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from watchkeeper.listen_address import http_url, reachable
from watchkeeper.settings import ENV_PREFIX, Settings

# Addresses a process on this host can bind; a URL elsewhere is someone else's service.
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnusableSetting(ValueError):
    """A setting a local run cannot work with: printed as one line."""


def on_this_host(url: str) -> bool:
    """Whether ``url`` is a plain-HTTP server a process of this run can be: a local run
    starts only servers without TLS, and only on this host."""
    parsed = urlsplit(url)
    return parsed.scheme == "http" and (parsed.hostname or "") in _LOCAL_HOSTS


@dataclass(frozen=True)
class Listener:
    """A port one component binds, and the setting that chooses it."""

    component: str
    host: str
    port: int
    setting: str

    @property
    def url(self) -> str:
        return http_url(reachable(self.host), self.port)

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
    """None when Grafana is not installed or ``WATCHKEEPER_GRAFANA_URL`` is not on this
    host (then that Grafana is used as it is)."""

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


def _local_listener(component: str, url: str, setting: str) -> Listener | None:
    """The listener of a server this run starts at ``url``; None when ``url`` is not
    on this host."""
    if not on_this_host(url):
        return None
    parsed = urlsplit(url)
    return Listener(
        component,
        parsed.hostname or "127.0.0.1",
        parsed.port or _DEFAULT_PORTS[parsed.scheme],
        f"{ENV_PREFIX}{setting}",
    )


def layout(settings: Settings, repo: Path, grafana_installed: bool) -> Layout:
    """Raises :class:`UnusableSetting` for a setting the run cannot serve."""
    people_url = settings.alerting.people_url
    sink = _local_listener("notification sink", people_url, "ALERT_PEOPLE_URL")
    if sink is not None and ":" in sink.host:
        # notification_sink.py serves IPv4 only: Alertmanager would find nobody there.
        raise UnusableSetting(
            f"{sink.setting} {people_url}: the local notification sink listens on IPv4 only; "
            f"use 127.0.0.1 or localhost for its host"
        )
    grafana = None
    if grafana_installed:
        grafana = _local_listener("Grafana", settings.grafana.url, "GRAFANA_URL")
    people = urlsplit(people_url)
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
