"""Schema migrations through Alembic, driven from code (no alembic.ini to find).

Servers never create tables implicitly: ``watchkeeper db upgrade`` (or
``watchkeeper serve`` with ``WATCHKEEPER_AUTO_MIGRATE``) applies migrations, and
:func:`require_current` refuses to run against a schema that is behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from watchkeeper.errors import ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# Key of the PostgreSQL advisory lock that serialises concurrent upgrades.
_UPGRADE_LOCK = 0x5741544348  # "WATCH"


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
    """Apply migrations up to ``revision``.

    Safe to run from several processes at once (a Helm hook and replicas starting
    with auto-migrate): on PostgreSQL the upgrade holds a transaction-scoped advisory
    lock, so the second runner waits and then finds nothing left to do. SQLite's
    single writer serialises the transactions by itself.
    """
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK}
            )
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
    if current != head:
        raise ServiceUnavailable(
            f"database schema is at {current or 'nothing'}, code needs {head}: "
            "run `watchkeeper db upgrade`"
        )
