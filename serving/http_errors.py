"""One JSON error shape for every failure a client can see.

``{"error": {"code", "message", "details": [{"field", "problem"}]}, "request_id"}``

Our own errors carry their status and code; Werkzeug's (routing, body limits, an
unhandled exception turned into a 500) and gunicorn's (a body it cannot parse, 400)
go through the same shape with the codes the README documents, never Werkzeug's HTML
page or its names.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException

from serving.responses import json_response
from watchkeeper.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    WatchkeeperError,
)

log = logging.getLogger(__name__)

INTERNAL_ERROR = {"code": "internal_error", "message": "internal server error; see server logs"}
# Werkzeug statuses whose code is one of ours; others get Werkzeug's name as a slug
# (``not_found``, ``method_not_allowed``, ...).
_CODES = {
    400: BadRequest.code,
    413: PayloadTooLarge.code,
    415: UnsupportedMediaType.code,
}


def _error_response(status: int, error: dict) -> Response:
    g.error = error
    return json_response({"error": error, "request_id": g.get("request_id")}, status)


def error_response(exc: WatchkeeperError) -> Response:
    """The JSON error response for ``exc``, with the headers its status calls for, for
    code that must answer an error after the view has run (the error handlers only see
    exceptions a view raises)."""
    response = _error_response(exc.status_code, exc.as_dict())
    response.headers.extend(exc.headers)
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(WatchkeeperError)
    def _watchkeeper_error(exc: WatchkeeperError) -> Response:
        if exc.status_code >= 500 and exc.__cause__ is not None:
            log.warning("request %s: %s", g.get("request_id"), exc.message, exc_info=exc.__cause__)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 500:
            # Flask logged the original exception when it made this 500.
            return _error_response(status, dict(INTERNAL_ERROR))
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            return _error_response(status, PayloadTooLarge.body_over(limit).as_dict())
        code = _CODES.get(status) or (exc.name or "error").lower().replace(" ", "_")
        response = _error_response(status, {"code": code, "message": exc.description or exc.name})
        allow = exc.get_response().headers.get("Allow")
        if status == 405 and allow:
            response.headers["Allow"] = allow
        return response

    @app.errorhandler(ParseException)
    def _unparsable(exc: ParseException) -> Response:
        # gunicorn parses a body as the app reads it: what it refuses there is the
        # client's mistake, wherever the app read it (serving.json_body wraps it too).
        g.body_unreadable = True
        log.info("request %s: gunicorn refused the request: %s", g.get("request_id"), exc)
        error = BadRequest(f"malformed request: {str(exc)[:200] or type(exc).__name__}")
        return error_response(error)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in request %s", g.get("request_id"))
        return _error_response(500, dict(INTERNAL_ERROR))
