"""``watchkeeper report``: one self-contained HTML file of what the monitor saw."""

from __future__ import annotations

import argparse
from pathlib import Path

from watchkeeper.settings import Settings
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.report.build import STAGES, ReportNotWritten, write_report
    from monitoring.report.period import parse_moment
    from monitoring.report.records import Period
    from monitoring.report.wording import summary_line
    from watchkeeper.progress import Stages

    try:
        since = parse_moment(args.since) if args.since else None
        until = parse_moment(args.until) if args.until else None
    except ValueError as exc:
        raise CommandFailed(str(exc), "fix --since/--until") from exc
    if since is not None and until is not None and since > until:
        raise CommandFailed(
            f"--since {args.since} is after --until {args.until}: the period holds nothing",
            "fix --since/--until",
        )
    _require_log(settings)
    if args.model_version is not None:
        _check_registered(args.model_version, settings)
    period = Period(since=since, until=until, model_version=args.model_version)
    output = Path(args.output)
    try:
        data = write_report(settings, period, output, stages=Stages(STAGES))
    except ReportNotWritten as exc:
        raise CommandFailed(
            exc.message, "pass --output a file path in a directory you can write to"
        ) from exc
    print(f"wrote {output}: {summary_line(data)}")
    return 0


def _require_log(settings: Settings) -> None:
    """A SQLite log that is not there is another data directory's: the report created
    an empty database in its place and advised `watchkeeper db upgrade`, which leads
    only to an empty report."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.storage.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).exists():
        raise CommandFailed(
            f"no prediction log at {url.database}: nothing was served with "
            f"WATCHKEEPER_DATA_DIR {settings.storage.data_dir}",
            "set WATCHKEEPER_DATA_DIR to the data directory of the run to report on "
            "(`make run`'s own: var in the checkout)",
        )


def _check_registered(version: str, settings: Settings) -> None:
    """A report of a version the registry does not hold would be empty, written as if
    all were well: a typo (``v9`` for ``v2``) is refused instead."""
    from watchkeeper_cli.model_registry import open_registry

    versions = open_registry(settings.storage).versions()
    if version not in versions:
        raise CommandFailed(
            f"--model-version {version} is not a registered version "
            f"(registered: {', '.join(versions) or 'none'})",
            "pass a version `watchkeeper model list` shows",
        )


def register(commands: Commands) -> None:
    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of the monitor's results",
        # the help keeps a description's line breaks (watchkeeper_cli/help_text.py)
        description="Write one HTML file of what the monitor saw in a period: drift verdicts\n"
        "per window, OOD fraction, data quality, accuracy and retraining on one\n"
        "timeline; the drifted features against their reference; the most\n"
        "out-of-distribution rows; the model versions. Charts are inline and the page\n"
        "loads nothing when opened. Reads the prediction log (WATCHKEEPER_DATABASE_URL)\n"
        "and the model registry (WATCHKEEPER_REGISTRY_PATH).",
    )
    report.add_argument("--since", help="from this time: ISO 8601 (UTC), or back from now: 24h")
    report.add_argument("--until", help="up to this time: ISO 8601 (UTC), or back from now")
    report.add_argument("--model-version", help="only this model version")
    report.add_argument("--output", default="report.html", help="HTML file to write")
    report.set_defaults(handler=_run)
