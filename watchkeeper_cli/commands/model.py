"""``watchkeeper model list|show|rollback``: the registered versions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from watchkeeper.errors import RegistryError
from watchkeeper.settings import Settings
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.model_registry import open_registry
from watchkeeper_cli.parser import Commands

if TYPE_CHECKING:  # scikit-learn: imported when the command runs
    from watchkeeper.registry import MetadataDocument, ModelRegistry

# Versions a retraining job judged unfit: putting one into production takes --force.


def _require_version(registry: ModelRegistry, version: str) -> MetadataDocument:
    if version not in registry.versions():
        raise CommandFailed(
            f"model version {version!r} is not registered in {registry.root}",
            "`watchkeeper model list` shows the versions",
        )
    return registry.metadata(version)


def _rollback(registry: ModelRegistry, version: str | None, force: bool) -> tuple[str | None, str]:
    from watchkeeper.errors import RollbackRefused

    if version is not None:
        _require_version(registry, version)
    try:
        return registry.rollback(version, force=force)
    except RollbackRefused as exc:
        raise CommandFailed(exc.message, f"pass --force to roll back to {version} anyway") from exc


def _current(registry: ModelRegistry, *, needed: bool) -> str | None:
    """The version ``CURRENT`` names. One that cannot be read fails the command when
    ``needed``; otherwise it is a warning (``model list`` still lists the versions),
    and either way says how to repair it."""
    from watchkeeper.current_pointer import UnreadableCurrent

    try:
        return registry.current_version()
    except UnreadableCurrent as exc:
        repair = "`watchkeeper model rollback VERSION` repairs it"
        if needed:
            raise CommandFailed(exc.message, f"name a version, or {repair}") from exc
        print(f"warning: {exc.message}: no version is current; {repair}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace, settings: Settings) -> int:
    registry = open_registry(settings.storage)
    if args.model_command == "rollback":
        previous, now = _rollback(registry, args.version, args.force)
        if previous == now:
            print(
                f"current model: {now}, as it was: nothing changed (servers that refused "
                f"its files load them again within {settings.serving.model_poll_seconds:g} s)"
            )
            return 0
        print(
            f"current model: {now} (was {previous or 'none'}); servers switch within "
            f"{settings.serving.model_poll_seconds:g} s"
        )
        return 0
    from watchkeeper.version_summary import VersionSummary, list_lines, show_text

    current = _current(registry, needed=args.model_command == "show" and not args.version)
    if args.model_command == "show":
        version = args.version or current
        if version is None:
            raise CommandFailed("no model is registered", "train one with `watchkeeper train`")
        metadata = _require_version(registry, version)
        if args.json:
            print(json.dumps(metadata, indent=2))
        else:
            print(show_text(VersionSummary.from_record(registry.record(version)), current))
        return 0
    versions = registry.versions()
    if not versions:
        print("no model versions registered in", registry.root)
        return 0
    summaries, unreadable = [], []
    for version in versions:
        try:
            summaries.append(VersionSummary.from_record(registry.record(version)))
        except RegistryError as exc:  # one damaged version hides none of the others
            unreadable.append(f"{'*' if version == current else '':2}{version:<9}{exc}")
    print("\n".join(list_lines(summaries, current)))
    if unreadable:
        print("\nunreadable (restore its files, or roll back past it):", *unreadable, sep="\n")
    return 0


def register(commands: Commands) -> None:
    model = commands.add_parser("model", help="list, show or roll back model versions")
    model.set_defaults(handler=_run, version=None)
    model_commands = Commands(model, dest="model_command")
    model_commands.add_parser(
        "list",
        help="every version with its status and metrics, the champion's MAE on the same "
        "data, and which data that is",
    )
    show = model_commands.add_parser("show", help="one version's summary, or its metadata")
    show.add_argument("version", nargs="?", help="e.g. v2 (default: the current version)")
    show.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    rollback = model_commands.add_parser("rollback", help="make another version current")
    rollback.add_argument(
        "version",
        nargs="?",
        help="e.g. v1 (default: the newest earlier version that retraining did not reject)",
    )
    rollback.add_argument(
        "--force",
        action="store_true",
        help="accept a version that retraining rejected or that failed",
    )
