"""``watchkeeper settings``: the effective settings, the README's table, the Helm schema
or the settings the chart's files are built with."""

from __future__ import annotations

import argparse
import json

from watchkeeper.settings import Settings, redact_url, settings_table
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.helm_schema:
        from watchkeeper.helm_schema import render

        print(render(), end="")
    elif args.helm_built_settings:
        from watchkeeper.helm_schema import built_settings

        print(built_settings(settings), end="")
    elif args.markdown:
        print(settings_table())
    else:
        values = settings.flat_dump(mode="json")  # secret fields come out as ********
        print(json.dumps({name: _masked(value) for name, value in values.items()}, indent=2))
    return 0


def _masked(value: object) -> object:
    """Any text setting may be a URL with a password or a token in it, not only those
    named ``*_url`` (``WATCHKEEPER_RETENTION_ARCHIVE=sftp://user:password@host/dir``)."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def register(commands: Commands) -> None:
    settings = commands.add_parser("settings", help="print the effective settings")
    settings.add_argument("--markdown", action="store_true", help="the README's table")
    settings.add_argument(
        "--helm-schema", action="store_true", help="the Helm chart's values.schema.json"
    )
    settings.add_argument(
        "--helm-built-settings",
        action="store_true",
        help="the Helm chart's files/built-settings.yaml: the settings its rules and "
        "dashboards are built with",
    )
    settings.set_defaults(handler=_run)
