"""Errors the serving worker answers itself, before a request reaches the app.

A request gunicorn cannot parse (431, 414, a bad ``Content-Length``, another major
HTTP version: 505...), one that is not received in full in time (408), one whose
head has a line ending in a bare LF (400), or a chunked body over the limit (413),
with malformed framing (400) or with a transfer coding under ``chunked`` (501) never
becomes a Flask request. These get the app's JSON error shape all the same
(:mod:`serving.http_errors`), an ``X-Request-ID``, a count in
``watchkeeper_http_requests_total`` with bounded labels, and, when the request line
names a logged path (``/predict``, ``/feedback``, whatever the method), an entry in
the prediction log with the client's own ``X-Request-ID``, as the app logs it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import orjson
from gunicorn.http import errors as gunicorn_errors

from serving.log_entry import LogEntry
from serving.prediction_log import JournalUnavailable
from serving.request_framing import RequestLine
from serving.request_log import (
    HTTP_METHODS,
    LOGGED_PATHS,
    REQUEST_ID_HEADER,
    UNMATCHED,
    route_label,
)
from serving.services import services_of
from watchkeeper.db.tables import requests
from watchkeeper.errors import BadRequest, Forbidden, PayloadTooLarge, WatchkeeperError

log = logging.getLogger(__name__)

_NOT_IMPLEMENTED = "not_implemented"
_VERSION_NOT_SUPPORTED = "http_version_not_supported"
_MAX_MESSAGE = 200
# The journal keeps no more of what the client chose than the log's columns do (the
# log store cuts the app's entries there too): a method can be as long as the request
# line, an X-Request-ID as a header field.
_MAX_METHOD = requests.c.method.type.length
_MAX_CLIENT_ID = requests.c.client_request_id.type.length


@dataclass(frozen=True, slots=True)
class WireError:
    status: int
    code: str
    message: str

    def response(self, request_id: str) -> bytes:
        """The whole HTTP/1.1 response; the connection is closed after it, since where
        the next request would start is unknown."""
        body = orjson.dumps(
            {"error": {"code": self.code, "message": self.message}, "request_id": request_id}
        )
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{REQUEST_ID_HEADER}: {request_id}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("ascii") + body


def request_timeout(seconds: float) -> WireError:
    return WireError(
        HTTPStatus.REQUEST_TIMEOUT,
        "request_timeout",
        f"the request was not received in full within {seconds:g} s",
    )


def payload_too_large(limit: int) -> WireError:
    return WireError(
        PayloadTooLarge.status_code,
        PayloadTooLarge.code,
        f"request body exceeds the limit of {limit} bytes",
    )


def malformed_framing(problem: str) -> WireError:
    return WireError(BadRequest.status_code, BadRequest.code, problem)


def unsupported_coding(problem: str) -> WireError:
    return WireError(HTTPStatus.NOT_IMPLEMENTED, _NOT_IMPLEMENTED, problem)


# gunicorn's parse errors, most specific first (several derive from one another).
_CLIENT_ERRORS: tuple[tuple[type[Exception], HTTPStatus, str], ...] = (
    (gunicorn_errors.LimitRequestLine, HTTPStatus.REQUEST_URI_TOO_LONG, "uri_too_long"),
    (
        gunicorn_errors.LimitRequestHeaders,
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
    ),
    (gunicorn_errors.UnsupportedTransferCoding, HTTPStatus.NOT_IMPLEMENTED, _NOT_IMPLEMENTED),
    (gunicorn_errors.ExpectationFailed, HTTPStatus.EXPECTATION_FAILED, "expectation_failed"),
    (gunicorn_errors.ForbiddenProxyRequest, HTTPStatus.FORBIDDEN, Forbidden.code),
    (gunicorn_errors.ParseException, HTTPStatus.BAD_REQUEST, BadRequest.code),
)


def classify(exc: BaseException) -> WireError:
    """The response for an exception gunicorn raised while reading a request; 500 for
    anything that is not the client's fault."""
    version = getattr(exc, "version", None)
    if isinstance(exc, gunicorn_errors.InvalidHTTPVersion) and isinstance(version, tuple):
        # A well-formed version of a major other than 1 (HTTP/2.0 or 0.9 in an HTTP/1
        # request line): 505, as RFC 9110 section 15.6.6 has it; gunicorn says 400,
        # as it does for a malformed version. A later 1.x is served as 1.1.
        status = HTTPStatus.HTTP_VERSION_NOT_SUPPORTED
        shown = ".".join(map(str, version))[:_MAX_MESSAGE]
        return WireError(
            status, _VERSION_NOT_SUPPORTED, f"HTTP/{shown} is not supported; send HTTP/1.1"
        )
    for kind, status, code in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            detail = str(exc)[:_MAX_MESSAGE]
            return WireError(status, code, f"{status.phrase.lower()}: {detail}")
    return WireError(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        WatchkeeperError.code,
        "internal server error; see server logs",
    )


def is_client_error(exc: BaseException) -> bool:
    return any(isinstance(exc, kind) for kind, _, _ in _CLIENT_ERRORS)


def report(
    app: Any,
    error: WireError,
    request_id: str,
    line: RequestLine | None,
    waited: float,
    *,
    client_request_id: str | None = None,
) -> None:
    """Count the response in the HTTP metrics and log it if it was meant for a logged
    path. ``app`` is the worker's WSGI app: reporting is skipped for anything
    that is not the Watchkeeper app (a test's stand-in, a middleware)."""
    built = services_of(app)
    if built is None:
        return
    rule = _route(app, line)
    method = line.method if line is not None and line.method in HTTP_METHODS else "other"
    built.metrics.requests.labels(rule, method, str(error.status)).inc()
    prediction_log = built.prediction_log
    # By the app's rule, not the raw path: the app serves ``//predict`` and
    # ``/%70redict`` as ``/predict``, and logs them so.
    if prediction_log is None or line is None or rule not in LOGGED_PATHS:
        return
    entry = LogEntry(
        request_id=request_id,
        received_at=datetime.now(UTC),
        endpoint=rule,
        method=line.method[:_MAX_METHOD],
        status_code=error.status,
        latency_seconds=waited,
        error={"code": error.code, "message": error.message},
        body=None,
        client_request_id=client_request_id and client_request_id[:_MAX_CLIENT_ID],
    )
    try:
        prediction_log.submit(entry)
    except JournalUnavailable as exc:
        # Counted by the log; the client is refused either way.
        log.warning("%s %s not logged: %s", error.status, rule, exc)


def _route(app: Any, line: RequestLine | None) -> str:
    """The app's rule for the request line, as the app's own request bookkeeping
    labels it (:func:`~serving.request_log.route_label`)."""
    if line is None:
        return UNMATCHED
    # percent-decoded, as the server hands the app its path: ``/%70redict`` is /predict
    path = unquote(line.path, errors="replace")
    return route_label(app.url_map.bind("localhost"), path, line.method)
