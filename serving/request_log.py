"""Per-request bookkeeping: request ids, HTTP metrics and prediction-log entries.

Runs around every request; for the paths in :data:`LOGGED_PATHS` it journals one
entry per request, accepted or rejected (by the view, by routing as a method the path
does not take, or an ``OPTIONS``), before the response leaves. A request
whose entry cannot be journaled is refused with 503: an answer that is not in the
log would break the log's promise.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from flask import Flask, Request, Response, current_app, g, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import MapAdapter

from serving.http_errors import error_response
from serving.log_body import cut_body, stored_body
from serving.log_entry import LogEntry, columnar_body_columns
from serving.metrics import ServingMetrics
from serving.prediction_log import JournalUnavailable, PredictionLog
from serving.request_framing import header_text
from serving.request_ids import new_request_id
from serving.services import services
from watchkeeper.classification import ClassPredictions
from watchkeeper.errors import LogUnavailable

# The views a log that is full or has no journal refuses (503) before they run.
LOGGED_ENDPOINTS = frozenset({"predict.predict", "feedback.feedback"})
# By path, not endpoint: routing leaves the endpoint empty for a method the path does
# not take, and such a request must be logged all the same.
LOGGED_PATHS = frozenset({"/predict", "/feedback"})
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
# Metric label values must come from a fixed set, never from the client.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The endpoint label of a request whose path matches no route."""


def route_label(adapter: MapAdapter, path: str, method: str) -> str:
    """The rule ``path`` matches, whatever ``method``: a method the route does not take
    (405) is counted under the route it was sent to. ``unmatched`` when none does, so
    the label is the app's rules and one value more."""
    try:
        rule, _ = adapter.match(path, method=method, return_rule=True)
    except MethodNotAllowed as exc:
        if not exc.valid_methods:
            return UNMATCHED
        try:
            rule, _ = adapter.match(path, method=exc.valid_methods[0], return_rule=True)
        except HTTPException:
            return UNMATCHED
    except HTTPException:  # not found, or a redirect (a trailing slash)
        return UNMATCHED
    return rule.rule


def init_app(app: Flask) -> None:
    # The app passed in rather than found through ``current_app`` (a context proxy):
    # each such look cost a request ~3 µs with its caches cold (bench/README.md).
    app.before_request(partial(_start, app))
    app.after_request(partial(_finish, app))


def _start(app: Flask) -> None:
    g.request_id = new_request_id()  # time-ordered: appends to the log's indexes
    g.received_at = datetime.now(UTC)
    g.started = time.perf_counter()
    log = services(app).prediction_log
    if log is not None and request.endpoint in LOGGED_ENDPOINTS:
        refusal = log.refusal
        if refusal is not None:
            raise LogUnavailable(refusal)


def _finish(app: Flask, response: Response) -> Response:
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else _unrouted_label()
    built = services(app)
    log = built.prediction_log
    if log is not None and request.path in LOGGED_PATHS:
        response = _journal(log, response, request.path)
    elapsed = time.perf_counter() - g.started
    metrics: ServingMetrics = built.metrics
    method = request.method if request.method in HTTP_METHODS else "other"
    metrics.requests.labels(endpoint, method, str(response.status_code)).inc()
    if _answered_by_view():
        metrics.latency.labels(endpoint).observe(elapsed)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    return response


def _answered_by_view() -> bool:
    """Whether the request's time is its route's latency: not an ``OPTIONS`` (a CORS
    preflight; Flask answers it without the view) nor a method the route does not take
    (405). Both are answered in microseconds: timed, a flood of them pulled a route's
    latency quantiles down and hid a slow view. They are counted all the same."""
    return request.method != "OPTIONS" and not isinstance(
        request.routing_exception, MethodNotAllowed
    )


def _unrouted_label() -> str:
    """The endpoint label of a request routing did not take (404, 405): only these pay
    for matching the path again."""
    if not isinstance(request.routing_exception, MethodNotAllowed):
        return UNMATCHED
    adapter = current_app.create_url_adapter(request)
    return UNMATCHED if adapter is None else route_label(adapter, request.path, request.method)


def _journal(log: PredictionLog, response: Response, endpoint: str) -> Response:
    try:
        log.submit(_entry(endpoint, response.status_code, time.perf_counter() - g.started))
    except JournalUnavailable:
        if response.status_code < 400:  # never acknowledge what is not logged
            return error_response(
                LogUnavailable("the prediction log cannot take this request; retry later")
            )
    return response


