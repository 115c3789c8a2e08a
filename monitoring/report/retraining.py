"""Retraining in a period: the requests the trigger (or a person) made, and the runs
that answered them, with each run's verdict on its candidate."""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

from monitoring.report.queries import within
from monitoring.report.records import Period, RetrainRequest, RetrainRun
from watchkeeper.db.tables import retrain_requests, retrain_runs


def read_requests(engine: sa.Engine, period: Period) -> tuple[RetrainRequest, ...]:
    conditions = within(period, retrain_requests.c.requested_at)
    if period.model_version is not None:
        conditions.append(retrain_requests.c.model_version == period.model_version)
    query = (
        sa.select(retrain_requests)
        .where(*conditions)
        .order_by(retrain_requests.c.requested_at, retrain_requests.c.id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return tuple(
        RetrainRequest(
            id=int(row.id),
            requested_at=row.requested_at,
            trigger=row.trigger,
            reason=row.reason,
            model_version=row.model_version,
            status=row.status,
            run_id=None if row.run_id is None else int(row.run_id),
        )
        for row in rows
    )


def read_runs(engine: sa.Engine, period: Period) -> tuple[RetrainRun, ...]:
    conditions = within(period, retrain_runs.c.started_at)
    if period.model_version is not None:
        conditions.append(
            sa.or_(
                retrain_runs.c.champion_version == period.model_version,
                retrain_runs.c.candidate_version == period.model_version,
            )
        )
    query = (
        sa.select(retrain_runs)
        .where(*conditions)
        .order_by(retrain_runs.c.started_at, retrain_runs.c.id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return tuple(
        RetrainRun(
            id=int(row.id),
            started_at=row.started_at,
            finished_at=row.finished_at,
            trigger=row.trigger,
            reason=row.reason,
            champion_version=row.champion_version,
            candidate_version=row.candidate_version,
            outcome=row.outcome,
            decision_reason=row.decision_reason,
            champion_mae=_metric(row.champion_metrics, "mae"),
            candidate_mae=_metric(row.candidate_metrics, "mae"),
            champion_log_loss=_metric(row.champion_metrics, "log_loss"),
            candidate_log_loss=_metric(row.candidate_metrics, "log_loss"),
            champion_accuracy=_metric(row.champion_metrics, "accuracy"),
            candidate_accuracy=_metric(row.candidate_metrics, "accuracy"),
        )
        for row in rows
    )


def _metric(metrics: Any, name: str) -> float | None:
    value = metrics.get(name) if isinstance(metrics, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
