"""``watchkeeper monitor``: the monitor's loop, or one cycle of it."""

from __future__ import annotations

import argparse

from watchkeeper.settings import Settings
from watchkeeper_cli.help_text import settings_epilog
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.service import run

    return run(settings, once=args.once)


def register(commands: Commands) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="run the monitor (drift, OOD, accuracy)",
        epilog=settings_epilog("monitor", "monitor"),
    )
    monitor.add_argument("--once", action="store_true", help="one cycle, then exit (cron, tests)")
    monitor.set_defaults(handler=_run)
