"""The HTTP endpoint of the background services (monitor, retraining worker).

``/metrics`` serves Prometheus; ``/healthz`` answers container health checks and
Kubernetes liveness probes. A process that answers HTTP can still be stuck (a
database call that never returns), so ``/healthz`` fails once the service's loop has
made no progress for longer than it ever should, and the orchestrator restarts it.
``/healthz`` also reports the process's numeric thread pools (the largest of each kind,
as a request thread sees them), so that ``WATCHKEEPER_NUMERIC_THREADS`` can be checked
on a live process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from watchkeeper.errors import MethodNotAllowed, NotFound, WatchkeeperError
from watchkeeper.threads import thread_pools

ResponseBody = dict[str, Any]
"""A JSON answer, written as is (the probe's reader is a person or a tool, not our code)."""

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
ALLOWED_METHODS = ("GET", "HEAD")


class Heartbeat:
    """When a service loop last made progress.

    The loop calls :meth:`beat` at the start of every cycle; a cycle that runs
    longer than ``stall_seconds`` (plus the pause between cycles) counts as stuck.
    """

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return self._clock() - self._last

    def stalled(self) -> bool:
        return self.age() > self.stall_seconds


class _IPv6Server(ThreadingWSGIServer):
    # the wsgiref server binds IPv4 whatever the host: "::1" failed to resolve
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes arrive every few seconds; do not log each one."""


def status_app(
    registry: CollectorRegistry,
    heartbeat: Heartbeat,
    waiting: Callable[[], str | None] | None = None,
) -> WSGIApplication:
    """``waiting`` says what the service waits for (its database), shown in ``/healthz``
    as ``waiting_for`` without failing it: cycles go on coming while it waits.

    Both paths take GET and HEAD (answered as GET, without the body); any other method
    is a 405 naming them, in the API's JSON error shape, as is an unknown path's 404."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path not in (METRICS_PATH, HEALTH_PATH):
            return _error(start_response, NotFound(f"no such path: {path}"))
        if method not in ALLOWED_METHODS:
            return _error(
                start_response,
                MethodNotAllowed(
                    f"{path} takes {' and '.join(ALLOWED_METHODS)}, not {method[:40]}"
                ),
                [("Allow", ", ".join(ALLOWED_METHODS))],
            )
        if path == METRICS_PATH:
            # prometheus_client answers GET only: a HEAD is its GET, the body left off
            body = metrics({**environ, "REQUEST_METHOD": "GET"}, start_response)
        else:
            body = _health(start_response, heartbeat, waiting)
        return [] if method == "HEAD" else body

    return app


def _health(
    start_response: StartResponse,
    heartbeat: Heartbeat,
    waiting: Callable[[], str | None] | None,
) -> list[bytes]:
    stalled = heartbeat.stalled()
    body: ResponseBody = {
        "status": "stalled" if stalled else "ok",
        "seconds_since_progress": round(heartbeat.age(), 1),
        "stall_seconds": heartbeat.stall_seconds,
        "thread_pools": thread_pools(),
    }
    what = None if waiting is None else waiting()
    if what is not None:
        body["waiting_for"] = what
    return _json(start_response, "503 Service Unavailable" if stalled else "200 OK", body)


def _error(
    start_response: StartResponse,
    error: WatchkeeperError,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """The API's error shape (``serving.api_models.Error``), without a request id."""
    status = HTTPStatus(error.status_code)
    return _json(start_response, f"{status.value} {status.phrase}", error.as_answer(), headers)


def _json(
    start_response: StartResponse,
    status: str,
    body: ResponseBody,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ],
    )
    return [data]


def start_status_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    heartbeat: Heartbeat,
    *,
    waiting: Callable[[], str | None] | None = None,
) -> ThreadingWSGIServer:
    """Serve ``/metrics`` and ``/healthz`` on a daemon thread; ``shutdown()`` stops it.
    An IPv6 ``host`` (``::1``, ``::``) is bound as IPv6, as gunicorn binds it."""
    server = make_server(
        host,
        port,
        status_app(registry, heartbeat, waiting),
        server_class=_IPv6Server if ":" in host else ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="status-server", daemon=True)
    thread.start()
    return server
