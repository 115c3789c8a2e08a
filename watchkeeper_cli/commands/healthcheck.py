"""``watchkeeper healthcheck``: the image's HEALTHCHECK, for each component."""

from __future__ import annotations

import argparse
import sys
from typing import Literal, NamedTuple

from watchkeeper.listen_address import http_url, reachable
from watchkeeper.settings import (
    GROUPS,
    MonitorSettings,
    RetrainSettings,
    ServingSettings,
    Settings,
)
from watchkeeper_cli.help_text import choices_help
from watchkeeper_cli.option_types import positive_seconds
from watchkeeper_cli.parser import Commands


class HealthEndpoint(NamedTuple):
    """Where a component answers its health check: the settings group holding its host
    and port, and the path. Serving's readiness says a model is loaded, the background
    services' /healthz says their loop is not stuck."""

    group: Literal["serving", "monitor", "retrain"]
    path: str

    def listening(self, settings: Settings) -> ServingSettings | MonitorSettings | RetrainSettings:
        return {
            "serving": settings.serving,
            "monitor": settings.monitor,
            "retrain": settings.retrain,
        }[self.group]

    @property
    def port_variable(self) -> str:
        return str(GROUPS[self.group].model_fields["port"].validation_alias)


HEALTH_ENDPOINTS = {
    "serve": HealthEndpoint("serving", "/readyz"),
    "monitor": HealthEndpoint("monitor", "/healthz"),
    "worker": HealthEndpoint("retrain", "/healthz"),
}


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the component in this container answers healthy (the image's
    HEALTHCHECK, which has no curl to call)."""
    import urllib.error
    import urllib.request

    endpoint = HEALTH_ENDPOINTS[args.component]
    listening = endpoint.listening(settings)
    url = http_url(reachable(listening.host), listening.port) + endpoint.path
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    text = body.decode(errors="replace").strip()
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status} {text}", file=sys.stderr)
        return 1
    print(f"healthy: {url}: {text}")
    return 0


def register(commands: Commands) -> None:
    healthcheck = commands.add_parser(
        "healthcheck", help="exit 0 if the component running here is healthy (containers)"
    )
    healthcheck.add_argument(
        "component",
        nargs="?",
        choices=sorted(HEALTH_ENDPOINTS),
        default="serve",
        help=choices_help(
            {
                "monitor": "the monitor's /healthz (its loop is not stuck)",
                "serve": "the prediction server's /readyz (a model is loaded)",
                "worker": "the retraining worker's /healthz (its loop is not stuck)",
            },
        ),
    )
    healthcheck.add_argument(
        "--timeout", type=positive_seconds, default=3.0, help="seconds, above 0 and at most a day"
    )
    healthcheck.set_defaults(handler=_run)
