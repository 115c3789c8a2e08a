"""Each check's own figures for a window: a ``window_results.details`` JSON object, as a
typed record per check.

The monitor builds one of these records for every result it stores; the trigger, the
metrics collector, the verdict line and the estimate reader read its attributes. Which
record a stored object is follows from the row's check (its ``detector`` column), and
for the two accuracy checks from the object's ``task`` (a classifier's figures carry
``task: classification``); an object holding ``error`` is a :class:`CheckError` whatever
the check (:meth:`monitoring.window_result.WindowResult.from_row` makes that choice);
:meth:`CheckDetails.stored` is the JSON written back.

Stored rows stay what they were: a record is written with exactly the keys it was built
with, in the order the monitor always wrote them (fields are declared in that order),
and keys a record does not name are kept (``extra="allow"``). Figures added after a
check's first release (the sample's size, the reference's rates, the accuracy's bounds)
default to None or empty, so rows stored before them still read.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from watchkeeper.model_metrics import JsonForm
from watchkeeper.task import Task

FeatureRates = dict[str, dict[str, float]]
"""Per feature: its ``missing_rate`` and ``out_of_range_rate`` (a number) or
``unseen_category_rate`` (a category)."""


class CheckDetails(BaseModel):
    """The figures of one check's result; written back with exactly the keys set."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def stored(self) -> JsonForm:
        return self.model_dump(mode="json", exclude_unset=True)


class CheckError(CheckDetails):
    """A check that raised on the window: its reason (cut to
    :data:`monitoring.monitor.MAX_REASON_CHARS`); an accuracy check also counts the
    labels it had."""

    labels: int | None = None
    error: str


class SampledDetails(CheckDetails):
    """A window check's figures: how many of the window's rows it evaluated (its sample,
    :mod:`monitoring.sampling`; data quality counts every row) of those the window held.
    Results stored before sampling lack both."""

    rows_evaluated: int | None = None
    rows_held: int | None = None


class RejectedRequests(BaseModel):
    """``/predict`` requests during a window, and how many were answered 4xx."""

    model_config = ConfigDict(frozen=True)

    requests: int
    rejected: int
    rate: float


class DataQualityDetails(SampledDetails):
    features: FeatureRates
    reference: FeatureRates = {}
    """The reference sample's own rates (results stored before them lack them)."""
    requests: RejectedRequests


class OodDetails(SampledDetails):
    threshold: float
    outliers: int
    mean_score: float | None = None
    """None when no row of the window had a score."""
    rows_scored_by_serving: int | None = None
    rows_scored_here: int | None = None


class FeatureDriftDetails(SampledDetails):
    threshold: float
    drifted: list[str]
    p_values: dict[str, float]
    distances: dict[str, float] = {}


class OutputDriftDetails(SampledDetails):
    """A regression model's output drift: the distance alone; a classifier's: the
    figures of :class:`monitoring.detectors.ClassOutputDrift`. With too few finite
    predictions to test, no verdict: ``distance`` is None and ``reason`` says why."""

    distance: float | None
    non_finite_predictions: int | None = None
    """NaN or infinite predictions, left out of the test: a regression model's (or a
    prediction that is no number, :class:`monitoring.log_reader.Unreadable`); a
    classifier's row with a probability NaN, infinite or no probability at all, or with
    another number of them than the version's classes (results stored before they were
    counted lack it)."""
    reason: str | None = None
    class_p_value: float | None = None
    reference_shares: list[float] | None = None
    window_shares: list[float] | None = None
    probability_p_value: float | None = None
    probability_distance: float | None = None


class MultivariateDriftDetails(SampledDetails):
    distance: float


class EstimateDetails(SampledDetails):
    """The label-free estimate (:mod:`monitoring.estimated_accuracy`): a regression
    version's MAE, or a classifier's accuracy (with ``task``); ``reason`` when a version
    has no estimator."""

    task: Task = Task.REGRESSION
    estimated_mae: float | None = None
    estimated_accuracy: float | None = None
    n_rows: int
    non_finite_predictions: int | None = None
    """A classifier's rows left out: a probability was NaN or infinite (results stored
    before they were counted lack it)."""
    reason: str | None = None

    @property
    def is_classifier(self) -> bool:
        return self.task is Task.CLASSIFICATION


class AccuracyDetails(CheckDetails):
    """A regression version's realised accuracy (:class:`monitoring.accuracy.
    AccuracyMetrics`), of a window (``labelled_share``, the estimate's check) or rolling
    (``confidence``)."""

    labels: int
    # null when no labelled prediction was finite: the figures are NaN, stored as null
    mae: float | None
    mae_lower_bound: float | None = None
    abs_error_std: float | None = None
    rmse: float | None
    mape: float | None = None
    coverage: float | None
    label_delay_seconds_median: float | None
    label_delay_seconds_max: float | None
    non_finite_predictions: int = 0
    """Labelled predictions left out: NaN or infinite (older results lack it)."""
    implausible_labels: int = 0
    """Labels left out: an error over a thousand times the size of the model's
    predictions (:data:`monitoring.accuracy.IMPLAUSIBLE_FACTOR`; older results lack it)."""
    labelled_share: float | None = None
    confidence: float | None = None
    validation_mae: float | None = None
    estimated_mae: float | None = None
    estimate_error: float | None = None


class ClassAccuracyDetails(CheckDetails):
    """A classifier's realised accuracy (:class:`monitoring.class_accuracy.
    ClassificationAccuracy`), of a window or rolling."""

    task: Literal[Task.CLASSIFICATION] = Task.CLASSIFICATION
    labels: int
    # null when no labelled prediction had a class (a probability NaN or infinite):
    # the figures are NaN, stored as null
    accuracy: float | None
    accuracy_lower_bound: float
    accuracy_upper_bound: float
    log_loss: float | None
    brier: float | None
    set_coverage: float | None
    set_size: float | None
    ece: float | None
    recall: dict[str, float]
    unknown_labels: int = 0
    label_delay_seconds_median: float | None
    label_delay_seconds_max: float | None
    non_finite_predictions: int = 0
    """Labelled predictions left out: a probability NaN or infinite (older results lack
    it)."""
    labelled_share: float | None = None
    confidence: float | None = None
    validation_accuracy: float | None = None
    validation_log_loss: float | None = None
    estimated_accuracy: float | None = None
    estimate_error: float | None = None


AnyDetails = (
    CheckError
    | DataQualityDetails
    | OodDetails
    | FeatureDriftDetails
    | OutputDriftDetails
    | MultivariateDriftDetails
    | EstimateDetails
    | AccuracyDetails
    | ClassAccuracyDetails
)
"""What a result's ``details`` can be."""
