"""A local receiver for Alertmanager's "people" notifications, for ``make run``.

On a laptop there is no chat bridge or pager: Alertmanager's people receiver posts
here, and each alert state change becomes one line a person can read, appended to a
file (``<data_dir>/notifications.log``) and echoed to the terminal::

    2026-11-29T11:52:03Z FIRING WatchkeeperRetrainingFailed severity=warning outcome=failed:
    A retraining run failed | runbook: /path/to/docs/runbook.md#retraining-failed

Alertmanager re-sends a whole group whenever any alert in it changes, and again every
repeat interval; the sink writes a line only when an alert's state changes (a new
firing, or its resolution), so the file reads as a history of what happened. A line that
cannot be appended (a read-only file, a full disk) is answered with a 500, which
Alertmanager retries: the alert is written once the file takes it. Line breaks and
terminal escapes in labels and annotations are written escaped (``\\n``, ``\\x1b``), so
one state change is one line.

Errors are answered in the API's JSON shape, ``{"error": {"code", "message",
"details"}}``: a method a path does not take is a 405 naming the methods it does
(``Allow``), a body under a content coding (gzip) a 415 (Alertmanager sends its bodies
unencoded), and an alert time that is a number rather than an RFC 3339 time a 400 naming
the field (whether a number counts seconds or milliseconds is a guess this does not make).

Run: ``python -m watchkeeper.notification_sink --listen 127.0.0.1:9095 --log FILE``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, TextIO

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError
from pydantic_core import ErrorDetails

from watchkeeper.errors import (
    BadRequest,
    FieldProblem,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedContentEncoding,
    WatchkeeperError,
)

HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Alertmanager posts a whole group at once: thousands of alerts fit, and no POST makes
the sink hold more."""
READ_TIMEOUT_SECONDS = 30.0
"""A client that sends less than its Content-Length holds a thread no longer."""
_LENGTH = re.compile(r"[0-9]+")
# pydantic reads a number, or a string of one, as a Unix time in seconds or, above 2e10,
# in milliseconds: a guess about a unit Alertmanager never sends (it sends RFC 3339)
_NUMBER = re.compile(r"\s*[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*")
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
"""The methods HTTP defines: one a path does not take is a 405; any other is a 501."""


class NotificationLogUnwritable(WatchkeeperError):
    """notifications.log cannot be appended to. A 5xx, which Alertmanager retries."""

    status_code = 500
    code = "notification_log_unwritable"


class RequestTimeout(WatchkeeperError):
    status_code = 408
    code = "request_timeout"


def _rfc3339_time(value: object) -> object:
    """Refuse a number for a time, which pydantic would read as seconds or milliseconds
    by its size; leave everything else to pydantic's own datetime parsing."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be an RFC 3339 time such as 2026-11-29T11:46:21Z, not a number")
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError(
            f"must be an RFC 3339 time such as 2026-11-29T11:46:21Z, not a number ({value[:40]!r})"
        )
    return value


def _with_offset(value: datetime) -> datetime:
    """RFC 3339 requires the offset; a time without one was read as this host's local
    time, which says nothing of when the alert fired."""
    if value.tzinfo is None:
        raise ValueError(
            "must be an RFC 3339 time with its offset, such as 2026-11-29T11:46:21Z "
            "(no time zone given)"
        )
    return value


AlertTime = Annotated[datetime, BeforeValidator(_rfc3339_time), AfterValidator(_with_offset)]


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(BaseModel):
    """One alert of an Alertmanager webhook notification (payload version 4)."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: AlertTime  # noqa: N815 - Alertmanager's field name
    endsAt: AlertTime | None = None  # noqa: N815
    fingerprint: str = ""


class Notification(BaseModel):
    """The body Alertmanager posts to a webhook receiver."""

    status: AlertStatus
    receiver: str = ""
    alerts: list[Alert]


