"""A local receiver for Alertmanager's "people" notifications, for ``make run``.

On a laptop there is no chat bridge or pager: Alertmanager's people receiver posts
here, and each alert state change becomes one line a person can read, appended to a
file (``<data_dir>/notifications.log``) and echoed to the terminal::

    2026-11-29T11:52:03Z FIRING WatchkeeperRetrainingFailed severity=warning outcome=failed:
    A retraining run failed | runbook: /path/to/docs/runbook.md#retraining-failed

Alertmanager re-sends a whole group whenever any alert in it changes, and again every
repeat interval; the sink writes a line only when an alert's state changes (a new
firing, or its resolution), so the file reads as a history of what happened.

Run: ``python -m watchkeeper.notification_sink --listen 127.0.0.1:9095 --log FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError

HEALTH_PATH = "/healthz"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(BaseModel):
    """One alert of an Alertmanager webhook notification (payload version 4)."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: datetime  # noqa: N815 - Alertmanager's field name
    endsAt: datetime | None = None  # noqa: N815
    fingerprint: str = ""


class Notification(BaseModel):
    """The body Alertmanager posts to a webhook receiver."""

    status: AlertStatus
    receiver: str = ""
    alerts: list[Alert]


def format_line(alert: Alert, runbook_base: str = "") -> str:
    """One readable line: when, state, alert name, severity, the other labels, the
    summary, and the runbook link (relative links resolved against ``runbook_base``)."""
    when = alert.endsAt if alert.status is AlertStatus.RESOLVED and alert.endsAt else alert.startsAt
    # which scrape target raised it is plumbing; the rule's own labels say what is wrong
    labels = {k: v for k, v in alert.labels.items() if k not in ("instance", "job")}
    name = labels.pop("alertname", "(unnamed alert)")
    severity = labels.pop("severity", "none")
    others = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    summary = alert.annotations.get("summary", "").strip() or "(no summary)"
    runbook = alert.annotations.get("runbook_url", "")
    if runbook and runbook_base and "://" not in runbook and not runbook.startswith("/"):
        runbook = f"{runbook_base.rstrip('/')}/{runbook}"
    parts = [
        when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        alert.status.value.upper(),
        name,
        f"severity={severity}",
    ]
    if others:
        parts.append(others)
    line = " ".join(parts) + f": {summary}"
    return line + (f" | runbook: {runbook}" if runbook else "")


class NotificationLog:
    """Writes a line for each alert whose state changed since the last notification."""

    def __init__(self, path: Path, runbook_base: str = "", echo: TextIO | None = None) -> None:
        self.path = path
        self.runbook_base = runbook_base
        self.echo = echo
        self._seen: dict[str, tuple[AlertStatus, datetime]] = {}
        self._lock = threading.Lock()

    def record(self, notification: Notification) -> list[str]:
        """Append the lines for ``notification``'s state changes; return them."""
        with self._lock:
            lines = []
            for alert in notification.alerts:
                key = alert.fingerprint or json.dumps(alert.labels, sort_keys=True)
                state = (alert.status, alert.startsAt)
                if self._seen.get(key) == state:
                    continue  # a repeat of a group that changed elsewhere, or a reminder
                self._seen[key] = state
                lines.append(format_line(alert, self.runbook_base))
            if lines:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.writelines(line + "\n" for line in lines)
                if self.echo is not None:
                    for line in lines:
                        print(f"notification: {line}", file=self.echo, flush=True)
            return lines


def make_server(host: str, port: int, path: str, log: NotificationLog) -> ThreadingHTTPServer:
    """An HTTP server taking Alertmanager's POSTs on ``path``; ``GET /healthz`` answers
    when it is up. Call ``serve_forever()``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            if self.path != path:
                self._answer(404, {"error": f"no such path: {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                notification = Notification.model_validate_json(self.rfile.read(length))
            except ValidationError as exc:
                self._answer(400, {"error": f"not an Alertmanager notification: {exc}"})
                return
            self._answer(200, {"written": len(log.record(notification))})

        def do_GET(self) -> None:  # noqa: N802
            if self.path == HEALTH_PATH:
                self._answer(200, {"status": "ok", "log": str(log.path)})
            else:
                self._answer(404, {"error": f"no such path: {self.path}"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """The notification log is the record; access lines would only repeat it."""

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:9095", help="host:port to bind")
    parser.add_argument("--path", default="/notify", help="URL path Alertmanager posts to")
    parser.add_argument("--log", required=True, type=Path, help="file the lines go to")
    parser.add_argument(
        "--runbook-base", default="", help="prefix for relative runbook links (the checkout)"
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    log = NotificationLog(args.log, args.runbook_base, echo=sys.stdout)
    server = make_server(host or "127.0.0.1", int(port), args.path, log)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
