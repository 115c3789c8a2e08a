"""Schema migrations through Alembic, driven from code (no alembic.ini to find).

Servers never create tables implicitly: ``watchkeeper db upgrade`` (or
``watchkeeper serve`` with ``WATCHKEEPER_AUTO_MIGRATE``) applies migrations, and
:func:`require_current` refuses to run against a schema other than the code's.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from watchkeeper.errors import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# Key of the PostgreSQL advisory lock that serialises concurrent upgrades.
_UPGRADE_LOCK = 0x5741544348  # "WATCH"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache  # the migrations are the installed code's: reading their 17+ files once will do
def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``.

    Safe to run from several processes at once (a Helm hook and replicas starting
    with auto-migrate): on PostgreSQL the upgrade holds a transaction-scoped advisory
    lock, so the second runner waits and then finds nothing left to do. On SQLite the
    upgrade takes the write lock before Alembic reads the revision (waiting up to the
    busy timeout): a deferred transaction let both runners read an empty version table
    and then both create the tables, the second failing with "table ... already
    exists".
    """
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK}
            )
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # first statement: no BEGIN yet
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def wait_for_database(engine: sa.Engine, timeout: float, interval: float = 1.0) -> None:
    """Return once the database accepts connections; raise after ``timeout`` seconds.

    Containers start in any order: a migration step may run before the database
    it migrates is up.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError as exc:
            if time.monotonic() >= deadline:
                reason = str(exc.orig or exc).strip().splitlines()[0]
                raise ServiceUnavailable(
                    f"database not reachable after {timeout:g} s: {reason}"
                ) from exc
            time.sleep(interval)


def require_current(engine: sa.Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is not None and not _known(current):
        # upgrading cannot help: a newer release migrated the database
        raise ServiceUnavailable(
            f"database schema is at {current}, newer than this code (which knows up to "
            f"{head}): run the release that migrated it"
        )
    raise ServiceUnavailable(
        f"database schema is at {current or 'nothing'}, code needs {head}: "
        "run `watchkeeper db upgrade`"
    )


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False
