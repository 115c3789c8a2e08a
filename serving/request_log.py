"""Per-request bookkeeping: request ids, HTTP metrics and prediction-log entries.

Runs around every request; for the endpoints in :data:`LOGGED_ENDPOINTS` it hands
the prediction log one entry per request, accepted or rejected.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, current_app, g, request

from serving.log_entry import LogEntry
from serving.metrics import ServingMetrics
from serving.prediction_log import PredictionLog

LOGGED_ENDPOINTS = frozenset({"predict.predict", "feedback.feedback"})
REQUEST_ID_HEADER = "X-Request-ID"


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)


def _start() -> None:
    g.request_id = uuid.uuid4().hex
    g.received_at = datetime.now(UTC)
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    elapsed = time.perf_counter() - g.started
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics: ServingMetrics = current_app.extensions["watchkeeper.metrics"]
    metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
    metrics.latency.labels(endpoint).observe(elapsed)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    if request.endpoint in LOGGED_ENDPOINTS:
        log: PredictionLog | None = current_app.extensions["watchkeeper.prediction_log"]
        if log is not None:
            log.submit(_entry(endpoint, response.status_code, elapsed))
    return response


def _entry(endpoint: str, status: int, elapsed: float) -> LogEntry:
    entry = LogEntry(
        request_id=g.request_id,
        received_at=g.received_at,
        endpoint=endpoint,
        method=request.method,
        status_code=status,
        latency_seconds=elapsed,
        model_version=g.get("model_version"),
        error=g.get("error"),
        client_request_id=request.headers.get(REQUEST_ID_HEADER),
    )
    outcome = g.get("prediction_outcome")
    if outcome is not None and status < 400:
        validated, predicted = outcome
        entry.single = validated.single
        entry.features = validated.records
        entry.values, entry.lower, entry.upper = predicted.value, predicted.lower, predicted.upper
    elif status >= 400 and status != 413:
        limit = current_app.config["WATCHKEEPER_LOG_BODY_LIMIT"]
        body = request.get_data(cache=True)[:limit]
        entry.body = body.decode("utf-8", errors="replace") if body else None
    return entry
