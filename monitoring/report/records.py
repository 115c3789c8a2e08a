"""The typed records a report is made of: what gathering reads from the log, the
monitor's stored results and the registry, and what the charts and the page draw.

Everything here is plain data (no database rows, no frames), so the page can be
rendered, and tested, from records alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    """A drift check's outcome for one window."""

    DRIFT = "drift"
    NO_DRIFT = "no drift"
    NO_VERDICT = "no verdict"  # too few rows for a test, or the check was not run
    ERROR = "error"  # the check raised on this window; the reason is stored with it


class AccuracyKind(StrEnum):
    REALISED = "realised"  # a window's, from ground truth posted to /feedback
    ROLLING = "rolling"  # a version's most recent labels, what the retrain trigger judges
    ESTIMATED = "estimated"  # estimated without labels (detector "estimated_accuracy")


def version_key(name: str) -> tuple[int, str]:
    """Sorts model versions as numbers (v2 before v10); other names last."""
    digits = name[1:] if name.startswith("v") else ""
    return (int(digits), name) if digits.isdigit() else (1 << 62, name)


@dataclass(frozen=True)
class Period:
    """What a report covers: ``since`` ≤ time ≤ ``until`` (either open), one model
    version or all."""

    since: datetime | None = None
    until: datetime | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """The settings the monitor and the trigger judge by, drawn as lines."""

    p_value: float
    ood_fraction: float
    mae_degradation: float
    drift_windows: int
    accuracy_drop: float = 0.05
    """A classifier's: retrain below validation accuracy minus this (absolute)."""


@dataclass(frozen=True)
class RateOfWorst:
    """A data-quality rate of a window for the feature furthest above its reference
    rate: a feature that is often missing by nature (a pool's quality) is missing as
    often in the reference, and only the excess says that clients changed."""

    rate: float
    reference: float
    feature: str | None

    @property
    def excess(self) -> float:
        return max(self.rate - self.reference, 0.0)


@dataclass(frozen=True)
class Quality:
    rejected_rate: float
    """Share of /predict requests answered 4xx during the window."""
    missing: RateOfWorst
    out_of_range: RateOfWorst
    unseen_category: RateOfWorst


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    score: float | None
    """The check's number: drifted-feature share, p-value, OOD fraction…"""
    error: str | None = None


@dataclass(frozen=True)
class WindowSummary:
    """Every check of one evaluation window."""

    window_id: str
    model_version: str
    started_at: datetime
    ended_at: datetime
    n_rows: int
    first_seq: int
    last_seq: int
    dataset_drift: Check
    output_drift: Check
    multivariate_drift: Check
    drifted_features: tuple[str, ...]
    ood_fraction: float | None
    ood_threshold: float | None
    quality: Quality | None


@dataclass(frozen=True)
class AccuracyPoint:
    kind: AccuracyKind
    model_version: str
    started_at: datetime
    ended_at: datetime
    mae: float
    labels: int | None
    validation_mae: float | None


@dataclass(frozen=True)
class ClassFigures:
    """A classifier's figures from labels besides its accuracy."""

    log_loss: float
    brier: float
    set_coverage: float
    set_size: float
    ece: float
    recall: tuple[tuple[str, float], ...]
    """Per true class seen among the labels (label text, recall)."""
    unknown_labels: int = 0


@dataclass(frozen=True)
class ClassAccuracyPoint:
    """A classifier version's accuracy: a window's (realised), the rolling figure, or
    the label-free estimate (which has no ``figures``)."""

    kind: AccuracyKind
    model_version: str
    window_id: str
    started_at: datetime
    ended_at: datetime
    accuracy: float
    labels: int | None
    validation_accuracy: float | None
    figures: ClassFigures | None = None


@dataclass(frozen=True)
class RetrainRequest:
    id: int
    requested_at: datetime
    trigger: str
    reason: str
    model_version: str | None
    status: str
    run_id: int | None


