"""A model's figures on its evaluation rows, as computed (:func:`watchkeeper.model.
regression_metrics`, :func:`watchkeeper.classification.classification_metrics`) and as
stored in a version's ``metadata.json`` and a retraining run's row.

Apart from :mod:`watchkeeper.version_metadata` so that the modules computing the figures
can return the record without importing the metadata (which imports them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

JsonForm = dict[str, Any]
"""A record's JSON form, as written to ``metadata.json`` or a JSON column."""


class StoredRecord(BaseModel):
    """A part of the metadata that newer writers may add keys to: kept as extra fields,
    and written back with exactly the keys it was built with."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def stored(self) -> JsonForm:
        """The JSON form, with exactly the keys it was built with (a figure set to None,
        a regression ``mape`` for a target of either sign, stays there as null)."""
        return self.model_dump(exclude_unset=True)


class ModelMetrics(StoredRecord):
    """A version's figures on its evaluation rows (its validation period, or its run's
    holdout): a regression model's or a classifier's; either set's others are None."""

    rows: int | None = None
    mae: float | None = None
    rmse: float | None = None
    mape: float | None = None
    coverage: float | None = None
    interval_width: float | None = None
    accuracy: float | None = None
    log_loss: float | None = None
    brier: float | None = None
    set_coverage: float | None = None
    set_size: float | None = None
    ece: float | None = None
    recall: dict[str, float] | None = None

    @property
    def measured(self) -> bool:
        """Whether any figure was recorded (``{}`` when a version had no validation
        rows)."""
        return bool(self.model_fields_set)

    @property
    def any_coverage(self) -> float | None:
        """The coverage of the interval, or of a classifier's prediction set."""
        return self.coverage if self.coverage is not None else self.set_coverage

    def required(self, name: str) -> float:
        """The figure ``name``, which the caller's task always measures."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"no {name} among the metrics {sorted(self.model_fields_set)}")
        return float(value)
