"""What the monitor computes for one check of one window: a :class:`WindowResult`, one
``window_results`` row.

The record holds the row's columns; ``details`` is the check's own typed record
(:mod:`monitoring.check_details`), chosen by the check. :meth:`WindowResult.to_row` and
:meth:`WindowResult.from_row` are the one conversion to and from the table; a stored
row, its details included, is validated as it is read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from monitoring.check_details import (
    AccuracyDetails,
    AnyDetails,
    CheckDetails,
    CheckError,
    ClassAccuracyDetails,
    DataQualityDetails,
    EstimateDetails,
    FeatureDriftDetails,
    FeatureRates,
    MultivariateDriftDetails,
    OodDetails,
    OutputDriftDetails,
)
from watchkeeper.errors import WatchkeeperError
from watchkeeper.record_problems import problems
from watchkeeper.task import Task

D = TypeVar("D", bound=CheckDetails)


class Check(StrEnum):
    """What the monitor computes; each is one ``window_results`` row per window (the
    table's ``detector`` column)."""

    DATA_QUALITY = "data_quality"
    OOD = "ood"
    FEATURE_DRIFT = "feature_drift"
    OUTPUT_DRIFT = "output_drift"
    MULTIVARIATE_DRIFT = "multivariate_drift"
    ESTIMATED_ACCURACY = "estimated_accuracy"
    """A window's MAE as the model's loss estimator expects it (a classifier: its
    accuracy as its confidence calibration expects it), before any label."""
    ACCURACY = "accuracy"
    """Of a window's labelled predictions, recomputed as late labels arrive."""
    ROLLING_ACCURACY = "accuracy_rolling"
    """Of a version's most recently predicted labelled predictions."""


class StoredResultError(WatchkeeperError):
    """A stored ``window_results`` row is not shaped as the monitor writes them."""

    code = "stored_result_invalid"


@dataclass(frozen=True)
class WindowResult:
    """One check's result for one window (or one rolling accuracy figure)."""

    window_id: str
    model_version: str
    check: Check
    first_seq: int
    last_seq: int
    n_rows: int
    started_at: datetime
    ended_at: datetime
    evaluated_at: datetime
    is_drift: bool | None
    """The check's verdict; None for checks that give none."""
    score: float | None
    """The check's figure; None when it has none (an error, no estimator)."""
    details: AnyDetails
    """The check's own figures; a :class:`CheckError` alone when it raised."""

    # -- reading the details -------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """Why the check raised on the window (such results are stored, never acted on)."""
        return self.details.error if isinstance(self.details, CheckError) else None

    @property
    def failed(self) -> bool:
        return isinstance(self.details, CheckError)

    @property
    def is_classifier(self) -> bool:
        """Whether the figures are a classifier's (its results carry ``task``)."""
        details = self.details
        if isinstance(details, EstimateDetails):
            return details.is_classifier
        return isinstance(details, ClassAccuracyDetails)

    def details_as(self, kind: type[D]) -> D | None:
        """The details if they are a ``kind`` (not an error, nor the other task's)."""
        return self.details if isinstance(self.details, kind) else None

    @property
    def rejected_rate(self) -> float:
        """Data quality: the share of requests rejected during the window."""
        quality = self.details_as(DataQualityDetails)
        return 0.0 if quality is None else quality.requests.rate

    @property
    def feature_rates(self) -> FeatureRates:
        """Data quality: each feature's missing, unseen and out-of-range rates."""
        quality = self.details_as(DataQualityDetails)
        return {} if quality is None else quality.features

    @property
    def reference_rates(self) -> FeatureRates:
        """Data quality: the same rates of the reference sample (older results lack
        them: empty)."""
        quality = self.details_as(DataQualityDetails)
        return {} if quality is None else quality.reference

    @property
    def drifted(self) -> list[str]:
        """Feature drift: the features that drifted."""
        drift = self.details_as(FeatureDriftDetails)
        return [] if drift is None else list(drift.drifted)

    @property
    def p_values(self) -> Mapping[str, float]:
        """Feature drift: each tested feature's p-value."""
        drift = self.details_as(FeatureDriftDetails)
        return {} if drift is None else drift.p_values

    @property
    def distances(self) -> Mapping[str, float]:
        """Feature drift: each tested feature's distance."""
        drift = self.details_as(FeatureDriftDetails)
        return {} if drift is None else drift.distances

    @property
    def recall(self) -> Mapping[str, float]:
        """A classifier's accuracy: the recall of each true class seen."""
        figures = self.details_as(ClassAccuracyDetails)
        return {} if figures is None else figures.recall

    # -- the table row ---------------------------------------------------------------------

    def to_row(self) -> dict[str, Any]:
        """The ``window_results`` row (without its id)."""
        return {
            "window_id": self.window_id,
            "model_version": self.model_version,
            "detector": self.check.value,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "n_rows": self.n_rows,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "evaluated_at": self.evaluated_at,
            "is_drift": self.is_drift,
            "score": self.score,
            "details": self.details.stored(),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WindowResult:
        """A stored row, validated: a missing or mistyped column raises one
        :class:`StoredResultError` that names it (and the row's window and check)."""
        where = f"stored window result {row.get('window_id')!r}/{row.get('detector')!r}"

        def column(name: str, kind: type | tuple[type, ...], *, nullable: bool = False) -> Any:
            if name not in row:
                raise StoredResultError(f"{where}: no {name!r}")
            value = row[name]
            if value is None and nullable:
                return None
            # a bool is an int to isinstance; a count or position must not be one
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise StoredResultError(
                    f"{where}: {name!r} is {type(value).__name__} {value!r:.60}, "
                    f"not {_kind_name(kind)}" + (" or null" if nullable else "")
                )
            return value

        detector = column("detector", str)
        try:
            check = Check(detector)
        except ValueError:
            raise StoredResultError(
                f"{where}: 'detector' {detector!r} is not a check of this monitor"
            ) from None
        score = column("score", (int, float), nullable=True)
        raw = column("details", Mapping)
        try:
            details = parse_details(check, raw)
        except ValidationError as exc:
            raise StoredResultError(
                f"{where}: 'details' is malformed: {problems(exc, whole='details')}"
            ) from None
        return cls(
            window_id=column("window_id", str),
            model_version=column("model_version", str),
            check=check,
            first_seq=column("first_seq", int),
            last_seq=column("last_seq", int),
            n_rows=column("n_rows", int),
            started_at=column("started_at", datetime),
            ended_at=column("ended_at", datetime),
            evaluated_at=column("evaluated_at", datetime),
            is_drift=column("is_drift", bool, nullable=True),
            score=None if score is None else float(score),
            details=details,
        )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("a mapping" if k is Mapping else k.__name__ for k in kinds)


_OF_CHECK: dict[Check, type[CheckDetails]] = {
    Check.DATA_QUALITY: DataQualityDetails,
    Check.OOD: OodDetails,
    Check.FEATURE_DRIFT: FeatureDriftDetails,
    Check.OUTPUT_DRIFT: OutputDriftDetails,
    Check.MULTIVARIATE_DRIFT: MultivariateDriftDetails,
    Check.ESTIMATED_ACCURACY: EstimateDetails,
    Check.ACCURACY: AccuracyDetails,
    Check.ROLLING_ACCURACY: AccuracyDetails,
}


def details_type(check: Check, raw: Mapping[str, Any]) -> type[CheckDetails]:
    """The record a stored details object of ``check`` is read into: an error's
    whatever the check, a classifier's figures by their ``task``, else the check's."""
    if "error" in raw:
        return CheckError
    if check in (Check.ACCURACY, Check.ROLLING_ACCURACY) and raw.get("task") == Task.CLASSIFICATION:
        return ClassAccuracyDetails
    return _OF_CHECK[check]


def parse_details(check: Check, raw: Mapping[str, Any]) -> AnyDetails:
    """``raw`` validated into its record (pydantic's ``ValidationError`` when it does
    not fit; the caller names the row)."""
    return details_type(check, raw).model_validate(raw)  # type: ignore[return-value]
