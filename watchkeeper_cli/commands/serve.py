"""``watchkeeper serve``: migrate the log's schema if asked and check it, then hand the
process to gunicorn running serving's app.

A PostgreSQL server that does not answer at all (refused, timed out: a restart during an
outage, a pod started before its database) does not stop the server from starting:
predictions are answered and journaled as during any outage, and each worker's log
writer checks (and, with ``WATCHKEEPER_AUTO_MIGRATE``, migrates) the schema once the
database answers, before it stores anything (:mod:`watchkeeper.db.schema_check`). A
database that answers with another schema, or refuses the connection, still stops it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path

from watchkeeper.listen_address import ListenAddress, http_url
from watchkeeper.settings import Settings
from watchkeeper.threads import thread_environment
from watchkeeper_cli.failures import CommandFailed
from watchkeeper_cli.help_text import settings_epilog
from watchkeeper_cli.parser import Commands


def _hold_metrics_directory(directory: Path, wait: float) -> None:
    """Lock ``directory`` (prometheus-client's multiprocess files) for this server's
    life: gunicorn empties it as it starts, so a second server on it would zero the
    first one's counters under Prometheus. The lock's descriptor is inherited through
    ``exec`` by the gunicorn master and its workers; the kernel drops it when the last
    of them exits, however it exits. A master killed with ``kill -9`` leaves workers
    that drain their journals before they exit: a restart waits ``wait`` seconds for
    them before it gives up."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory.parent / f".{directory.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CommandFailed(
                    f"another server is running on {directory} (its Prometheus"
                    " multiprocess directory)",
                    "stop it, or give this server its own WATCHKEEPER_DATA_DIR or"
                    " WATCHKEEPER_PROMETHEUS_MULTIPROC_DIR",
                ) from None
            time.sleep(0.2)
    os.set_inheritable(fd, True)


def _check_schema(settings: Settings) -> None:
    """Migrate (if asked) and check the schema; when PostgreSQL does not answer, say so
    and leave the check to the workers' log writers."""
    import sqlalchemy as sa

    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import require_current, upgrade
    from watchkeeper.db.reachability import unreachable
    from watchkeeper.settings import redact_url

    engine = create_engine(settings.storage.database_url)
    try:
        if settings.storage.auto_migrate:
            upgrade(engine)
        require_current(engine)
    except sa.exc.OperationalError as exc:
        if not unreachable(exc):
            raise
        reason = str(exc.orig).strip().splitlines()[0]
        migrated = (
            " migrated (WATCHKEEPER_AUTO_MIGRATE) and" if settings.storage.auto_migrate else ""
        )
        print(
            f"warning: the database at {redact_url(settings.storage.database_url)} does not"
            f" answer ({reason}); serving anyway: entries wait in the journal, and the"
            f" schema is{migrated} checked once it answers, before anything is stored",
            file=sys.stderr,
        )
    finally:
        engine.dispose()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    metrics_directory = settings.storage.prometheus_multiproc_dir.resolve()
    # Past the grace period, the last worker of a killed master has exited.
    _hold_metrics_directory(metrics_directory, settings.serving.graceful_timeout + 10)
    _check_schema(settings)
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_directory)
    env.update(thread_environment(settings.process.numeric_threads))
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:serving.gunicorn_conf",
        "serving.app:create_app()",
    ]
    serving = settings.serving
    # one line naming WATCHKEEPER_PORT (or _HOST), not a page of gunicorn's retries
    ListenAddress(serving.host, serving.port, "host", "port").check_free()
    print(f"serving on {http_url(serving.host, serving.port)} with {serving.workers} workers")
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def register(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the prediction server under gunicorn",
        epilog=settings_epilog("serve", "serve"),
    )
    serve.set_defaults(handler=_run)
