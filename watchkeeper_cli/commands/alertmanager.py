"""``watchkeeper alertmanager-config``: Alertmanager's configuration from the settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from watchkeeper.settings import Settings
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.alertmanager_config import render

    text = render(settings)
    if args.token_output:
        if settings.serving.admin_token is None:
            raise CommandFailed(
                "--token-output needs WATCHKEEPER_ADMIN_TOKEN to be set",
                "set it, or drop the option",
            )
        # Readable by others: Alertmanager runs as another user in its own container,
        # and the file lives on a volume only the two share.
        token = Path(args.token_output)
        token.write_text(settings.serving.admin_token.get_secret_value())
        token.chmod(0o644)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def register(commands: Commands) -> None:
    alertmanager = commands.add_parser(
        "alertmanager-config", help="write the Alertmanager configuration from the settings"
    )
    alertmanager.add_argument("--output", help="file to write (default: standard output)")
    alertmanager.add_argument(
        "--token-output",
        metavar="FILE",
        help="also write WATCHKEEPER_ADMIN_TOKEN here, for Alertmanager's bearer token "
        "(the path it reads is WATCHKEEPER_ALERT_TOKEN_FILE, as its container sees it)",
    )
    alertmanager.set_defaults(handler=_run)
