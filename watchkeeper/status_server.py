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
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from watchkeeper.threads import thread_pools

ResponseBody = dict[str, Any]
"""A JSON answer, written as is (the probe's reader is a person or a tool, not our code)."""

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"


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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes arrive every few seconds; do not log each one."""


def status_app(
    registry: CollectorRegistry,
    heartbeat: Heartbeat,
    waiting: Callable[[], str | None] | None = None,
) -> WSGIApplication:
    """``waiting`` says what the service waits for (its database), shown in ``/healthz``
    as ``waiting_for`` without failing it: cycles go on coming while it waits."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == METRICS_PATH:
            return metrics(environ, start_response)
        if path == HEALTH_PATH:
            stalled = heartbeat.stalled()
            body = {
                "status": "stalled" if stalled else "ok",
                "seconds_since_progress": round(heartbeat.age(), 1),
                "stall_seconds": heartbeat.stall_seconds,
                "thread_pools": thread_pools(),
            }
            what = None if waiting is None else waiting()
            if what is not None:
                body["waiting_for"] = what
            status = "503 Service Unavailable" if stalled else "200 OK"
            return _json(start_response, status, body)
        return _json(start_response, "404 Not Found", {"error": f"no such path: {path}"})

    return app


def _json(start_response: StartResponse, status: str, body: ResponseBody) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
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
    """Serve ``/metrics`` and ``/healthz`` on a daemon thread; ``shutdown()`` stops it."""
    server = make_server(
        host,
        port,
        status_app(registry, heartbeat, waiting),
        server_class=ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="status-server", daemon=True)
    thread.start()
    return server
