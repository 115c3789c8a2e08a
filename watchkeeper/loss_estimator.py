"""Direct loss estimation: the model's expected absolute error, learnt when it is trained,
so that a window's MAE can be estimated before its labels arrive.

A second gradient-boosting model (NannyML calls it the *nanny* model) learns
``|actual - prediction|`` from the features and the prediction on rows the model did
not see: the 5-fold out-of-fold predictions the interval is calibrated on. Averaged over
a window, its outputs estimate the window's MAE. It follows covariate shift (a window of
large houses, which the model gets less right, is estimated worse) but, like any
label-free estimate, not concept drift: if prices change for the same features, only
the labels tell. The monitor checks it against the realised MAE when they arrive.

Choices measured on Ames (train 2006–2007, 200-row windows of 2008–2010 sales;
``bench/estimate_bench.py``): squared-error loss, because the mean of what it learns is
the expected absolute error, i.e. the MAE: the estimate is 7.9 % off the realised MAE on
average over the windows. Absolute-error loss learns the median absolute error and a
log target its geometric mean: both underestimated the MAE (18.6 % and 33.4 % off).
Learnt on the 2008 validation year instead of out of fold, it was 9.6 % off: fewer rows
(622 against 1,319). The prediction is an input, as NannyML's DLE has it (where the
model predicts a high price it errs by more); on Ames the features alone did as well.
50 trees of 15 leaves, smaller than the model's: the target is noisy, and 100 trees at
half the rate estimated no better at twice the cost.

The estimator travels inside the fitted pipeline object as the attribute
:data:`ATTRIBUTE`, so the registry saves it in the same skops artifact and checks it
with the same SHA-256; it holds only scikit-learn types and :class:`TabularEncoder`,
which the registry already trusts. Versions registered before it have none: the monitor
then reports no estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline

from watchkeeper.encoding import Columns, TabularEncoder
from watchkeeper.schema import FeatureSchema

ATTRIBUTE = "watchkeeper_loss_estimator_"
PREDICTION_COLUMN = "__watchkeeper_prediction__"
"""The column the estimator reads the model's prediction from, beside the features."""


def fit_loss_estimator(
    features: pd.DataFrame,
    schema: FeatureSchema,
    prediction: np.ndarray,
    actual: np.ndarray,
    *,
    random_state: int = 0,
) -> Pipeline:
    """Learn the expected absolute error from ``features`` and ``prediction``, which
    must be held out from the model that made it (out-of-fold), or the errors learnt
    are those of a model on its own training rows: too small."""
    if PREDICTION_COLUMN in schema.names:
        raise ValueError(f"a feature is named {PREDICTION_COLUMN!r}, the prediction's column")
    estimator = Pipeline(
        [
            (
                "encode",
                TabularEncoder(
                    numeric=[*(f.name for f in schema.numeric), PREDICTION_COLUMN],
                    categorical=[f.name for f in schema.categorical],
                ),
            ),
            (
                "loss",
                HistGradientBoostingRegressor(
                    loss="squared_error",
                    max_iter=50,
                    learning_rate=0.1,
                    max_leaf_nodes=15,
                    min_samples_leaf=20,
                    l2_regularization=1.0,
                    early_stopping=False,
                    random_state=random_state,
                ),
            ),
        ]
    )
    errors = np.abs(np.asarray(actual, dtype=np.float64) - prediction)
    return estimator.fit(_with_prediction(features, schema, prediction), errors)


def attach(pipeline: Any, estimator: Pipeline) -> None:
    """Carry ``estimator`` inside the fitted ``pipeline`` (see the module docstring)."""
    setattr(pipeline, ATTRIBUTE, estimator)


def attached(pipeline: Any) -> Pipeline | None:
    """The estimator a fitted pipeline carries, or None (versions trained before it)."""
    return getattr(pipeline, ATTRIBUTE, None)


def expected_absolute_errors(
    estimator: Pipeline, schema: FeatureSchema, columns: Columns, prediction: np.ndarray
) -> np.ndarray:
    """Each row's expected absolute error; their mean estimates the rows' MAE."""
    # squared-error trees can dip below zero where errors are small: an error cannot
    estimated = estimator.predict(_with_prediction(columns, schema, prediction))
    return np.clip(np.asarray(estimated, dtype=np.float64), 0.0, None)


def _with_prediction(
    columns: Columns, schema: FeatureSchema, prediction: np.ndarray
) -> Mapping[str, Any]:
    """The features and the prediction as columns, without copying the features."""
    named: dict[str, Any] = {name: columns[name] for name in schema.names}
    named[PREDICTION_COLUMN] = np.asarray(prediction, dtype=np.float64)
    return named
