"""Operator endpoints: queue a retrain, roll the model back, and the Alertmanager
webhook. All need the admin bearer token; none runs a job in the request."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response

from serving.alerts import retrain_alerts
from serving.api_models import AlertOutcome, Queued, RolledBack
from serving.auth import require_admin
from serving.json_body import json_request_body, parse_json, require_json_type
from serving.responses import json_response
from serving.services import services
from watchkeeper import retrain_queue
from watchkeeper.current_pointer import UnreadableCurrent
from watchkeeper.errors import (
    BadRequest,
    FieldProblem,
    RegistryError,
    RollbackRefused,
)
from watchkeeper.registry import CurrentMoved

bp = Blueprint("admin", __name__)


def _json_body() -> dict:
    """The optional JSON body: none at all is ``{}``; one sent must be declared JSON
    (415 otherwise, as on every endpoint that reads one)."""
    raw = json_request_body()
    if not raw:
        return {}
    require_json_type()
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


@bp.post("/admin/retrain")
def retrain() -> Response:
    """Queue a retraining job (the worker runs it).

    The body is optional; ``reason`` (a string) is stored with the request."""
    require_admin()
    body = _json_body()
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        # an empty object or list once passed for "no reason" and was queued
        raise BadRequest(
            "reason must be a string", details=[FieldProblem("reason", "must be a string")]
        )
    if reason is not None and "\x00" in reason:  # PostgreSQL's text cannot hold it
        raise BadRequest(
            "reason must not contain a NUL character",
            details=[FieldProblem("reason", "must not contain a NUL character (U+0000)")],
        )
    reason = reason or "requested over HTTP"
    with services().request_database.work("the retrain request") as engine:
        request_id = retrain_queue.enqueue(engine, trigger="manual", reason=reason[:1000])
    return json_response(Queued(request_id=request_id).model_dump(), 202)


@bp.post("/admin/rollback")
def rollback() -> Response:
    """Point current at a version (default: the previous usable one).

    A version retraining rejected, or that failed, is refused (409) unless ``force``
    is true. A rollback to a named version also repairs a ``CURRENT`` that cannot be
    read (``previous`` is then null). One to the version current already changes
    nothing served (``changed`` false), :meth:`ModelRegistry.rollback`."""
    require_admin()
    body = _json_body()
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest(
            "version must be a string like 'v3'",
            details=[FieldProblem("version", "must be a string like 'v3'")],
        )
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest(
            "force must be true or false", details=[FieldProblem("force", "must be a boolean")]
        )
    store = services().model_store
    try:
        previous, current = store.registry.rollback(version, force=force)
    except (RegistryError, RollbackRefused) as exc:
        # the named version is the problem (malformed, unknown, unfit, will not load),
        # unless CURRENT moved meanwhile or cannot be read
        about_version = version is not None and not isinstance(
            exc, CurrentMoved | UnreadableCurrent
        )
        details = [FieldProblem("version", exc.message)] if about_version else None
        raise RollbackRefused(exc.message, details=details) from exc
    store.refresh()
    answer = RolledBack(previous=previous, current=current, changed=previous != current)
    return json_response(answer.model_dump())


@bp.post("/alerts")
def alerts() -> Response:
    """Alertmanager webhook: configured firing alerts queue one retrain per episode;
    repeats are acknowledged as duplicates.

    Alerts about another model version than the served one are ignored."""
    require_admin()
    settings = services().settings
    payload = _json_body()
    alerts = retrain_alerts(payload, settings.alerting.retrain_alert_names)
    if not alerts.firing:
        return _outcome("ignored", "no firing alert asks for a retrain")
    loaded = services().model_store.loaded
    served = loaded.version if loaded is not None else None
    about = {a.model_version for a in alerts.firing} - {None}
    if served is not None and about and served not in about:
        # alerts that outlived the model they were about: retraining v2 for v1's drift
        # would judge the wrong model
        return _outcome(
            "ignored", f"the alerts are about model {', '.join(sorted(about))}; {served} is served"
        )
    names = sorted({a.name for a in alerts.firing})
    with services().request_database.work("the retrain request") as engine:
        request_id = retrain_queue.enqueue(
            engine,
            trigger="alertmanager",
            reason=f"alerts firing: {', '.join(names)}",
            evidence=alerts.evidence(),
            dedupe_key=alerts.dedupe_key,
            model_version=served,
        )
    if request_id is None:
        return _outcome("duplicate", "this notification was seen before")
    return json_response(Queued(request_id=request_id).model_dump(), 202)


def _outcome(status: Literal["ignored", "duplicate"], reason: str) -> Response:
    return json_response(AlertOutcome(status=status, reason=reason).model_dump())
