"""``watchkeeper db upgrade|current|prune``: the log's schema and its retention."""

from __future__ import annotations

import argparse
from dataclasses import replace

from watchkeeper.settings import Settings
from watchkeeper_cli.option_types import seconds
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import (
        current_revision,
        head_revision,
        upgrade,
        wait_for_database,
    )

    engine = create_engine(settings.storage.database_url)
    if args.wait:
        wait_for_database(engine, args.wait)
    if args.db_command == "upgrade":
        upgrade(engine)
    if args.db_command == "prune":
        from watchkeeper.db.migrate import require_current
        from watchkeeper.db.retention import Pruner, RetentionPolicy

        try:
            require_current(engine)
            policy = replace(
                RetentionPolicy.from_settings(settings), without_monitor=args.without_monitor
            )
            report = Pruner(engine, policy).run(dry_run=args.dry_run)
        finally:
            engine.dispose()
        print("\n".join(report.lines()))
        return 0
    print(f"schema revision {current_revision(engine)} (code expects {head_revision()})")
    return 0


def register(commands: Commands) -> None:
    db = commands.add_parser("db", help="database schema migrations and retention")
    db.set_defaults(handler=_run)
    db_commands = Commands(db, dest="db_command")
    for name, meaning in (
        ("upgrade", "apply the pending migrations, then print the schema revision"),
        ("current", "print the schema revision and the one this code expects"),
        ("prune", "delete log rows past their retention (WATCHKEEPER_RETENTION_*)"),
    ):
        db_command = db_commands.add_parser(name, help=meaning)
        if name == "prune":
            db_command.add_argument(
                "--dry-run", action="store_true", help="count what would go; delete nothing"
            )
            db_command.add_argument(
                "--without-monitor",
                action="store_true",
                help="prune predictions no monitor has read (a log no monitor runs on); "
                "otherwise only what the monitor's watermark has passed",
            )
        db_command.add_argument(
            "--wait",
            type=seconds,
            default=0.0,
            metavar="SECONDS",
            help="wait up to this long for the database to accept connections (0 to a day)",
        )
