"""Training a classifier: the same encoder and boosted trees as a regression model, a
conformal prediction set calibrated on held-out probabilities (forward in time when the
rows have a time order), and a confidence-to-accuracy map for the monitor's label-free
estimate, learnt from shuffled held-out predictions (the final model's view: each
fold's model saw four fifths of the rows, as for the regression loss estimator).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.pipeline import Pipeline

from watchkeeper.classification import (
    Classifier,
    ConfidenceCalibration,
    PredictionSetSpec,
    actual_index,
    classes_of,
)
from watchkeeper.encoding import TabularEncoder
from watchkeeper.errors import UnfittableData, clipped
from watchkeeper.folds import fold_splits
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import MAX_LABEL, json_label, label_text
from watchkeeper.training_params import TrainingParams

CALIBRATION_KNOTS = 50
"""At most this many knots of the confidence map are stored in the version's metadata."""


class ClassifierTrainingError(UnfittableData):
    """A target a classifier cannot be trained on."""


def build_classifier(schema: FeatureSchema, params: TrainingParams) -> Pipeline:
    trees = HistGradientBoostingClassifier(**params.tree_arguments())
    return Pipeline([("encode", TabularEncoder.for_schema(schema)), ("model", trees)])


def target_labels(frame: pd.DataFrame, target: str) -> np.ndarray:
    """The target column as labels (integral floats as integers: a 0/1 column read with
    gaps stays 0/1); refuses missing values and a single class."""
    column = frame[target]
    if column.isna().any():
        raise ClassifierTrainingError(f"target {target!r} has missing values")
    values = [json_label(v) for v in column.tolist()]
    kinds = {type(v) for v in values}
    if kinds <= {int} or kinds <= {bool} or kinds <= {int, float}:
        # numbers stay numbers (scikit-learn refuses an object array of them)
        labels = np.asarray(values)
    else:  # text, or a mix such as 1 and "yes": classes by their text
        labels = np.asarray([str(v) for v in values], dtype=object)
    for text in {label_text(v) for v in labels.tolist()}:
        # /feedback refuses such a label: that class's outcomes could never be counted
        if len(text) > MAX_LABEL:
            raise ClassifierTrainingError(
                f"target {target!r} has a class of {len(text)} characters: labels /feedback"
                f" takes have at most {MAX_LABEL} ({clipped(text, 40)!r})"
            )
        if "\x00" in text:
            raise ClassifierTrainingError(
                f"target {target!r} has a class with a NUL character (U+0000), which"
                f" labels cannot hold ({clipped(text, 40)!r})"
            )
    if len(set(labels.tolist())) < 2:
        raise ClassifierTrainingError(
            f"target {target!r} holds a single class: nothing to classify"
        )
    return labels


def out_of_fold_probabilities(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    classes: tuple[Any, ...],
    params: TrainingParams,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Held-out class probabilities (columns in ``classes`` order) for the rows of
    ``X``; rows never held out (the first forward fold) and folds whose training rows
    hold a single class stay NaN. A class a fold's model never saw gets probability 0."""
    held_out = np.full((len(X), len(classes)), np.nan)
    position = {c: j for j, c in enumerate(classes)}
    splits = fold_splits(len(X), params.calibration_folds, params.random_state, order)
    for fitted_on, held in splits:
        if len(set(y[fitted_on].tolist())) < 2:
            continue
        fold_model = clone(pipeline).fit(X.iloc[fitted_on], y[fitted_on])
        columns = [position[c] for c in classes_of(fold_model)]
        probabilities = np.zeros((len(held), len(classes)))
        probabilities[:, columns] = fold_model.predict_proba(X.iloc[held])
        held_out[held] = probabilities
    return held_out


def set_threshold(probabilities: np.ndarray, truth: np.ndarray, level: float) -> float:
    """The split-conformal threshold: ``1 - q`` where ``q`` is the ⌈(n+1)·level⌉-th
    smallest score ``1 - p(true class)`` of the held-out rows."""
    scores = np.sort(1.0 - probabilities[np.arange(len(truth)), truth])
    n = scores.size
    if n == 0:
        raise ClassifierTrainingError(
            "no held-out rows to calibrate the prediction set on: the training rows of"
            " every calibration fold hold a single class; give more rows of each class"
            " (or rows in another order: --period)"
        )
    rank = min(int(np.ceil((n + 1) * level)), n)
    return float(1.0 - scores[rank - 1])


def confidence_calibration(probabilities: np.ndarray, truth: np.ndarray) -> ConfidenceCalibration:
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == truth).astype(np.float64)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    isotonic.fit(confidence, correct)
    knots_x = np.asarray(isotonic.X_thresholds_, dtype=np.float64)
    knots_y = np.asarray(isotonic.y_thresholds_, dtype=np.float64)
    if knots_x.size > CALIBRATION_KNOTS:
        keep = np.unique(np.linspace(0, knots_x.size - 1, CALIBRATION_KNOTS).round().astype(int))
        knots_x, knots_y = knots_x[keep], knots_y[keep]
    return ConfidenceCalibration(
        confidence=tuple(round(float(v), 6) for v in knots_x),
        accuracy=tuple(round(float(v), 6) for v in knots_y),
    )


def fit_classifier(
    frame: pd.DataFrame,
    schema: FeatureSchema,
    params: TrainingParams,
    *,
    order: np.ndarray | None = None,
) -> Classifier:
    """Fit the classifier on ``frame``; calibrate its prediction set (forward in time
    when the rows' ``order`` is given) and its confidence map out of fold."""
    y = target_labels(frame, schema.target)
    X = frame[list(schema.names)]
    pipeline = build_classifier(schema, params)
    classes = tuple(json_label(c) for c in np.unique(y))
    truth = actual_index(y.tolist(), classes)

    held_out = out_of_fold_probabilities(pipeline, X, y, classes, params, order)
    known = ~np.isnan(held_out[:, 0])
    shuffled = (
        held_out if order is None else out_of_fold_probabilities(pipeline, X, y, classes, params)
    )
    calibrated = ~np.isnan(shuffled[:, 0])
    pipeline.fit(X, y)
    return Classifier(
        pipeline=pipeline,
        prediction_set=PredictionSetSpec(
            level=params.interval_level,
            threshold=set_threshold(held_out[known], truth[known], params.interval_level),
        ),
        calibration=confidence_calibration(shuffled[calibrated], truth[calibrated]),
        classes=classes_of(pipeline),
        schema=schema,
    )