def _entry(endpoint: str, status: int, elapsed: float) -> LogEntry:
    # The request and ``g`` resolved once, ``g``'s values read from its dict and the
    # header from the WSGI environ: each read through Flask's context proxies costs
    # ~1 µs and ``request.headers`` ~4, on the request's own time (an entry took
    # 16-22 µs in process that way, 2.3-2.7 µs this way: bench/README.md). An accepted
    # request's entry is made with its predictions in one call, not made empty and
    # filled: its empty lists and the setting of each field cost the request's cold
    # caches more than the call (bench/README.md).
    req = request._get_current_object()
    values = vars(g._get_current_object())
    outcome = values.get("prediction_outcome")
    if outcome is not None and status < 400:
        return _accepted_entry(req, values, outcome, endpoint, status, elapsed)
    entry = LogEntry(
        request_id=values["request_id"],
        received_at=values["received_at"],
        endpoint=endpoint,
        method=req.method,
        status_code=status,
        latency_seconds=elapsed,
        model_version=values.get("model_version"),
        error=values.get("error"),
        client_request_id=_client_request_id(req.environ),
    )
    if status >= 400 and status != 413 and _body_readable():
        limit = current_app.config["WATCHKEEPER_LOG_BODY_LIMIT"]
        body = cut_body(_received_body(), limit)
        entry.body = stored_body(body) if body else None
    return entry


def _accepted_entry(
    req: Request,
    values: dict[str, Any],
    outcome: tuple[Any, Any],
    endpoint: str,
    status: int,
    elapsed: float,
) -> LogEntry:
    validated, predicted = outcome
    columns_json = None
    if not validated.single and not validated.categories and validated.as_sent:
        # A columnar JSON body's columns journaled as sent: cheaper than serialising
        # lists again. Not once its categories are coded: as values and codes they
        # are a fraction of the text for the journal, the writer and the database
        # to move (a journal line of 1,000 Ames rows: 564 KB as sent, 262 KB coded).
        columns_json = columnar_body_columns(req.get_data(cache=True))
    if isinstance(predicted, ClassPredictions):
        # a class is logged as its index (lower = upper = it) and its probabilities;
        # a row with a NaN or infinite probability has no class: NaN (the
        # probabilities JSON holds null for such a number)
        index = predicted.index.astype(np.float64)
        finite = predicted.finite
        if not finite.all():
            index[~finite] = np.nan
        value, lower, upper = index, index, index
        probabilities, all_finite = predicted.probabilities, False
    else:
        value, lower, upper = predicted.value, predicted.lower, predicted.upper
        probabilities = None
        all_finite = values.get("predictions_finite", False)  # checked by the route
    return LogEntry(
        request_id=values["request_id"],
        received_at=values["received_at"],
        endpoint=endpoint,
        method=req.method,
        status_code=status,
        latency_seconds=elapsed,
        model_version=values.get("model_version"),
        error=values.get("error"),
        client_request_id=_client_request_id(req.environ),
        single=validated.single,
        columns=validated.columns,
        values=value,
        lower=lower,
        upper=upper,
        ood=values.get("ood_scores"),
        probabilities=probabilities,
        columns_json=columns_json,
        finite=all_finite,
    )


def _client_request_id(environ: dict[str, Any]) -> str | None:
    # The header as WSGI gives it (``request.headers`` looks it up there): Latin-1
    # text, which encoding gives back as the bytes received.
    value = environ.get(_REQUEST_ID_ENVIRON)
    return None if value is None else header_text(value.encode("latin-1"))


def _received_body() -> bytes:
    """A rejected request's body as received. The view may have refused it unread
    (415, 405): gunicorn then parses a chunked body only here, and what it refuses
    is logged as no body rather than turning the answer into a 500."""
    try:
        return request.get_data(cache=True)
    except ParseException:
        return b""


def _body_readable() -> bool:
    """A body declared over the size limit is never read: a request refused for
    another reason first (415, 503) is logged without it rather than failing. Nor is
    one whose reading failed (malformed chunked framing): what was read of it is no
    body the client sent."""
    if g.get("body_unreadable", False):
        return False
    declared = request.content_length
    return declared is None or declared <= (current_app.config["MAX_CONTENT_LENGTH"] or declared)
