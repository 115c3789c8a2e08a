"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response

from serving.api_models import (
    DatabaseCheck,
    Health,
    ModelCheck,
    PredictionLogCheck,
    Readiness,
    ReadinessChecks,
)
from serving.database_status import DatabaseState
from serving.prediction_log import PredictionLog
from serving.responses import json_response
from serving.services import services
from watchkeeper.db.schema_check import SchemaState

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers.

    The process answers; nothing else is checked (a liveness probe must not fail
    because a dependency is down). ``thread_pools`` is the largest numeric thread pool
    of each kind as a request thread sees it (``WATCHKEEPER_NUMERIC_THREADS``)."""
    from watchkeeper.threads import thread_pools

    return json_response(Health(thread_pools=thread_pools()).model_dump())


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: a model is loaded and the database schema is current.

    Ready when a model is loaded, the log writer runs, the worker's journal accepts
    entries (it exists, is not at its size limit and its disk takes writes) and the
    database schema is not known to be another than the code's (by the background
    check, or by the writer's, which it does before storing anything: ``pending`` while
    the database has not answered since the worker started). Never touches the database: it
    reports the last background check (:mod:`serving.database_status`), so it answers at
    once whatever the database does.

    An unreachable database does not make the server unready: predictions go on and
    their entries wait in the journal on local disk. Failing readiness instead would
    take every replica out of its load balancer during a database outage. Error texts
    stay in the server's log: this endpoint is unauthenticated.

    A worker serving another version than ``CURRENT`` names, because that one would
    not load (:attr:`ModelStore.fallback`), is ``degraded`` but still answers 200: it
    serves good predictions from a version that was in production, and every replica
    would fall back alike, so a 503 here would turn one bad promotion into an outage
    of the whole service. ``watchkeeper_model_fallback`` and its alert tell the
    operator instead.
    """
    store = services().model_store
    loaded = store.loaded
    fallback = store.fallback
    model = (
        ModelCheck(ok=True, version=loaded.version)
        if loaded is not None
        else ModelCheck(ok=False, error=store.last_error or "no model loaded")
    )
    degraded = loaded is not None and fallback is not None
    if degraded:
        assert fallback is not None
        model = model.model_copy(
            update={
                "degraded": True,
                "wanted": fallback.wanted,
                "reload_error": fallback.describe(),
            }
        )
    checks = ReadinessChecks(
        model=model,
        database=_database_check(services().database_probe.state, services().schema_revision),
    )
    log: PredictionLog | None = services().prediction_log
    if log is not None:
        status = log.status()
        checks = checks.model_copy(
            update={
                "prediction_log": PredictionLogCheck(
                    ok=status.writer_alive
                    and not status.journal_full
                    and status.journal_writable
                    and status.schema is not SchemaState.MISMATCH,
                    writer_alive=status.writer_alive,
                    writer_restarts=status.writer_restarts,
                    database_up=status.database_up,
                    queue_depth=status.queue_depth,
                    backlog_bytes=status.backlog_bytes,
                    stalled_seconds=round(status.stalled_seconds, 3),
                    journal_full=status.journal_full,
                    journal_writable=status.journal_writable,
                    schema_state=status.schema.value,
                )
            }
        )
    ready = checks.ok
    readiness = Readiness(
        status="not_ready" if not ready else "degraded" if degraded else "ready", checks=checks
    )
    return json_response(readiness.body(), 200 if ready else 503)


def _database_check(state: DatabaseState, expected: str) -> DatabaseCheck:
    age = state.age()
    checked = None if age is None else round(age, 3)
    if state.reachable and state.revision != expected:
        return DatabaseCheck(
            ok=False,
            reachable=state.reachable,
            checked_seconds_ago=checked,
            error=f"schema at {state.revision}, needs {expected}: run migrations",
        )
    return DatabaseCheck(ok=True, reachable=state.reachable, checked_seconds_ago=checked)
