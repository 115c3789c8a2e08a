"""The model versions a period involves, with their registry metadata and what they
did in the period: predictions made, labels received, realised MAE (a classifier:
realised accuracy)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from monitoring.report.queries import of_version_in_period, within
from monitoring.report.records import (
    AccuracyKind,
    AccuracyPoint,
    ClassAccuracyPoint,
    Period,
    VersionSummary,
    version_key,
)
from watchkeeper.db.planner_hints import unindexed
from watchkeeper.db.tables import requests
from watchkeeper.errors import WatchkeeperError
from watchkeeper.registry import ModelRegistry
from watchkeeper.task import Task

METRICS = ("mae", "rmse", "mape", "coverage")
CLASS_METRICS = ("accuracy", "log_loss", "brier", "set_coverage", "ece")


def predictions_by_version(engine: sa.Engine, period: Period) -> dict[str, int]:
    """Predictions made in the period, per version (counted by the database): the items
    of the requests that hold predictions, without expanding them one by one."""
    version = requests.c.model_version
    conditions = [
        requests.c.outputs.is_not(None),
        *within(period, requests.c.received_at),
        *of_version_in_period(period, version),
    ]
    items = sa.func.coalesce(sa.func.sum(requests.c.n_items), 0)
    if period.model_version is not None:  # one count: nothing to group (or sort)
        query = sa.select(items).where(*conditions)
        with engine.connect() as connection:
            n = int(connection.execute(query).scalar_one())
        return {period.model_version: n} if n else {}
    # from a start, the period's rows come from the time's index: SQLite without
    # statistics (as served) would rather walk the version's index for its order and
    # look up every row the log holds (queries.of_version_in_period)
    grouped = version if period.since is None else unindexed(version)
    query = sa.select(version, items).where(*conditions).group_by(grouped)
    with engine.connect() as connection:
        return {str(name): int(n) for name, n in connection.execute(query)}


def summarise(
    registry: ModelRegistry,
    period: Period,
    *,
    seen: Iterable[str],
    predicted: dict[str, int],
    accuracy: Iterable[AccuracyPoint],
    class_accuracy: Iterable[ClassAccuracyPoint] = (),
) -> tuple[VersionSummary, ...]:
    """One summary per version in ``seen`` (and in ``predicted``), oldest first."""
    names = set(seen) | set(predicted)
    if period.model_version is not None:
        names &= {period.model_version}
    realised: dict[str, list[AccuracyPoint]] = {}
    for point in accuracy:
        if point.kind is AccuracyKind.REALISED:
            realised.setdefault(point.model_version, []).append(point)
    right: dict[str, list[ClassAccuracyPoint]] = {}
    for class_point in class_accuracy:
        if class_point.kind is AccuracyKind.REALISED:
            right.setdefault(class_point.model_version, []).append(class_point)
    current = registry.current_version()
    return tuple(
        _summary(
            registry,
            name,
            current,
            predicted.get(name, 0),
            realised.get(name, []),
            right.get(name, []),
        )
        for name in sorted(names, key=version_key)
    )


def _summary(
    registry: ModelRegistry,
    name: str,
    current: str | None,
    predicted: int,
    points: list[AccuracyPoint],
    class_points: list[ClassAccuracyPoint],
) -> VersionSummary:
    labels = sum(p.labels or 0 for p in points) + sum(p.labels or 0 for p in class_points)
    weights = [(p.mae, p.labels or 1) for p in points]
    mae = sum(m * w for m, w in weights) / sum(w for _, w in weights) if weights else None
    class_weights = [(p.accuracy, p.labels or 1) for p in class_points]
    accuracy = (
        sum(a * w for a, w in class_weights) / sum(w for _, w in class_weights)
        if class_weights
        else None
    )
    try:
        record = registry.record(name)
    except WatchkeeperError:  # deleted from the registry, unreadable, or not a version name
        record = None
    if record is None:
        return VersionSummary(
            name,
            "not in the registry",
            None,
            name == current,
            False,
            {},
            None,
            predicted,
            labels,
            mae,
            task="classification" if class_points else "regression",
            realised_accuracy=accuracy,
        )
    task = "classification" if record.task is Task.CLASSIFICATION else "regression"
    keys = CLASS_METRICS if task == "classification" else METRICS
    return VersionSummary(
        version=name,
        status=record.status,
        created_at=_moment(record.created_at),
        is_current=name == current,
        in_registry=True,
        validation={k: float(v) for k in keys if _finite(v := getattr(record.metrics, k))},
        training_rows=record.training_window.rows,
        predictions=predicted,
        labels=labels,
        realised_mae=mae,
        task=task,
        realised_accuracy=accuracy,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
