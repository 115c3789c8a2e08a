"""The feature schema: what a model accepts, derived from its training data.

The schema travels with every registered model version. Serving validates requests
against it, the monitor uses its categories and ranges for data-quality rates, and
the OpenAPI document describes it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from watchkeeper.record_problems import problems

Kind = Literal["numeric", "categorical"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    """One input column.

    ``minimum``/``maximum`` are hard bounds that requests must respect;
    ``observed_min``/``observed_max`` are what training saw (values outside are
    accepted, and counted as out-of-range by the monitor). ``categories`` are the
    values seen in training; with ``allow_unknown`` others are accepted and treated
    as missing by the model.
    """

    name: str
    kind: Kind
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    observed_min: float | None = None
    observed_max: float | None = None
    categories: tuple[str, ...] = ()
    allow_unknown: bool = True

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"

    @cached_property
    def is_boolean(self) -> bool:
        """Whether training found the column boolean: its categories are only ``"True"``
        and ``"False"``. Cached: validation asks it of every categorical column of every
        request."""
        return bool(self.categories) and set(self.categories) <= {"True", "False"}

    @cached_property
    def integer_categories(self) -> dict[int, str]:
        """The categories that are an integer's canonical text (``"1"``, ``"-3"``, not
        ``"01"``, ``"+1"`` or ``"1_000"``), by that integer: a client sends the JSON
        number 1 for the category ``"1"``. Cached: validation asks it of a column
        holding numbers."""
        found = {}
        for category in self.categories:
            try:
                number = int(category)
            except ValueError:
                continue
            if str(number) == category:
                found[number] = category
        return found

    @cached_property
    def decimal_categories(self) -> frozenset[str]:
        """The categories that are a finite float's canonical text, as Python's
        ``repr`` writes it (``"1.5"``, ``"1.0"``, ``"1e+20"``; not ``"1.50"``, ``"1"``,
        ``"nan"``): a client sends the JSON number 1.5 for the category ``"1.5"``. Cached:
        validation asks it of a column holding numbers."""
        found = set()
        for category in self.categories:
            try:
                number = float(category)
            except ValueError:
                continue
            if math.isfinite(number) and repr(number) == category:
                found.add(category)
        return frozenset(found)

    @cached_property
    def decimal_numbers(self) -> dict[float, str]:
        """The :attr:`decimal_categories` by the number each is, for a number sent
        otherwise than as its text: JSON does not tell 1 from 1.0 (a JavaScript client
        sends 1.0 as ``1``) nor 0 from -0.0, and JSON Schema's ``enum`` in
        /openapi.json takes either for the other, so the integer 1 is ``"1.0"`` and
        ``0.0`` is ``"-0.0"`` when that is the category. ``"0.0"`` stands for zero when
        both zeros are categories (a float's own text picks first:
        :func:`~serving.validation.number_category`)."""
        found = {float(c): c for c in self.decimal_categories if c != "-0.0"}
        if "-0.0" in self.decimal_categories:
            found.setdefault(-0.0, "-0.0")  # 0.0 == -0.0: "0.0" kept when both
        return found


IGNORED_NO_VALUES = "no value in the training data"
"""Why a column training saw is not a feature: it held no value at all."""
IGNORED_EXCLUDED = "excluded when training"
"""Why: training was told to leave it out (``watchkeeper train --exclude``, an id)."""
IGNORED_PERIOD = "the period column: orders rows in time"
"""Why: it orders the dataset's rows in time, to split and replay them; as a feature,
every later window would look drifted by construction."""
IGNORED_PERIOD_PART = "makes up the period column: orders rows in time"
"""Why: the period column is made of it (Ames: ``Year_Sold``, ``Mo_Sold``)."""


@dataclass(frozen=True)
class IgnoredColumn:
    """A column of the training data that is not a feature, and why: requests may hold
    it (any value, null included), and it is not passed to the model."""

    name: str
    reason: str


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered input features plus the name of the target they predict, and the
    training data's columns that are not features (``ignored``): a record shaped like
    the training data may hold them."""

    features: tuple[Feature, ...]
    target: str
    ignored: tuple[IgnoredColumn, ...] = ()
    _index: dict[str, Feature] = field(init=False, repr=False, compare=False)
    _ignored: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {f.name: f for f in self.features}
        if len(index) != len(self.features):
            raise ValueError("feature names must be unique")
        if self.target in index:
            raise ValueError(f"target {self.target!r} cannot also be a feature")
        ignored = frozenset(c.name for c in self.ignored)
        if len(ignored) != len(self.ignored):
            raise ValueError("ignored column names must be unique")
        if clash := sorted(ignored & {*index, self.target}):
            raise ValueError(f"ignored column(s) {clash} cannot also be a feature or the target")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_ignored", ignored)

    @property
    def ignored_names(self) -> frozenset[str]:
        """The names of the ignored columns, which requests may hold."""
        return self._ignored

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.is_numeric)

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if not f.is_numeric)

    def __getitem__(self, name: str) -> Feature:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def keeping_ignored(self, earlier: Iterable[IgnoredColumn]) -> FeatureSchema:
        """This schema, also ignoring the ``earlier`` columns that are neither its
        features, its target nor ignored already: a retraining's rows hold only the
        champion's features (an ignored column is not logged), so a candidate derived
        from them would refuse again the records shaped like the original data."""
        taken = {*self.names, self.target, *self.ignored_names}
        kept = tuple(c for c in earlier if c.name not in taken)
        return replace(self, ignored=self.ignored + kept) if kept else self

    def differences(
        self, other: FeatureSchema, *, names: tuple[str, str] = ("this schema", "the other")
    ) -> list[str]:
        """How this schema's features differ from ``other``'s, one line per feature that
        differs in kind or is in only one of them (``names`` say which is which), then
        the order if only that differs; empty when both have the same features, kinds
        and order."""
        this, that = names
        found = []
        for feature in self.features:
            if feature.name not in other:
                found.append(f"{feature.name}: only in {this}")
            elif feature.kind != other[feature.name].kind:
                found.append(
                    f"{feature.name}: {feature.kind} in {this}, "
                    f"{other[feature.name].kind} in {that}"
                )
        found += [f"{name}: only in {that}" for name in other.names if name not in self]
        if not found and self.names != other.names:
            found.append(f"the features' order: {', '.join(self.names)} in {this}")
        return found

    def to_dict(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "target": self.target,
            "features": [{**asdict(f), "categories": list(f.categories)} for f in self.features],
        }
        if self.ignored:  # absent otherwise: a schema without any reads as it always did
            stored["ignored"] = [asdict(c) for c in self.ignored]
        return stored

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """The schema as stored (:meth:`to_dict`), every field of every feature checked:
        one ``ValueError`` naming each feature and field that is wrong. Checked here,
        once, where it is read: requests are validated against the plain records."""
        if not isinstance(data, Mapping):
            raise ValueError("malformed feature schema: not an object")
        target, raws = data.get("target"), data.get("features")
        if not isinstance(target, str):
            raise ValueError("malformed feature schema: target: must be a string")
        if not isinstance(raws, list):
            raise ValueError("malformed feature schema: features: must be a list")
        features, found = [], []
        for i, raw in enumerate(raws):
            try:
                stored = _StoredFeature.model_validate(raw)
            except ValidationError as exc:
                name = raw.get("name") if isinstance(raw, Mapping) else None
                which = f"features[{i}]" + (f" ({name!r})" if isinstance(name, str) else "")
                found.append(f"{which}: {problems(exc, whole='feature')}")
                continue
            features.append(stored.feature())
        ignored = _ignored_columns(data.get("ignored", []), found)
        if found:
            raise ValueError(f"malformed feature schema: {'; '.join(found)}")
        try:
            return cls(features=tuple(features), target=target, ignored=ignored)
        except ValueError as exc:
            raise ValueError(f"malformed feature schema: {exc}") from exc

    @classmethod
    def derive(
        cls, frame: pd.DataFrame, target: str, *, exclude: Iterable[str | IgnoredColumn] = ()
    ) -> FeatureSchema:
        """Infer a schema from training data.

        Numeric columns never negative in training get a hard lower bound of 0 (areas,
        counts, prices); every other bound is left open, because values beyond what
        training saw are drift to be watched, not errors to be refused. A column with no
        value at all in the training rows is no feature: it teaches nothing, and the
        trees cannot bin it. It is kept as an ignored column, so that a client sending
        records shaped like the training data (that column in them) is not refused.

        ``exclude`` columns are no features either; each that ``frame`` holds is an
        ignored column for the same reason, with why: a name
        :data:`IGNORED_EXCLUDED`, an :class:`IgnoredColumn` its own (the period
        column's: :meth:`watchkeeper.dataset.Dataset.excluded_columns`). The target is
        never one: a record holding it is refused.
        """
        excluded: dict[str, str] = {}  # name: reason, the first given for it
        for column in exclude:
            if isinstance(column, str):
                column = IgnoredColumn(column, IGNORED_EXCLUDED)
            excluded.setdefault(column.name, column.reason)
        features: list[Feature] = []
        ignored: list[IgnoredColumn] = []
        for name in frame.columns:
            if name == target:
                continue
            if name in excluded:
                ignored.append(IgnoredColumn(name=str(name), reason=excluded[name]))
                continue
            column = frame[name]
            if column.isna().all():
                log.warning(
                    "column %r has no values in the training data: not a feature, "
                    "accepted in requests and ignored",
                    name,
                )
                ignored.append(IgnoredColumn(name=str(name), reason=IGNORED_NO_VALUES))
                continue
            if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
                _warn_if_mostly_numbers(name, column)
                values = sorted({str(v) for v in column.dropna().unique()})
                features.append(Feature(name=name, kind="categorical", categories=tuple(values)))
                continue
            numbers = column.astype(float)
            lo, hi = float(np.nanmin(numbers)), float(np.nanmax(numbers))
            features.append(
                Feature(
                    name=name,
                    kind="numeric",
                    minimum=0.0 if lo >= 0 else None,
                    observed_min=lo,
                    observed_max=hi,
                )
            )
        if not features:
            raise ValueError("no feature columns left after excluding target and excludes")
        return cls(features=tuple(features), target=target, ignored=tuple(ignored))


