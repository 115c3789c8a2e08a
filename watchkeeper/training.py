"""The training pipeline definition, shared by the first training and every retrain.

Any tabular dataset with a target and a :class:`FeatureSchema` goes through the same
steps: encode (:class:`TabularEncoder`), gradient-boosted trees, a conformal
prediction interval calibrated on out-of-fold residuals, and an estimator of the
expected absolute error learnt from the same out-of-fold predictions
(:mod:`watchkeeper.loss_estimator`).

Rows in time order (a dataset with a period column, or a retraining job's rows) are
predicted out of fold *forward in time*: each fold by a model fitted on the rows before
it, as the served model will predict rows after its training data. Shuffled folds let
every fold's model see its fold's future and its neighbours; on a dataset with a trend
the interval they calibrate covered half of the later rows instead of 90 %.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline

from watchkeeper import figures
from watchkeeper.classification import ServedModel, classification_metrics
from watchkeeper.classifier_training import fit_classifier
from watchkeeper.dataset import Dataset
from watchkeeper.encoding import TabularEncoder
from watchkeeper.folds import fold_splits
from watchkeeper.loss_estimator import attach, fit_loss_estimator
from watchkeeper.model import IntervalSpec, Model, Scale, regression_metrics
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import Task, detect_task
from watchkeeper.training_checks import check_training_data
from watchkeeper.training_params import DEFAULT_PARAMS, TrainingParams
from watchkeeper.version_metadata import DataWindow, ModelMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model with everything the registry stores beside it."""

    model: ServedModel
    params: TrainingParams
    training_window: DataWindow
    validation_window: DataWindow | None
    metrics: ModelMetrics
    reference: pd.DataFrame = field(repr=False)


def build_pipeline(schema: FeatureSchema, params: TrainingParams, scale: Scale) -> Any:
    trees = HistGradientBoostingRegressor(**params.tree_arguments())
    pipeline = Pipeline([("encode", TabularEncoder.for_schema(schema)), ("model", trees)])
    if scale == "log":
        return TransformedTargetRegressor(
            regressor=pipeline, func=np.log, inverse_func=np.exp, check_inverse=False
        )
    return pipeline


def _to_scale(values: np.ndarray, scale: Scale) -> np.ndarray:
    return np.log(values) if scale == "log" else values


