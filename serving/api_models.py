"""The API's fixed shapes as pydantic models: the OpenAPI document takes their JSON
Schemas (:mod:`serving.openapi`), and the routes answer by dumping them, so the
document and the answers are one definition.

What depends on the served model (its features, its task's prediction and its
classes) and on the batch limit is built in :mod:`serving.openapi` instead.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NO_NUL = "^[^\\u0000]*$"
"""Strings stored as text: PostgreSQL's text cannot hold U+0000."""

Text = Annotated[str, StringConstraints(pattern=NO_NUL)]


class Answer(BaseModel):
    """A response: every field is always present, defaults included."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


_NON_FINITE_NOTE = "null when the model returned NaN or an infinity (named in non_finite)."


class Interval(Answer):
    lower: float | None = Field(description=f"Lower bound; {_NON_FINITE_NOTE}")
    upper: float | None = Field(description=f"Upper bound; {_NON_FINITE_NOTE}")
    level: float = Field(description="Nominal coverage, e.g. 0.9.")


NonFiniteName = Literal["NaN", "Infinity", "-Infinity"]
NonFiniteField = Literal["prediction", "lower", "upper"]


class Ood(Answer):
    score: float = Field(
        ge=0,
        description="Mahalanobis distance of the numeric features to the model version's "
        "reference sample (the monitor's score); 1e100 when the distance overflows.",
    )
    flag: bool = Field(
        description="score is above the reference's own WATCHKEEPER_OOD_PERCENTILE "
        "percentile: out of distribution."
    )


class FieldProblem(Answer):
    field: str
    problem: str


class ErrorBody(BaseModel):
    """``details`` is left out when there are none."""

    code: str
    message: str
    details: list[FieldProblem] = Field(
        default_factory=list, description="Each bad field and what is wrong with it."
    )


class Error(Answer):
    """The one error shape of every failure."""

    error: ErrorBody
    request_id: str | None


class FeedbackAccepted(Answer):
    accepted: int
    unmatched: int = Field(
        description="Ids whose prediction is not in the log yet: stored, joined when it "
        "arrives, counted as orphans if it never does."
    )
    received_at: str


class ClassFeedbackAccepted(FeedbackAccepted):
    known_class: bool = Field(
        description="Every class label names one of the classes of the model version that "
        "made its prediction (present when the served model or such a version is a "
        "classifier)."
    )


class Queued(Answer):
    status: Literal["queued"] = "queued"
    request_id: int


class AlertOutcome(Answer):
    status: Literal["ignored", "duplicate"]
    reason: str = ""


class RolledBack(Answer):
    previous: str | None
    current: str
    changed: bool = Field(
        description="false when the version named was current already: nothing served "
        "changes (CURRENT is written again, so that servers that refused its files load "
        "them again), and a retraining job promoting meanwhile is not held back."
    )


class Health(Answer):
    status: Literal["ok"] = "ok"
    thread_pools: dict[str, int] = Field(
        description="The largest numeric thread pool of each kind loaded, as a request "
        "thread sees it (WATCHKEEPER_NUMERIC_THREADS)."
    )


class ReadinessCheck(BaseModel):
    """One readiness check; a field left unset is left out of the answer (``error``
    only when the check fails, ``degraded`` only while falling back)."""

    ok: bool


class ModelCheck(ReadinessCheck):
    version: str | None = Field(default=None, description="The version loaded.")
    error: str | None = Field(default=None, description="Why no model is loaded.")
    degraded: bool | None = Field(
        default=None, description="Serving another version than CURRENT names."
    )
    wanted: str | None = Field(default=None, description="The version CURRENT names.")
    reload_error: str | None = Field(default=None, description="Why it would not load.")


class DatabaseCheck(ReadinessCheck):
    reachable: bool | None = Field(description="Null until the first background check.")
    checked_seconds_ago: float | None
    error: str | None = Field(default=None, description="The schema is behind the code.")


class PredictionLogCheck(ReadinessCheck):
    writer_alive: bool
    writer_restarts: int
    database_up: bool
    queue_depth: int
    backlog_bytes: int
    stalled_seconds: float = Field(
        description="How long the worker's journaled entries have waited with none of "
        "them stored: 0 while nothing waits, under a second while the writer keeps up."
    )
    journal_full: bool
    journal_writable: bool = Field(
        description="False while the worker has no journal or its disk refuses appends."
    )
    schema_state: Literal["pending", "current", "mismatch"] = Field(
        description="The writer's check of the database's schema revision, done before "
        "it stores anything: pending while the database has not answered since the "
        "worker started (ready: entries wait in the journal), mismatch when it answered "
        "with another revision (not ready: nothing is stored)."
    )


class ReadinessChecks(BaseModel):
    model: ModelCheck
    database: DatabaseCheck
    prediction_log: PredictionLogCheck | None = Field(
        default=None, description="Absent when the server logs no predictions."
    )

    @property
    def ok(self) -> bool:
        checks = (self.model, self.database, self.prediction_log)
        return all(check.ok for check in checks if check is not None)


class Readiness(Answer):
    status: Literal["ready", "degraded", "not_ready"]
    checks: ReadinessChecks

    def body(self) -> dict[str, object]:
        """The answer, with each check's fields as set (see :class:`ReadinessCheck`)."""
        return self.model_dump(exclude_unset=True)


class ModelInfo(Answer):
    version: str
    # free-form on purpose: the file is shown as written, keys added by newer writers too
    # (code that reads a field reads watchkeeper.version_metadata.VersionMetadata)
    metadata: dict[str, Any] = Field(description="The version's metadata.json as written.")


class RegressionPrediction(Answer):
    id: str = Field(description="Prediction id, used for feedback.")
    prediction: float | None = Field(description=f"The predicted value; {_NON_FINITE_NOTE}")
    interval: Interval
    ood: Ood | None = Field(
        description="How far the record is from the model's reference data; null when the "
        "served version has no OOD reference or WATCHKEEPER_OOD_IN_RESPONSE is off."
    )
    non_finite: dict[NonFiniteField, NonFiniteName] | None = Field(
        description="null when the prediction and its bounds are numbers. Otherwise the "
        "fields the model returned as NaN or an infinity (JSON has no such numbers, so they "
        'are null), each with what it was, e.g. {"prediction": "Infinity", "upper": '
        '"Infinity"}. The prediction log stores the value itself.'
    )


class RetrainRequest(BaseModel):
    reason: Text | None = Field(default=None, description="Why; stored with the request.")


class RollbackRequest(BaseModel):
    version: str | None = Field(
        default=None, description="The version to serve (default: the previous usable one)."
    )
    force: bool = Field(default=False, description="Serve a rejected or failed version too.")


class Alert(BaseModel):
    labels: dict[str, str]


class AlertmanagerPayload(BaseModel):
    """What the webhook reads of Alertmanager's payload; the rest is kept as evidence."""

    alerts: list[Alert]


STATIC_MODELS: tuple[type[BaseModel], ...] = (
    Interval,
    Ood,
    RegressionPrediction,
    Error,
    Queued,
    AlertOutcome,
    RolledBack,
    Health,
    Readiness,
    ModelInfo,
    RetrainRequest,
    RollbackRequest,
    AlertmanagerPayload,
)
"""Models whose schemas go into the document's components under their class name."""
