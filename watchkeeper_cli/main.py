"""The ``watchkeeper`` entry point: the parser built from the registered commands, the
logging and settings every command starts with, and one line on failure."""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from watchkeeper.settings import Settings, config_problems
from watchkeeper.threads import limit_threads
from watchkeeper_cli.commands import COMMANDS
from watchkeeper_cli.failures import describe
from watchkeeper_cli.help_text import DESCRIPTION, EPILOG, HelpFormatter
from watchkeeper_cli.parser import DEBUG_HELP, Commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchkeeper", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = Commands(parser)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # The command's own usage, not the main parser's (which argparse reports
        # unrecognised arguments with, whichever command they were given to).
        getattr(args, "command_parser", parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
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
        print(f"error: invalid configuration: {config_problems(exc)}", file=sys.stderr)
        return 2
    # Before any command imports numpy or scikit-learn, and for their child processes.
    limit_threads(settings.process.numeric_threads)
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
