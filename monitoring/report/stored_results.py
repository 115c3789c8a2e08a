"""The monitor's stored results (``window_results``) of a period, as typed records:
one summary per evaluation window, the accuracy points (realised from feedback, and
estimated without labels when the monitor stores them), and each window's per-feature
tests, which pick the drifted features to draw."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from monitoring.report.queries import of_version, overlapping
from monitoring.report.records import (
    AccuracyKind,
    AccuracyPoint,
    Check,
    ClassAccuracyPoint,
    ClassFigures,
    Period,
    Quality,
    RateOfWorst,
    Verdict,
    WindowSummary,
)
from watchkeeper.db.tables import window_results

ResultRow = sa.Row[Any]
"""A ``window_results`` row as stored. The report reads old and partial rows leniently
(a field it cannot read is left out of the page), unlike a restarted monitor, which
validates them (:meth:`monitoring.window_result.WindowResult.from_row`)."""

Details = Mapping[str, Any]
"""A row's ``details``: a JSON object of each check's own shape."""

PAGE = 2000
"""Result rows per query: memory stays bounded however long the period."""

ACCURACY_DETECTORS = {
    "accuracy": AccuracyKind.REALISED,
    "accuracy_rolling": AccuracyKind.ROLLING,
    "estimated_accuracy": AccuracyKind.ESTIMATED,
}
WINDOW_DETECTORS = (
    "data_quality",
    "ood",
    "feature_drift",
    "output_drift",
    "multivariate_drift",
)


@dataclass(frozen=True)
class FeatureTests:
    """One window's per-feature drift tests."""

    window_id: str
    model_version: str
    first_seq: int
    last_seq: int
    p_values: Mapping[str, float]
    statistics: Mapping[str, float]
    threshold: float
    drifted: tuple[str, ...]


@dataclass(frozen=True)
class StoredResults:
    windows: tuple[WindowSummary, ...]
    accuracy: tuple[AccuracyPoint, ...]
    feature_tests: tuple[FeatureTests, ...]
    class_accuracy: tuple[ClassAccuracyPoint, ...] = ()


def count(engine: sa.Engine, period: Period) -> int:
    """How many result rows :func:`read` will go through (for progress)."""
    query = sa.select(sa.func.count()).select_from(window_results).where(*_conditions(period))
    with engine.connect() as connection:
        return int(connection.execute(query).scalar() or 0)


def read(
    engine: sa.Engine, period: Period, *, advance: Callable[[int], None] | None = None
) -> StoredResults:
    """The period's results; ``advance(n)`` is called after each page of ``n`` rows."""
    by_window: dict[str, dict[str, ResultRow]] = {}
    accuracy: list[AccuracyPoint] = []
    class_accuracy: list[ClassAccuracyPoint] = []
    for page in _pages(engine, period):
        for row in page:
            kind = ACCURACY_DETECTORS.get(row.detector)
            if kind is not None and _details(row).get("task") == "classification":
                class_point = _class_accuracy_point(kind, row)
                if class_point is not None:
                    class_accuracy.append(class_point)
            elif kind is not None:
                point = _accuracy_point(kind, row)
                if point is not None:
                    accuracy.append(point)
            elif row.detector in WINDOW_DETECTORS:
                by_window.setdefault(row.window_id, {})[row.detector] = row
        if advance is not None:
            advance(len(page))
    windows = sorted(
        (_summary(rows) for rows in by_window.values()), key=lambda w: (w.started_at, w.first_seq)
    )
    tests = [
        tests
        for rows in by_window.values()
        if (tests := _feature_tests(rows.get("feature_drift"))) is not None
    ]
    accuracy.sort(key=lambda p: (p.ended_at, p.kind))
    class_accuracy.sort(key=lambda p: (p.ended_at, p.kind))
    return StoredResults(tuple(windows), tuple(accuracy), tuple(tests), tuple(class_accuracy))


def _conditions(period: Period) -> list[sa.ColumnElement[bool]]:
    return [
        *overlapping(period, window_results.c.started_at, window_results.c.ended_at),
        *of_version(period, window_results.c.model_version),
    ]


def _pages(engine: sa.Engine, period: Period) -> Iterator[Sequence[ResultRow]]:
    after = 0
    while True:
        query = (
            sa.select(window_results)
            .where(window_results.c.id > after, *_conditions(period))
            .order_by(window_results.c.id)
            .limit(PAGE)
        )
        with engine.connect() as connection:
            page = connection.execute(query).all()
        if not page:
            return
        yield page
        after = page[-1].id


def _details(row: ResultRow) -> Details:
    return row.details if isinstance(row.details, dict) else {}


