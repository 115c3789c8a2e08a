"""Liveness and readiness probes."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app

from serving.responses import json_response
from watchkeeper.db.migrate import current_revision

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers; nothing else is checked (a liveness probe must not fail
    because a dependency is down)."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when a model is loaded and the database schema is the one the code needs.

    An unreachable database does not make the server unready: predictions go on
    and their log entries are spilled to disk and replayed later. Failing readiness
    instead would take every replica out of its load balancer during a database
    outage. The check still reports ``reachable: false`` with the reason.
    """
    checks: dict[str, dict[str, object]] = {}
    store = current_app.extensions["watchkeeper.model_store"]
    loaded = store.loaded
    checks["model"] = (
        {"ok": True, "version": loaded.version}
        if loaded is not None
        else {"ok": False, "error": store.last_error or "no model loaded"}
    )
    if loaded is not None and store.last_error:
        checks["model"]["reload_error"] = store.last_error
    engine: sa.Engine = current_app.extensions["watchkeeper.engine"]
    try:
        revision = current_revision(engine)
        expected = current_app.extensions["watchkeeper.schema_revision"]
        checks["database"] = (
            {"ok": True}
            if revision == expected
            else {"ok": False, "error": f"schema at {revision}, needs {expected}: run migrations"}
        )
    except sa.exc.SQLAlchemyError as exc:
        checks["database"] = {
            "ok": True,
            "reachable": False,
            "error": str(exc.orig or exc).strip().splitlines()[0],
        }
    log = current_app.extensions["watchkeeper.prediction_log"]
    if log is not None:
        checks["prediction_log"] = {
            "ok": True,
            "queue_depth": log.queue_depth,
            "database_up": log.database_up,
        }
    ready = all(check["ok"] for check in checks.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503
    )
