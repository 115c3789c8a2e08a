"""Gunicorn configuration for ``watchkeeper serve``.

``watchkeeper serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` and ``OMP_NUM_THREADS=1``
in the environment before gunicorn starts, so that every worker imports
prometheus-client in multiprocess mode and runs the trees single-threaded (one
OpenMP pool per worker on a small host collapses throughput).

Workers are :class:`serving.gunicorn_worker.BufferingThreadWorker`: gunicorn's
threaded worker, except that each request is read whole on the worker's event loop
before a request thread sees it, so that slow or stalled clients hold no thread.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from serving.heap import freeze_loaded
from serving.preload import preload_libraries
from watchkeeper.listen_address import url_host
from watchkeeper.settings import ServingSettings

_serving = ServingSettings()

bind = f"{url_host(_serving.host)}:{_serving.port}"
workers = _serving.workers
threads = _serving.threads
worker_class = "serving.gunicorn_worker.BufferingThreadWorker"
timeout = _serving.worker_timeout
graceful_timeout = _serving.graceful_timeout
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = "info"
# gunicorn's control socket (for `gunicornc`) defaults to one path per user,
# $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl, that every instance on
# the host would share (the last one started takes it over). Signals do the same
# jobs per master pid: HUP reloads, TTIN/TTOU add or remove a worker.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Start with an empty multiprocess directory: files of a previous run would be
    summed into this run's counters. Then import the libraries every worker needs, once,
    before the workers are forked (:func:`serving.preload.preload_libraries`)."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    preload_libraries()


def post_worker_init(worker: Any) -> None:
    """Watchkeeper's own lines (a model hot swap, the prediction log's state) go where
    gunicorn's go, at INFO: without a handler, Python would print only warnings. Then
    the heap loaded so far is frozen (:mod:`serving.heap`), before the first request."""
    root = logging.getLogger()
    if not root.handlers:
        for handler in worker.log.error_log.handlers:
            root.addHandler(handler)
        root.setLevel(logging.INFO)
    # Alembic reports its migration context at INFO on every schema check (readiness).
    for name in ("alembic.runtime.plugins", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    freeze_loaded()  # the app and its model are loaded: keep full collections off them


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Drain this worker's prediction log before the process ends."""
    from serving.app import shutdown
    from serving.services import services_of

    app = getattr(worker, "wsgi", None)
    if services_of(app) is not None:
        shutdown(app, timeout=max(_serving.graceful_timeout - 2, 1))
