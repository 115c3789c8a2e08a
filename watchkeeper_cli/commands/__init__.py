"""The registry of commands: each module adds its own subparser, with its handler, in
``register``. The order here is the order of ``watchkeeper --help``."""

from __future__ import annotations

from typing import Protocol

from watchkeeper_cli.commands import (
    alertmanager,
    db,
    grafana,
    healthcheck,
    mixin,
    model,
    monitor,
    replay,
    report,
    retrain,
    serve,
    settings,
    train,
)
from watchkeeper_cli.parser import Commands


class Command(Protocol):
    """A command module: it registers its subparser, whose defaults carry the handler."""

    def register(self, commands: Commands) -> None: ...


COMMANDS: tuple[Command, ...] = (
    train,
    serve,
    monitor,
    replay,
    retrain,
    db,
    model,
    alertmanager,
    mixin,
    grafana,
    healthcheck,
    report,
    settings,
)
