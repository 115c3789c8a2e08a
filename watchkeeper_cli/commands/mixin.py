"""``watchkeeper mixin build``: rules, Alertmanager config and dashboards from the settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from watchkeeper.settings import Settings
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.mixin.files import write

    for path in write(Path(args.root), settings):
        print(f"wrote {path}")
    return 0


def register(commands: Commands) -> None:
    mixin = commands.add_parser(
        "mixin",
        help="write alert and recording rules, Alertmanager config and dashboards from the "
        "settings",
        epilog="Thresholds and durations come from the WATCHKEEPER_TRIGGER_*, "
        "WATCHKEEPER_DRIFT_P_VALUE and WATCHKEEPER_MONITOR_WINDOW_SECONDS settings the "
        "monitor also acts on; links from WATCHKEEPER_ALERT_RUNBOOK_URL and "
        "WATCHKEEPER_GRAFANA_URL (README: Alerts).",
    )
    mixin.set_defaults(handler=_run)
    mixin_commands = Commands(mixin, dest="mixin_command")
    mixin_build = mixin_commands.add_parser(
        "build",
        help="write prometheus/rules/*.yml, prometheus/alertmanager.yml and "
        "grafana/dashboards/*.json under a folder",
    )
    mixin_build.add_argument("--root", default=".", help="repository folder to write into")
