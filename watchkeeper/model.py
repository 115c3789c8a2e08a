"""A fitted regression model as the platform uses it: point prediction plus a prediction
interval (classifiers: :mod:`watchkeeper.classification`).

The interval is split-conformal on the model's residuals in the target's transformed
scale: ``log`` for strictly positive targets (prices — the interval widens with the
price), ``absolute`` otherwise. The half width is calibrated once, at training time,
so serving costs one model call per batch. A model trained since direct loss estimation
was added also carries the expected absolute error of its predictions, which the
monitor averages over a window to estimate its MAE before labels arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from watchkeeper.model_metrics import ModelMetrics
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import Task

if TYPE_CHECKING:  # scikit-learn: what reads only a version's metadata never needs it
    from sklearn.base import RegressorMixin

    from watchkeeper.encoding import Columns

Scale = Literal["log", "absolute"]


@dataclass(frozen=True)
class IntervalSpec:
    """``level`` of nominal coverage; ``half_width`` in the ``scale`` space."""

    level: float
    scale: Scale
    half_width: float

    def bounds(self, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.scale == "log":
            factor = np.exp(self.half_width)
            return prediction / factor, prediction * factor
        return prediction - self.half_width, prediction + self.half_width


@dataclass(frozen=True)
class Predictions:
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class Model:
    """What a registered version holds at run time. ``version`` is ``""`` before
    registration."""

    pipeline: RegressorMixin
    interval: IntervalSpec
    schema: FeatureSchema
    version: str = ""

    task = Task.REGRESSION

    def predict(self, columns: Columns) -> Predictions:
        value = np.asarray(self.pipeline.predict(columns), dtype=np.float64)
        lower, upper = self.interval.bounds(value)
        return Predictions(value=value, lower=lower, upper=upper)

    @property
    def has_loss_estimator(self) -> bool:
        from watchkeeper import loss_estimator  # scikit-learn, loaded with the pipeline

        return loss_estimator.attached(self.pipeline) is not None

    def expected_absolute_errors(
        self, columns: Columns, prediction: np.ndarray
    ) -> np.ndarray | None:
        """Each row's expected absolute error given its features and ``prediction``
        (direct loss estimation, :mod:`watchkeeper.loss_estimator`); their mean
        estimates the rows' MAE before labels arrive. None for a version trained
        without the estimator."""
        from watchkeeper import loss_estimator

        estimator = loss_estimator.attached(self.pipeline)
        if estimator is None:
            return None
        return loss_estimator.expected_absolute_errors(estimator, self.schema, columns, prediction)


def regression_metrics(actual: np.ndarray, predicted: Predictions) -> ModelMetrics:
    """MAE, RMSE, MAPE (%), interval coverage and mean interval width.

    MAPE only for a target that is positive throughout (prices, counts): relative to a
    target near zero or of either sign (a 0/1 outcome, a temperature, a balance) a
    percentage error is huge by construction (239 % measured) and means nothing; None."""
    actual = np.asarray(actual, dtype=np.float64)
    error = predicted.value - actual
    return ModelMetrics(
        mae=float(np.mean(np.abs(error))),
        rmse=float(np.sqrt(np.mean(error**2))),
        # set even when None: the stored metrics keep ``mape: null`` (see ModelMetrics)
        mape=(
            float(np.mean(np.abs(error / actual)) * 100)
            if actual.size and np.all(actual > 0)
            else None
        ),
        coverage=float(np.mean((actual >= predicted.lower) & (actual <= predicted.upper))),
        interval_width=float(np.mean(predicted.upper - predicted.lower)),
        rows=int(actual.size),
    )
