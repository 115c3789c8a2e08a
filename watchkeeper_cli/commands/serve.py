"""``watchkeeper serve``: migrate the log's schema if asked, then hand the process to
gunicorn running serving's app."""

from __future__ import annotations

import argparse
import os
import sys

from watchkeeper.settings import Settings
from watchkeeper.threads import thread_environment
from watchkeeper_cli.help_text import settings_epilog
from watchkeeper_cli.parser import Commands


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import require_current, upgrade

    engine = create_engine(settings.storage.database_url)
    if settings.storage.auto_migrate:
        upgrade(engine)
    require_current(engine)
    engine.dispose()
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(settings.storage.prometheus_multiproc_dir.resolve())
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
    print(f"serving on http://{serving.host}:{serving.port} with {serving.workers} workers")
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
