"""What every subcommand's parser shares: ``--debug`` after the command too, options
shown with their defaults, and a description taken from the command's help line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from watchkeeper.settings import Settings
from watchkeeper_cli.help_text import HelpFormatter

# A command's work: the parsed arguments and the effective settings in, the exit status out.
Handler = Callable[[argparse.Namespace, Settings], int]

DEBUG_HELP = "on failure, show the traceback instead of one line; log at debug level"


class Commands:
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
        parser = self._actions.add_parser(
            name, parents=[self._common], help=help, formatter_class=HelpFormatter, **kwargs
        )
        # The innermost command's parser, for errors about its arguments (see main).
        parser.set_defaults(command_parser=parser)
        return parser