def conformal_half_width(residuals: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ⌈(n+1)·level⌉-th smallest absolute residual."""
    scores = np.sort(np.abs(residuals))
    n = scores.size
    if n == 0:
        raise ValueError("no residuals to calibrate the interval on")
    rank = min(math.ceil((n + 1) * level), n)
    return float(scores[rank - 1])


def out_of_fold(
    pipeline: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    params: TrainingParams,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Held-out predictions of ``pipeline`` for the rows of ``X``: by shuffled K-fold,
    or, given the rows' time ``order``, each of K folds predicted by a model fitted on
    the rows before it (the first rows, never held out, stay NaN)."""
    held_out = np.full_like(y, np.nan)
    splits = fold_splits(len(X), params.calibration_folds, params.random_state, order)
    for train_idx, held_idx in splits:
        fold_model = clone(pipeline).fit(X.iloc[train_idx], y[train_idx])
        held_out[held_idx] = fold_model.predict(X.iloc[held_idx])
    return held_out


EXCHANGEABLE_RATIO = 0.8
"""Shuffled folds whose errors on the newest rows are under this share of the forward
folds' errors on the same rows learn from neighbours in time (measured on the newest
sixth: Ames 0.90, New York air quality 0.97; txhousing 0.60, hotel rates 0.73)."""


def exchangeable_in_time(
    y: np.ndarray, forward: np.ndarray, shuffled: np.ndarray, order: np.ndarray
) -> bool:
    """Whether rows in time ``order`` behave as exchangeable: on the newest fold (held
    out by a forward model that saw five sixths of the rows), shuffled folds' absolute
    errors are not far below the forward model's."""
    newest = np.argsort(np.asarray(order), kind="stable")[-max(len(y) // 6, 1) :]
    newest = newest[~np.isnan(forward[newest])]
    if newest.size == 0:
        return True
    forward_error = float(np.mean(np.abs(y[newest] - forward[newest])))
    shuffled_error = float(np.mean(np.abs(y[newest] - shuffled[newest])))
    exchangeable = forward_error == 0 or shuffled_error >= EXCHANGEABLE_RATIO * forward_error
    if not exchangeable:
        log.info(
            "held-out errors on the newest rows: %s from shuffled folds, %s forward in "
            "time: the rows are not exchangeable, the loss estimator learns forward in time",
            figures.amount(shuffled_error),
            figures.amount(forward_error),
        )
    return exchangeable


def fit_model(
    frame: pd.DataFrame,
    schema: FeatureSchema,
    params: TrainingParams = DEFAULT_PARAMS,
    *,
    order: np.ndarray | None = None,
) -> Model:
    """Fit the pipeline on ``frame``; calibrate its interval and learn its expected
    absolute error out of fold (forward in time when the rows' ``order`` is given)."""
    y = frame[schema.target].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"target {schema.target!r} has missing or non-finite values")
    X = frame[list(schema.names)]
    scale: Scale = "log" if np.all(y > 0) else "absolute"
    pipeline = build_pipeline(schema, params, scale)

    held_out = out_of_fold(pipeline, X, y, params, order)
    known = ~np.isnan(held_out)
    residuals = _to_scale(y[known], scale) - _to_scale(held_out[known], scale)
    # The loss estimator learns the final model's errors from held-out predictions.
    # Shuffled folds' models saw four fifths of the rows, like the final model; forward
    # folds' saw a sixth to five sixths and err more (Ames: +17 %). But where rows are
    # not exchangeable in time, shuffled folds predict a row from its neighbours: on a
    # panel (txhousing, 46 cities × 187 months) their errors were half the model's
    # real validation MAE. So: shuffled folds unless they beat the forward folds by
    # far on the newest rows.
    learn_from = held_out
    if order is not None:
        shuffled = out_of_fold(pipeline, X, y, params)
        if exchangeable_in_time(y, held_out, shuffled, order):
            learn_from = shuffled
    taught = ~np.isnan(learn_from)
    interval = IntervalSpec(
        level=params.interval_level,
        scale=scale,
        half_width=conformal_half_width(residuals, params.interval_level),
    )
    pipeline.fit(X, y)
    # the same out-of-fold predictions teach the model's expected absolute error
    attach(
        pipeline,
        fit_loss_estimator(
            X[taught], schema, learn_from[taught], y[taught], random_state=params.random_state
        ),
    )
    return Model(pipeline=pipeline, interval=interval, schema=schema)


def train(
    training: Dataset,
    validation: Dataset | None = None,
    *,
    schema: FeatureSchema | None = None,
    params: TrainingParams = DEFAULT_PARAMS,
    in_time_order: bool = False,
    task: Task | None = None,
) -> TrainedModel:
    """Train on ``training``; report metrics on ``validation`` when given.

    The validation set should be the period after the training data (Ames: 2008), so
    that the metrics, interval coverage included, say how the model does on the future.
    The interval is calibrated forward in time when ``training`` has a period column,
    or when its rows are ``in_time_order`` (a retraining job's). ``task`` is detected
    from the target unless given (:func:`watchkeeper.task.detect_task`).
    """
    if schema is None:
        # the excluded columns (the period's among them) stay accepted in requests
        schema = FeatureSchema.derive(
            training.frame, training.target, exclude=training.excluded_columns()
        )
    if training.period is not None:
        order: np.ndarray | None = training.frame[training.period].to_numpy()
    else:
        order = np.arange(len(training.frame)) if in_time_order else None
    task = task or detect_task(training.frame[schema.target])
    check_training_data(
        training.frame,
        None if validation is None else validation.frame,
        schema.target,
        task,
        folds=params.calibration_folds,
    )
    model: ServedModel
    metrics = ModelMetrics()
    if task is Task.CLASSIFICATION:
        model = fit_classifier(training.frame, schema, params, order=order)
        if validation is not None and len(validation.frame):
            metrics = classification_metrics(
                validation.frame[schema.target].tolist(),
                model.predict(validation.frame[list(schema.names)]),
            )
    else:
        model = fit_model(training.frame, schema, params, order=order)
        if validation is not None and len(validation.frame):
            predicted = model.predict(validation.frame[list(schema.names)])
            actual = validation.frame[schema.target].to_numpy()
            metrics = regression_metrics(actual, predicted)
    reference = training.frame[list(schema.names)]
    if len(reference) > params.reference_rows:
        reference = reference.sample(params.reference_rows, random_state=params.random_state)
    return TrainedModel(
        model=model,
        params=params,
        training_window=DataWindow.model_validate(training.window()),
        validation_window=(
            DataWindow.model_validate(validation.window()) if validation is not None else None
        ),
        metrics=metrics,
        reference=reference.reset_index(drop=True),
    )
