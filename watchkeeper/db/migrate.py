"""Schema migrations through Alembic, driven from code (no alembic.ini to find).

Servers never create tables implicitly: ``watchkeeper db upgrade`` (or
``watchkeeper serve`` with ``WATCHKEEPER_AUTO_MIGRATE``) applies migrations, and
:func:`require_current` refuses to run against a schema that is behind.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from watchkeeper.errors import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def require_current(engine: sa.Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ServiceUnavailable(
            f"database schema is at {current or 'nothing'}, code needs {head}: "
            "run `watchkeeper db upgrade`"
        )