@dataclass(frozen=True)
class RetrainRun:
    id: int
    started_at: datetime
    finished_at: datetime | None
    trigger: str
    reason: str
    champion_version: str | None
    candidate_version: str | None
    outcome: str
    decision_reason: str | None
    champion_mae: float | None
    candidate_mae: float | None
    champion_log_loss: float | None = None
    """Classifiers: the gate compares log-loss on the same holdout."""
    candidate_log_loss: float | None = None
    champion_accuracy: float | None = None
    candidate_accuracy: float | None = None

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    @property
    def is_classification(self) -> bool:
        """Judged by a classifier's gate (its figures are log-loss and accuracy)."""
        return self.champion_log_loss is not None or self.candidate_log_loss is not None

    @property
    def is_regression(self) -> bool:
        """Judged by a regression gate (its figure is the MAE)."""
        return self.champion_mae is not None or self.candidate_mae is not None


@dataclass(frozen=True)
class VersionSummary:
    """A model version seen in the period: its registry metadata and what it did."""

    version: str
    status: str
    created_at: datetime | None
    is_current: bool
    in_registry: bool
    validation: dict[str, float]
    """Validation metrics at registration (mae, rmse, mape, coverage when known)."""
    training_rows: int | None
    predictions: int
    """Predictions it made in the period."""
    labels: int
    realised_mae: float | None
    """Label-weighted MAE of its accuracy windows in the period."""
    task: str = "regression"
    realised_accuracy: float | None = None
    """A classifier's: label-weighted accuracy of its windows in the period."""


@dataclass(frozen=True)
class Histogram:
    """Reference and current samples of one feature over the same bins.

    Numeric features: ``edges`` has one more entry than the counts, and values beyond
    the outer edges are counted in the outer bins. Categorical features: ``labels``
    name the categories (the rarest pooled as "other"), ``edges`` is empty."""

    labels: tuple[str, ...]
    edges: tuple[float, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]
    reference_missing: int
    current_missing: int

    @property
    def reference_total(self) -> int:
        return sum(self.reference) + self.reference_missing

    @property
    def current_total(self) -> int:
        return sum(self.current) + self.current_missing


@dataclass(frozen=True)
class FeatureComparison:
    """A feature that drifted, shown in the window where its test was most certain."""

    feature: str
    numeric: bool
    test: str
    statistic: float
    p_value: float
    threshold: float
    """The corrected per-feature p-value threshold of that window."""
    window_id: str
    model_version: str
    drifted_windows: int
    windows: int
    """Windows of this version in the period with a feature-drift verdict."""
    histogram: Histogram


@dataclass(frozen=True)
class UnusualValue:
    """One numeric value of an OOD row, against the reference's 1st–99th percentile."""

    feature: str
    value: float
    reference_low: float
    reference_high: float


@dataclass(frozen=True)
class OodRow:
    seq: int
    prediction_id: str
    created_at: datetime
    model_version: str
    score: float
    threshold: float | None
    prediction: float
    unusual: tuple[UnusualValue, ...]
    """The numeric values furthest outside the reference's range, furthest first."""
    features: tuple[tuple[str, str], ...]
    """Every feature of the row, as shown (name, value)."""
    predicted_class: str | None = None
    """A classifier's row: the label its class index stands for."""


@dataclass(frozen=True)
class ReportData:
    period: Period
    generated_at: datetime
    thresholds: Thresholds
    predictions: int
    windows: tuple[WindowSummary, ...] = ()
    accuracy: tuple[AccuracyPoint, ...] = ()
    """A regression version's MAE points."""
    class_accuracy: tuple[ClassAccuracyPoint, ...] = ()
    """A classifier version's accuracy points."""
    requests: tuple[RetrainRequest, ...] = ()
    runs: tuple[RetrainRun, ...] = ()
    versions: tuple[VersionSummary, ...] = ()
    drifted_features: tuple[FeatureComparison, ...] = ()
    drifted_not_shown: tuple[str, ...] = ()
    """Features that drifted beyond the number shown, most drifted first."""
    ood_rows: tuple[OodRow, ...] = ()
    notes: tuple[str, ...] = field(default=())
    """Things the reader should know that are not data (a version's reference is
    missing, …)."""