class _StoredFeature(BaseModel):
    """A :class:`Feature` as ``metadata.json`` stores it, each field checked: a bound
    stored as ``"0"`` or ``[1]`` once loaded, then failed every request with a 500, and
    ``"categories": "abc"`` became the categories a, b, c."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str
    kind: Kind
    nullable: bool = True
    # hard bounds are compared with every request's values and published in the OpenAPI
    # document: finite; what training saw may be infinite (a column holding inf)
    minimum: float | None = Field(default=None, allow_inf_nan=False)
    maximum: float | None = Field(default=None, allow_inf_nan=False)
    observed_min: float | None = None
    observed_max: float | None = None
    categories: list[str] = []
    allow_unknown: bool = True

    @field_validator("observed_min", "observed_max")
    @classmethod
    def _a_number(cls, value: float | None) -> float | None:
        if value is not None and math.isnan(value):
            raise ValueError("must be a number, not NaN")
        return value

    @model_validator(mode="after")
    def _bounds_in_order(self) -> _StoredFeature:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum:g} is above maximum {self.maximum:g}")
        return self

    def feature(self) -> Feature:
        return Feature(
            name=self.name,
            kind=self.kind,
            nullable=self.nullable,
            minimum=self.minimum,
            maximum=self.maximum,
            observed_min=self.observed_min,
            observed_max=self.observed_max,
            categories=tuple(self.categories),
            allow_unknown=self.allow_unknown,
        )


class _StoredIgnored(BaseModel):
    """An :class:`IgnoredColumn` as ``metadata.json`` stores it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str
    reason: str


