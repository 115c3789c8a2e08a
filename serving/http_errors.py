"""One JSON error shape for every failure a client can see.

``{"error": {"code", "message", "details": [{"field", "problem"}]}, "request_id"}``
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException

from serving.responses import json_response
from watchkeeper.errors import WatchkeeperError

log = logging.getLogger(__name__)


def _error_response(status: int, error: dict) -> Response:
    g.error = error
    return json_response({"error": error, "request_id": g.get("request_id")}, status)


def init_app(app: Flask) -> None:
    @app.errorhandler(WatchkeeperError)
    def _watchkeeper_error(exc: WatchkeeperError) -> Response:
        response = _error_response(exc.status_code, exc.as_dict())
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="watchkeeper"'
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body exceeds the limit of {limit} bytes"
        else:
            message = exc.description or exc.name
        response = _error_response(status, {"code": code, "message": message})
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in request %s", g.get("request_id"))
        return _error_response(
            500, {"code": "internal_error", "message": "internal server error; see server logs"}
        )
