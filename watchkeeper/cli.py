"""The ``watchkeeper`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper.settings import Settings, settings_table

if TYPE_CHECKING:  # the registry pulls in scikit-learn; subcommands import it when needed
    from watchkeeper.registry import ModelRegistry

log = logging.getLogger("watchkeeper")


def _registry(settings: Settings) -> ModelRegistry:
    from watchkeeper.registry import ModelRegistry

    return ModelRegistry(settings.registry_dir, trusted_types=settings.trusted_types)


# -- train -----------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.dataset import load_ames, load_csv
    from watchkeeper.training import TrainingParams, train

    registry = _registry(settings)
    if args.if_missing and registry.current_version() is not None:
        print(f"model {registry.current_version()} is already current; nothing to do")
        return 0
    if args.csv:
        if not args.target:
            raise SystemExit("--target is required with --csv")
        dataset = load_csv(Path(args.csv), args.target, period=args.period)
    else:
        dataset = load_ames()
    if dataset.period is not None:
        training = dataset.between(args.train_start, args.train_end)
        validation = dataset.between(args.validation_start, args.validation_end)
    else:
        cut = int(len(dataset.frame) * (1 - args.validation_fraction))
        training = replace(dataset, frame=dataset.frame.iloc[:cut])
        validation = replace(dataset, frame=dataset.frame.iloc[cut:])
    if len(training.frame) == 0 or len(validation.frame) == 0:
        raise SystemExit("training and validation sets must both hold rows; check the periods")
    params = TrainingParams() if args.max_iter is None else TrainingParams(max_iter=args.max_iter)
    trained = train(training, validation, params=params)
    version = registry.register(trained, make_current=not args.no_promote)
    metrics = trained.metrics
    print(
        f"registered {version} ({'current' if not args.no_promote else 'not current'}): "
        f"trained on {trained.training_window['rows']} rows, validated on "
        f"{metrics['rows']} rows: MAE {metrics['mae']:,.0f}, RMSE {metrics['rmse']:,.0f}, "
        f"MAPE {metrics['mape']:.1f}%, {trained.model.interval.level:.0%} interval coverage "
        f"{metrics['coverage']:.1%}"
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
    env.setdefault("OMP_NUM_THREADS", "1")
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


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.replay import Replayer
    from watchkeeper.dataset import load_ames

    url = args.url or f"http://{settings.host}:{settings.port}"
    dataset = load_ames().between(args.start, args.end)
    replayer = Replayer(
        url, rate=args.rate, batch_size=args.batch_size, feedback_delay=args.feedback_delay
    )
    report = replayer.run(dataset, limit=args.limit)
    print(report.summary())
    return 0 if report.rejected == 0 and report.feedback_failed == 0 else 1


def _cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    if args.mode == "worker":
        from retrain.worker import run_worker

        return run_worker(settings)
    import getpass

    from retrain import requests as retrain_requests
    from retrain.job import RetrainJob
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import require_current
    from watchkeeper.training import TrainingParams

    engine = create_engine(settings.database_url)
    require_current(engine)
    request_id = retrain_requests.enqueue(
        engine, trigger="manual", reason=args.reason or f"command line ({getpass.getuser()})"
    )
    params = TrainingParams(max_iter=args.max_iter) if args.max_iter else None
    job = RetrainJob(
        settings, engine, _registry(settings), params=params, csv=args.csv, target=args.target
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
    print(f"schema revision {current_revision(engine)} (code expects {head_revision()})")
    return 0


def _cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    current = registry.current_version()
    if args.model_command == "rollback":
        previous, now = registry.rollback(args.version)
        print(
            f"current model: {now} (was {previous}); servers switch within "
            f"{settings.model_poll_seconds:g} s"
        )
        return 0
    if args.model_command == "show":
        version = args.version or current
        if version is None:
            raise SystemExit("no model is registered")
        print(json.dumps(registry.metadata(version), indent=2))
        return 0
    versions = registry.versions()
    nan = float("nan")
    if not versions:
        print("no model versions registered in", registry.root)
        return 0
    print(
        f"{'':2}{'version':<9}{'status':<11}{'created':<21}{'rows':>6}{'MAE':>10}"
        f"{'MAPE':>7}{'coverage':>10}"
    )
    for version in versions:
        meta = registry.metadata(version)
        metrics = {"mae": nan, "mape": nan, "coverage": nan, **meta.get("metrics", {})}
        print(
            f"{'*' if version == current else '':2}{version:<9}{meta.get('status', ''):<11}"
            f"{meta['created_at'][:19]:<21}{meta['training_window'].get('rows', 0):>6}"
            f"{metrics['mae']:>10,.0f}{metrics['mape']:>6.1f}%{metrics['coverage']:>10.1%}"
        )
    return 0


def _cmd_alertmanager_config(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.alertmanager_config import render

    text = render(settings)
    if args.token_output:
        if settings.admin_token is None:
            raise SystemExit("--token-output needs WATCHKEEPER_ADMIN_TOKEN to be set")
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


def _cmd_grafana(args: argparse.Namespace, settings: Settings) -> int:
    if args.grafana_command == "build":
        from watchkeeper.grafana.dashboards import write

        for path in write(Path(args.output)):
            print(f"wrote {path}")
        return 0
    from watchkeeper.grafana.provision import provision

    if settings.grafana_token is None:
        raise SystemExit("set WATCHKEEPER_GRAFANA_TOKEN to a Grafana service-account token")
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
        print(settings.model_dump_json(indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchkeeper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and register it")
    train.add_argument("--if-missing", action="store_true", help="do nothing if a model is current")
    train.add_argument("--no-promote", action="store_true", help="register without making current")
    train.add_argument("--csv", help="train on this CSV instead of the Ames data")
    train.add_argument("--target", help="target column of the CSV")
    train.add_argument("--period", help="integer column ordering the CSV's rows in time")
    train.add_argument("--train-start", type=int, default=None, help="first period to train on")
    train.add_argument("--train-end", type=int, default=200712, help="last period to train on")
    train.add_argument("--validation-start", type=int, default=200801)
    train.add_argument("--validation-end", type=int, default=200812)
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="without --period: share of the last rows held out for validation",
    )
    train.add_argument("--max-iter", type=int, default=None, help="boosting iterations")
    train.set_defaults(handler=_cmd_train)

    serve = commands.add_parser("serve", help="run the prediction server under gunicorn")
    serve.set_defaults(handler=_cmd_serve)

    monitor = commands.add_parser("monitor", help="run the monitor (drift, OOD, accuracy)")
    monitor.add_argument("--once", action="store_true", help="one cycle, then exit (cron, tests)")
    monitor.set_defaults(handler=_cmd_monitor)

    replay = commands.add_parser(
        "replay", help="stream held-back Ames sales through the API, with late feedback"
    )
    replay.add_argument("--url", help="prediction server (default: WATCHKEEPER_HOST:PORT)")
    replay.add_argument("--start", type=int, default=200801, help="first sale period, YYYYMM")
    replay.add_argument("--end", type=int, default=201012, help="last sale period, YYYYMM")
    replay.add_argument("--limit", type=int, default=None, help="send at most this many sales")
    replay.add_argument("--rate", type=float, default=20.0, help="sales per second; 0: no pause")
    replay.add_argument("--batch-size", type=int, default=1, help="sales per /predict request")
    replay.add_argument(
        "--feedback-delay", type=float, default=5.0, help="seconds before a sale's price is posted"
    )
    replay.set_defaults(handler=_cmd_replay)

    retrain = commands.add_parser(
        "retrain", help="run one retraining job now, or `retrain worker` to serve requests"
    )
    retrain.add_argument("mode", nargs="?", choices=["worker"], help="run the worker loop")
    retrain.add_argument("--reason", help="why, recorded with the run")
    retrain.add_argument("--max-iter", type=int, default=None, help="override boosting iterations")
    retrain.add_argument("--csv", help="original training data, for models not trained on Ames")
    retrain.add_argument("--target", help="target column of --csv")
    retrain.set_defaults(handler=_cmd_retrain)

    db = commands.add_parser("db", help="database schema migrations")
    db.add_argument("db_command", choices=["upgrade", "current"])
    db.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the database to accept connections",
    )
    db.set_defaults(handler=_cmd_db)

    model = commands.add_parser("model", help="list, show or roll back model versions")
    model.add_argument("model_command", choices=["list", "show", "rollback"])
    model.add_argument("version", nargs="?")
    model.set_defaults(handler=_cmd_model)

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

    grafana = commands.add_parser("grafana", help="build dashboards, or provision a Grafana")
    grafana.add_argument("grafana_command", choices=["build", "provision"])
    grafana.add_argument("--output", default="grafana/dashboards", help="with build: folder")
    grafana.set_defaults(handler=_cmd_grafana)

    healthcheck = commands.add_parser(
        "healthcheck", help="exit 0 if the component running here is healthy (containers)"
    )
    healthcheck.add_argument(
        "component", nargs="?", choices=sorted(HEALTH_ENDPOINTS), default="serve"
    )
    healthcheck.add_argument("--timeout", type=float, default=3.0, help="seconds")
    healthcheck.set_defaults(handler=_cmd_healthcheck)

    settings = commands.add_parser("settings", help="print the effective settings")
    settings.add_argument("--markdown", action="store_true", help="the README's table")
    settings.add_argument(
        "--helm-schema", action="store_true", help="the Helm chart's values.schema.json"
    )
    settings.set_defaults(handler=_cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    from watchkeeper.errors import WatchkeeperError

    try:
        return args.handler(args, settings)
    except WatchkeeperError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