def _ignored_columns(raw: Any, found: list[str]) -> tuple[IgnoredColumn, ...]:
    """The stored ignored columns (absent from versions registered before they were
    recorded: none), each problem appended to ``found``."""
    if not isinstance(raw, list):
        found.append("ignored: must be a list")
        return ()
    columns = []
    for i, item in enumerate(raw):
        try:
            stored = _StoredIgnored.model_validate(item)
        except ValidationError as exc:
            found.append(f"ignored[{i}]: {problems(exc, whole='ignored column')}")
            continue
        columns.append(IgnoredColumn(name=stored.name, reason=stored.reason))
    return tuple(columns)


def _warn_if_mostly_numbers(name: str, column: pd.Series) -> None:
    """A column of numbers with a few text cells (``n/a``, ``12,5``) is read as
    categories of the numbers' text: served, every number a client sends is then
    refused (it must be a string) or unseen. Said at training, where it can be fixed."""
    if pd.api.types.is_bool_dtype(column):
        return
    # booleans are no numbers: a retraining's rows hold a boolean column's training
    # values (True) beside its logged ones ("True"), which pandas reads as 1 and text
    present = column.dropna()
    present = present[[not isinstance(v, bool | np.bool_) for v in present]]
    numbers = pd.to_numeric(present, errors="coerce")
    text = present[numbers.isna()]
    if len(text) and len(text) * 2 < len(present):
        log.warning(
            "column %r holds numbers but %d of its %d values are not (e.g. %r): it is "
            "read as categories; clean or exclude it to have numbers",
            name,
            len(text),
            len(present),
            text.iloc[0],
        )
