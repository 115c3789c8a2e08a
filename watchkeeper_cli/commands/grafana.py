"""``watchkeeper grafana build|provision``: the dashboards' JSON, or a running Grafana."""

from __future__ import annotations

import argparse
from pathlib import Path

from watchkeeper.settings import Settings
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.help_text import settings_epilog
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.grafana_command == "build":
        from watchkeeper.grafana.dashboards import write
        from watchkeeper.mixin.config import MixinConfig

        for path in write(Path(args.output), MixinConfig.from_settings(settings)):
            print(f"wrote {path}")
        return 0
    from watchkeeper.grafana.provision import provision

    if settings.grafana.token is None:
        raise CommandFailed(
            "provisioning Grafana needs a token",
            "set WATCHKEEPER_GRAFANA_TOKEN to a Grafana service-account token",
        )
    report = provision(
        settings.grafana.url,
        settings.grafana.token.get_secret_value(),
        settings.grafana.prometheus_url,
    )
    print(
        f"Grafana {settings.grafana.url}: folder {report.folder}, data source "
        f"{report.datasource}, dashboards {', '.join(report.dashboards)}"
    )
    return 0


def register(commands: Commands) -> None:
    grafana = commands.add_parser("grafana", help="build dashboards, or provision a Grafana")
    grafana.set_defaults(handler=_run)
    grafana_commands = Commands(grafana, dest="grafana_command")
    build = grafana_commands.add_parser(
        "build", help="write the dashboards' JSON from their definitions in watchkeeper/grafana"
    )
    build.add_argument("--output", default="grafana/dashboards", help="folder to write to")
    grafana_commands.add_parser(
        "provision",
        help="create or update the folder, data source and dashboards in a running Grafana",
        epilog=settings_epilog("grafana", "grafana provision"),
    )
