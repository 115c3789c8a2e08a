"""SQL conditions that restrict a query to a report's period and model version."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from monitoring.report.records import Period
from watchkeeper.db.planner_hints import unindexed


def within(period: Period, moment: sa.ColumnElement[Any]) -> list[sa.ColumnElement[bool]]:
    """Rows whose ``moment`` falls in the period."""
    conditions = []
    if period.since is not None:
        conditions.append(moment >= period.since)
    if period.until is not None:
        conditions.append(moment <= period.until)
    return conditions


def overlapping(
    period: Period, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]
) -> list[sa.ColumnElement[bool]]:
    """Rows spanning ``start``–``end`` that overlap the period: a window that began
    before ``since`` and ended after it is part of the story."""
    conditions = []
    if period.since is not None:
        conditions.append(end >= period.since)
    if period.until is not None:
        conditions.append(start <= period.until)
    return conditions


def of_version(period: Period, version: sa.ColumnElement[Any]) -> list[sa.ColumnElement[bool]]:
    return [] if period.model_version is None else [version == period.model_version]


def of_version_in_period(
    period: Period, version: sa.ColumnElement[Any]
) -> list[sa.ColumnElement[bool]]:
    """:func:`of_version` for a query that also filters on :func:`within` by an indexed
    time: with a start, the rows are read from the time's index and only checked for the
    version. SQLite without statistics (as served) would read every row the version
    ever logged instead, which grows with the log; this way a version's period costs at
    most what the whole period does (SQLite's own plan with statistics)."""
    if period.since is None:
        return of_version(period, version)
    return of_version(period, unindexed(version))