def _number(value: Any) -> float | None:
    """A stored number, or None for anything that is not a finite one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _check(row: ResultRow | None) -> Check:
    if row is None:
        return Check(Verdict.NO_VERDICT, None)
    error = _details(row).get("error")
    if error is not None:
        return Check(Verdict.ERROR, None, str(error))
    verdict = {True: Verdict.DRIFT, False: Verdict.NO_DRIFT}.get(row.is_drift, Verdict.NO_VERDICT)
    return Check(verdict, _number(row.score))


def _worst(features: Any, reference: Any, rate: str) -> RateOfWorst:
    worst = RateOfWorst(0.0, 0.0, None)
    if not isinstance(features, dict):
        return worst
    reference = reference if isinstance(reference, dict) else {}
    for name, rates in features.items():
        value = _number(rates.get(rate)) if isinstance(rates, dict) else None
        if value is None:
            continue
        known = reference.get(name)
        base = (_number(known.get(rate)) if isinstance(known, dict) else None) or 0.0
        candidate = RateOfWorst(value, base, str(name))
        if candidate.excess > worst.excess:
            worst = candidate
    return worst


def _quality(row: ResultRow | None) -> Quality | None:
    if row is None or "error" in _details(row):
        return None
    details = _details(row)
    features, reference = details.get("features"), details.get("reference")
    return Quality(
        rejected_rate=_number(row.score) or 0.0,
        missing=_worst(features, reference, "missing_rate"),
        out_of_range=_worst(features, reference, "out_of_range_rate"),
        unseen_category=_worst(features, reference, "unseen_category_rate"),
    )


def _summary(rows: dict[str, ResultRow]) -> WindowSummary:
    any_row = next(iter(rows.values()))
    ood = rows.get("ood")
    ood_ok = ood is not None and "error" not in _details(ood)
    drift = rows.get("feature_drift")
    drifted = _details(drift).get("drifted", []) if drift is not None else []
    return WindowSummary(
        window_id=any_row.window_id,
        model_version=any_row.model_version,
        started_at=any_row.started_at,
        ended_at=any_row.ended_at,
        n_rows=int(any_row.n_rows),
        first_seq=int(any_row.first_seq),
        last_seq=int(any_row.last_seq),
        dataset_drift=_check(drift),
        output_drift=_check(rows.get("output_drift")),
        multivariate_drift=_check(rows.get("multivariate_drift")),
        drifted_features=tuple(str(f) for f in drifted) if isinstance(drifted, list) else (),
        ood_fraction=_number(ood.score) if ood_ok else None,
        ood_threshold=_number(_details(ood).get("threshold")) if ood_ok else None,
        quality=_quality(rows.get("data_quality")),
    )


def _feature_tests(row: ResultRow | None) -> FeatureTests | None:
    if row is None or row.is_drift is None:
        return None
    details = _details(row)
    p_values = _numbers(details.get("p_values"))
    threshold = _number(details.get("threshold"))
    if not p_values or threshold is None:
        return None
    drifted = details.get("drifted", [])
    return FeatureTests(
        window_id=row.window_id,
        model_version=row.model_version,
        first_seq=int(row.first_seq),
        last_seq=int(row.last_seq),
        p_values=p_values,
        statistics=_numbers(details.get("distances")),
        threshold=threshold,
        drifted=tuple(str(f) for f in drifted) if isinstance(drifted, list) else (),
    )


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): number for k, v in value.items() if (number := _number(v)) is not None}


def _accuracy_point(kind: AccuracyKind, row: ResultRow) -> AccuracyPoint | None:
    details = _details(row)
    mae = _number(row.score)
    if mae is None:
        mae = _number(details.get("mae"))
    if mae is None:  # an error result, or nothing to draw
        return None
    labels = details.get("labels")
    return AccuracyPoint(
        kind=kind,
        model_version=row.model_version,
        started_at=row.started_at,
        ended_at=row.ended_at,
        mae=mae,
        labels=int(labels) if isinstance(labels, int) else None,
        validation_mae=_number(details.get("validation_mae")),
    )


def _class_accuracy_point(kind: AccuracyKind, row: ResultRow) -> ClassAccuracyPoint | None:
    """A classifier's result: its score is the accuracy (estimated or realised)."""
    details = _details(row)
    accuracy = _number(row.score)
    if accuracy is None:  # an error result, or a window without an estimate
        return None
    labels = details.get("labels")
    figures = None
    if kind is not AccuracyKind.ESTIMATED:
        values = {
            key: _number(details.get(key))
            for key in ("log_loss", "brier", "set_coverage", "set_size", "ece")
        }
        if all(v is not None for v in values.values()):
            recall = _numbers(details.get("recall"))
            unknown = details.get("unknown_labels")
            figures = ClassFigures(
                log_loss=values["log_loss"] or 0.0,
                brier=values["brier"] or 0.0,
                set_coverage=values["set_coverage"] or 0.0,
                set_size=values["set_size"] or 0.0,
                ece=values["ece"] or 0.0,
                recall=tuple(sorted(recall.items())),
                unknown_labels=unknown if isinstance(unknown, int) else 0,
            )
    return ClassAccuracyPoint(
        kind=kind,
        model_version=row.model_version,
        window_id=row.window_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        accuracy=accuracy,
        labels=int(labels) if isinstance(labels, int) else None,
        validation_accuracy=_number(details.get("validation_accuracy")),
        figures=figures,
    )
