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
from pydantic import ValidationError

from monitoring.check_details import (
    AccuracyDetails,
    AnyDetails,
    CheckError,
    ClassAccuracyDetails,
    DataQualityDetails,
    EstimateDetails,
    FeatureDriftDetails,
    FeatureRates,
    OodDetails,
)
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
from monitoring.window_result import Check as CheckName
from monitoring.window_result import parse_details
from watchkeeper.db.tables import window_results

ResultRow = sa.Row[Any]
"""A ``window_results`` row as stored. Its details are read into the check's typed
record (:mod:`monitoring.check_details`, which reads rows of older monitors too); the
report reads leniently, unlike a restarted monitor
(:meth:`monitoring.window_result.WindowResult.from_row`): details that fit no record
leave that row's figures out of the page, and the rest is drawn."""

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
            if kind is not None and _is_classifier(_details(row)):
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


def _details(row: ResultRow | None) -> AnyDetails | None:
    """The row's details as their record; None for a row that has none that fits."""
    if row is None or not isinstance(row.details, Mapping):
        return None
    try:
        return parse_details(CheckName(row.detector), row.details)
    except (ValueError, ValidationError):  # an unknown check, or details of another shape
        return None


def _is_classifier(details: AnyDetails | None) -> bool:
    if isinstance(details, EstimateDetails):
        return details.is_classifier
    return isinstance(details, ClassAccuracyDetails)


def _number(value: Any) -> float | None:
    """A stored number, or None for anything that is not a finite one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _check(row: ResultRow | None) -> Check:
    if row is None:
        return Check(Verdict.NO_VERDICT, None)
    details = _details(row)
    if isinstance(details, CheckError):
        return Check(Verdict.ERROR, None, details.error)
    verdict = {True: Verdict.DRIFT, False: Verdict.NO_DRIFT}.get(row.is_drift, Verdict.NO_VERDICT)
    return Check(verdict, _number(row.score))


def _worst(features: FeatureRates, reference: FeatureRates, rate: str) -> RateOfWorst:
    worst = RateOfWorst(0.0, 0.0, None)
    for name, rates in features.items():
        value = _number(rates.get(rate))
        if value is None:  # the other kind of feature's rate
            continue
        base = _number(reference.get(name, {}).get(rate)) or 0.0
        candidate = RateOfWorst(value, base, name)
        if candidate.excess > worst.excess:
            worst = candidate
    return worst


def _quality(row: ResultRow | None) -> Quality | None:
    details = _details(row)
    if row is None or not isinstance(details, DataQualityDetails):
        return None
    features, reference = details.features, details.reference
    return Quality(
        rejected_rate=_number(row.score) or 0.0,
        missing=_worst(features, reference, "missing_rate"),
        out_of_range=_worst(features, reference, "out_of_range_rate"),
        unseen_category=_worst(features, reference, "unseen_category_rate"),
    )


def _summary(rows: dict[str, ResultRow]) -> WindowSummary:
    any_row = next(iter(rows.values()))
    ood = rows.get("ood")
    ood_details = _details(ood)
    drift = rows.get("feature_drift")
    drift_details = _details(drift)
    drifted = drift_details.drifted if isinstance(drift_details, FeatureDriftDetails) else []
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
        drifted_features=tuple(drifted),
        ood_fraction=(
            _number(ood.score)
            if ood is not None and not isinstance(ood_details, CheckError)
            else None
        ),
        ood_threshold=(
            _number(ood_details.threshold) if isinstance(ood_details, OodDetails) else None
        ),
        quality=_quality(rows.get("data_quality")),
    )


def _feature_tests(row: ResultRow | None) -> FeatureTests | None:
    if row is None or row.is_drift is None:
        return None
    details = _details(row)
    if not isinstance(details, FeatureDriftDetails):
        return None
    p_values = _numbers(details.p_values)
    threshold = _number(details.threshold)
    if not p_values or threshold is None:
        return None
    return FeatureTests(
        window_id=row.window_id,
        model_version=row.model_version,
        first_seq=int(row.first_seq),
        last_seq=int(row.last_seq),
        p_values=p_values,
        statistics=_numbers(details.distances),
        threshold=threshold,
        drifted=tuple(details.drifted),
    )


def _numbers(value: Mapping[str, float]) -> dict[str, float]:
    """The finite figures of ``value``."""
    return {k: number for k, v in value.items() if (number := _number(v)) is not None}


def _accuracy_point(kind: AccuracyKind, row: ResultRow) -> AccuracyPoint | None:
    details = _details(row)
    # a realised figure's details; an estimate's hold neither labels nor validation
    figures = details if isinstance(details, AccuracyDetails) else None
    mae = _number(row.score)
    if mae is None and figures is not None:
        mae = _number(figures.mae)
    if mae is None or isinstance(details, CheckError):  # an error, or nothing to draw
        return None
    return AccuracyPoint(
        kind=kind,
        model_version=row.model_version,
        started_at=row.started_at,
        ended_at=row.ended_at,
        mae=mae,
        labels=None if figures is None else figures.labels,
        validation_mae=None if figures is None else _number(figures.validation_mae),
    )


def _class_accuracy_point(kind: AccuracyKind, row: ResultRow) -> ClassAccuracyPoint | None:
    """A classifier's result: its score is the accuracy (estimated or realised)."""
    details = _details(row)
    accuracy = _number(row.score)
    if accuracy is None:  # an error result, or a window without an estimate
        return None
    realised = details if isinstance(details, ClassAccuracyDetails) else None
    figures = None
    if kind is not AccuracyKind.ESTIMATED and realised is not None:
        figures = ClassFigures(
            log_loss=realised.log_loss,
            brier=realised.brier,
            set_coverage=realised.set_coverage,
            set_size=realised.set_size,
            ece=realised.ece,
            recall=tuple(sorted(_numbers(realised.recall).items())),
            unknown_labels=realised.unknown_labels,
        )
    return ClassAccuracyPoint(
        kind=kind,
        model_version=row.model_version,
        window_id=row.window_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        accuracy=accuracy,
        labels=None if realised is None else realised.labels,
        validation_accuracy=None if realised is None else _number(realised.validation_accuracy),
        figures=figures,
    )
