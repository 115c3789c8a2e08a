"""The shapes of the ``/predict`` bodies the routes build as plain dicts.

``TypedDict``s, not pydantic models: they cost nothing at run time (a TypedDict is a
dict), and the prediction path's CPU per request is measured against a budget that a
model's validation per row would break. The OpenAPI document describes the same bodies
from :mod:`serving.api_models` (``RegressionPrediction``, ``Interval``, ``Ood``);
``tests/serving/test_openapi_properties.py`` checks that answers fit it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from serving.api_models import NonFiniteField, NonFiniteName

Label = str | int | float | bool
"""A class label as JSON holds it (:func:`watchkeeper.task.json_label`)."""


class ResponseHead(TypedDict):
    """Fields every ``/predict`` answer starts with."""

    request_id: str
    model_version: str


class IntervalBody(TypedDict):
    lower: float
    upper: float
    level: float


class OodBody(TypedDict):
    score: float
    flag: bool


class RegressionItem(TypedDict):
    """One regression prediction (a batch item; a single answer adds the head)."""

    id: str
    prediction: float
    interval: IntervalBody
    ood: OodBody | None
    non_finite: dict[NonFiniteField, NonFiniteName] | None
    """The numbers the model returned as NaN or an infinity (null in the body), by
    field: ``{"prediction": "NaN"}``; None when all are finite."""


class PredictionSetBody(TypedDict):
    labels: list[Label] | None
    """None when the item has no class (a probability is not a number)."""
    level: float


class ClassNonFinite(TypedDict):
    """The class probabilities the model returned as NaN or an infinity (null in the
    body), by label text: ``{"probabilities": {"low": "NaN"}}``."""

    probabilities: dict[str, NonFiniteName]


class ClassItem(TypedDict):
    """One classifier prediction: the class, each class's probability by label text,
    the prediction set. With a NaN or infinite probability there is no class:
    ``prediction`` and the set's labels are None, and ``non_finite`` names it."""

    id: str
    prediction: Label | None
    probabilities: dict[str, float]
    prediction_set: PredictionSetBody
    ood: OodBody | None
    non_finite: ClassNonFinite | None


class SingleRegression(ResponseHead, RegressionItem):
    """A single record's regression answer."""


class SingleClass(ResponseHead, ClassItem):
    """A single record's classifier answer."""


class RegressionBatch(ResponseHead):
    predictions: list[RegressionItem]


class ClassBatch(ResponseHead):
    predictions: list[ClassItem]