def printable(text: str) -> str:
    """``text`` with what is not printable escaped as Python writes it (``\\n``,
    ``\\x1b``, ``\\u2028``): a label or annotation can neither start a line of its own
    (a forged all-clear) nor drive the terminal the line is echoed to."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _timestamp(when: datetime) -> str:
    try:
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError):
        # 9999-12-31T23:59:59-23:59 is past the last UTC time: the time as it was sent
        # loses nothing, where an error would lose the alert and those sent with it
        return when.isoformat()


def format_line(alert: Alert, runbook_base: str = "") -> str:
    """One readable line: when, state, alert name, severity, the other labels, the
    summary, and the runbook link (relative links resolved against ``runbook_base``).
    Each text the alert brings is written through ``printable``."""
    when = alert.endsAt if alert.status is AlertStatus.RESOLVED and alert.endsAt else alert.startsAt
    # which scrape target raised it is plumbing; the rule's own labels say what is wrong
    labels = {k: v for k, v in alert.labels.items() if k not in ("instance", "job")}
    name = labels.pop("alertname", "(unnamed alert)")
    severity = labels.pop("severity", "none")
    others = " ".join(f"{printable(k)}={printable(v)}" for k, v in sorted(labels.items()))
    summary = alert.annotations.get("summary", "").strip() or "(no summary)"
    runbook = alert.annotations.get("runbook_url", "")
    if runbook and runbook_base and "://" not in runbook and not runbook.startswith("/"):
        runbook = f"{runbook_base.rstrip('/')}/{runbook}"
    parts = [
        _timestamp(when),
        alert.status.value.upper(),
        printable(name),
        f"severity={printable(severity)}",
    ]
    if others:
        parts.append(others)
    line = " ".join(parts) + f": {printable(summary)}"
    return line + (f" | runbook: {printable(runbook)}" if runbook else "")


class NotificationLog:
    """Writes a line for each alert whose state changed since the last notification."""

    def __init__(self, path: Path, runbook_base: str = "", echo: TextIO | None = None) -> None:
        self.path = path
        self.runbook_base = runbook_base
        self.echo = echo
        self._seen: dict[str, tuple[AlertStatus, datetime]] = {}
        self._lock = threading.Lock()

    def record(self, notification: Notification) -> list[str]:
        """Append the lines for ``notification``'s state changes; return them.

        Raises ``NotificationLogUnwritable`` when the file cannot take them; nothing is
        then taken as seen, so the same notification sent again writes them."""
        with self._lock:
            changes: dict[str, tuple[AlertStatus, datetime]] = {}
            lines = []
            for alert in notification.alerts:
                key = alert.fingerprint or json.dumps(alert.labels, sort_keys=True)
                state = (alert.status, alert.startsAt)
                if self._seen.get(key) == state or changes.get(key) == state:
                    continue  # a repeat of a group that changed elsewhere, or a reminder
                changes[key] = state
                lines.append(format_line(alert, self.runbook_base))
            if lines:
                self._append(lines)
            self._seen.update(changes)
            if self.echo is not None:
                for line in lines:
                    print(f"notification: {line}", file=self.echo, flush=True)
            return lines

    def _append(self, lines: list[str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write("".join(line + "\n" for line in lines))
        except OSError as exc:
            error = NotificationLogUnwritable(
                f"cannot append to {self.path}: {exc.strerror or exc}; "
                "the notification is written when it is sent again"
            )
            if self.echo is not None:
                print(f"notification sink: {error.message}", file=self.echo, flush=True)
            raise error from exc


def _problem(error: ErrorDetails) -> str:
    """pydantic's text for one error, without the "Value error, " it puts before ours."""
    if error["type"] == "value_error" and "ctx" in error:
        return printable(str(error["ctx"]["error"]))
    return printable(error["msg"])


def parse_notification(body: bytes) -> Notification:
    """``body`` as a notification, or ``BadRequest`` naming each field in one line
    (pydantic's own text spans lines and links to its documentation)."""
    try:
        return Notification.model_validate_json(body)
    except ValidationError as exc:
        problems = [
            FieldProblem(".".join(str(part) for part in error["loc"]) or "body", _problem(error))
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise BadRequest("not an Alertmanager notification", details=problems) from exc


def make_server(host: str, port: int, path: str, log: NotificationLog) -> ThreadingHTTPServer:
    """An HTTP server taking Alertmanager's POSTs on ``path``; ``GET /healthz`` answers
    when it is up. Call ``serve_forever()``."""
    allowed = {path: ("POST",), HEALTH_PATH: ("GET", "HEAD")}

    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_SECONDS

        def _route(self) -> None:
            """Answer ``self.command`` on ``self.path``: 404 for a path the sink does
            not serve, 405 for a method the path does not take."""
            methods = allowed.get(self.path)
            try:
                if methods is None:
                    raise NotFound(f"no such path: {self.path}")
                if self.command not in methods:
                    raise MethodNotAllowed(
                        f"{self.path} takes {' and '.join(methods)}, not {self.command}"
                    )
                if self.command == "POST":
                    written = log.record(parse_notification(self._body()))
                    self._answer(200, {"written": len(written)})
                else:
                    self._answer(200, {"status": "ok", "log": str(log.path)})
            except MethodNotAllowed as exc:
                self._answer(exc.status_code, exc.as_answer(), {"Allow": ", ".join(methods)})
            except WatchkeeperError as exc:
                self._answer(exc.status_code, exc.as_answer(), exc.headers)

        def _body(self) -> bytes:
            encoding = self.headers.get("Content-Encoding")
            if encoding is not None and any(
                coding.strip().lower() != "identity" for coding in encoding.split(",")
            ):
                raise UnsupportedContentEncoding(
                    f"Content-Encoding {encoding[:40]!r} is not supported; "
                    "send the notification unencoded"
                )
            length = self.headers.get("Content-Length", "0").strip()
            if not _LENGTH.fullmatch(length):
                raise BadRequest(f"Content-Length must be a number of bytes, not {length!r}")
            if int(length) > MAX_BODY_BYTES:
                raise PayloadTooLarge(
                    f"a notification is at most {MAX_BODY_BYTES} bytes; this one has {length}"
                )
            try:
                return self.rfile.read(int(length))
            except TimeoutError as exc:
                raise RequestTimeout(
                    f"the body's {length} bytes did not arrive in {READ_TIMEOUT_SECONDS:g} s"
                ) from exc

        def _answer(
            self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if getattr(self, "command", None) != "HEAD":
                    self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the client went away: no one to tell

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """What http.server refuses itself (a malformed request line, headers too
            long, a method HTTP does not define) in the same JSON shape, not its HTML."""
            self.close_connection = True
            status = HTTPStatus(code)
            text = message or status.phrase
            error = {
                "code": status.phrase.lower().replace(" ", "_").replace("-", "_"),
                "message": text,
            }
            self._answer(code, {"error": error})

        def log_message(self, format: str, *args: Any) -> None:
            """The notification log is the record; access lines would only repeat it."""

    # http.server dispatches on do_<METHOD>; each method HTTP defines is routed, so that
    # one a path does not take is a 405 rather than http.server's HTML 501
    for method in _METHODS:
        setattr(Handler, f"do_{method}", Handler._route)
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
