"""A fitted classifier as the platform uses it: a label, class probabilities and a
conformal prediction set, the classification counterpart of the interval.

The set holds every class whose probability reaches a threshold calibrated at training
time on held-out probabilities (split conformal with the score ``1 - p(true class)``,
"LAC"): over exchangeable rows it contains the true class with probability at least
the nominal level. It always holds the predicted class, so it is never empty. Serving
costs one ``predict_proba`` per batch.

A classifier also carries an isotonic map from its confidence (the top probability) to
the chance that its label is right, learnt from the same held-out predictions. The
monitor averages it over a window to estimate accuracy before labels arrive (the
confidence-based estimate NannyML calls CBPE): raw boosted-tree probabilities are
over-confident, and the map corrects that as the training data saw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from watchkeeper.model import Model
from watchkeeper.model_metrics import ModelMetrics
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import Task, json_label, label_text

if TYPE_CHECKING:  # scikit-learn: what reads only a version's metadata never needs it
    from sklearn.base import ClassifierMixin

    from watchkeeper.encoding import Columns

ECE_BINS = 10
LOG_LOSS_FLOOR = 1e-15
"""Probability a log-loss gives a true class the model ruled out (or never saw)."""


@dataclass(frozen=True)
class PredictionSetSpec:
    """``level`` of nominal coverage; a class is in the set when its probability is at
    least ``threshold``."""

    level: float
    threshold: float

    def members(self, probabilities: np.ndarray) -> np.ndarray:
        """A boolean (rows, classes) mask: each row's prediction set. A row with a
        probability that is NaN or infinite has none (no class is predicted for it:
        :attr:`ClassPredictions.finite`), so its mask is all False."""
        members = probabilities >= self.threshold
        if len(probabilities):
            finite = np.isfinite(probabilities).all(axis=1)
            rows = np.arange(len(probabilities))
            members[rows, probabilities.argmax(axis=1)] = True
            if not finite.all():
                members[~finite] = False
        return members


@dataclass(frozen=True)
class ConfidenceCalibration:
    """A monotone map from a prediction's confidence to the chance it is right,
    stored as the knots of a piecewise-linear function."""

    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]

    def expected_accuracy(self, confidence: np.ndarray) -> np.ndarray:
        if not self.confidence:
            return np.asarray(confidence, dtype=np.float64)
        return np.interp(confidence, self.confidence, self.accuracy)


@dataclass(frozen=True)
class ClassPredictions:
    """Each row's predicted class (``index`` into ``classes``), its class probabilities
    (columns in ``classes`` order) and its prediction set (``members``).

    A model may return NaN (or an infinity) as a probability, e.g. a softmax of
    overflowing decision values: such a row has no predicted class, whatever ``index``
    (an argmax over NaN) says; ``finite`` tells them apart."""

    classes: tuple[Any, ...]
    probabilities: np.ndarray
    members: np.ndarray

    # Cached: the route's metric, its response and the journal line each read them.
    @cached_property
    def index(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @cached_property
    def finite(self) -> np.ndarray:
        """Each row: all its probabilities are numbers (it has a predicted class)."""
        return np.isfinite(self.probabilities).all(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @property
    def labels(self) -> list[Any]:
        classes = self.classes
        return [classes[i] for i in self.index.tolist()]

    @property
    def set_sizes(self) -> np.ndarray:
        return self.members.sum(axis=1)

    def sets(self) -> list[list[Any]]:
        classes = self.classes
        return [[classes[j] for j in np.flatnonzero(row)] for row in self.members]


@dataclass(frozen=True)
class Classifier:
    """What a registered classification version holds at run time. ``classes`` are the
    labels as JSON holds them, in the order of the pipeline's probability columns."""

    pipeline: ClassifierMixin
    prediction_set: PredictionSetSpec
    calibration: ConfidenceCalibration
    classes: tuple[Any, ...]
    schema: FeatureSchema
    version: str = ""

    task = Task.CLASSIFICATION

    def predict(self, columns: Columns) -> ClassPredictions:
        probabilities = np.asarray(self.pipeline.predict_proba(columns), dtype=np.float64)
        return ClassPredictions(
            classes=self.classes,
            probabilities=probabilities,
            members=self.prediction_set.members(probabilities),
        )

    def class_index(self, label: Any) -> int | None:
        """The position of ``label`` (any JSON form of it) among the classes, or None
        for a class the model never saw."""
        return _index_of(self.classes).get(label_text(label))


ServedModel = Model | Classifier
"""Either kind of registered model; branch on ``.task``."""


def classes_of(pipeline: Any) -> tuple[Any, ...]:
    return tuple(json_label(c) for c in pipeline.classes_)


def _index_of(classes: Sequence[Any]) -> dict[str, int]:
    return {label_text(c): i for i, c in enumerate(classes)}


def actual_index(actual: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Each label's position among ``classes``; -1 for a class the model never saw."""
    index = _index_of(classes)
    return np.fromiter((index.get(label_text(a), -1) for a in actual), np.int64, len(actual))


def classification_metrics(actual: Sequence[Any], predicted: ClassPredictions) -> ModelMetrics:
    """Accuracy, log-loss, Brier score, prediction-set coverage and mean size, expected
    calibration error and per-class recall (keyed by label text) of ``predicted``
    against the ``actual`` labels.

    A label of a class the model never saw counts as wrong, outside every set, and at
    probability :data:`LOG_LOSS_FLOOR` in the log-loss."""
    truth = actual_index(actual, predicted.classes)
    n = truth.size
    if n == 0:
        return ModelMetrics(rows=0)
    rows = np.arange(n)
    known = truth >= 0
    probabilities = predicted.probabilities
    p_true = np.where(known, probabilities[rows, np.maximum(truth, 0)], 0.0)
    correct = predicted.index == truth
    one_hot = np.zeros_like(probabilities)
    one_hot[rows[known], truth[known]] = 1.0
    recall = {
        label_text(c): float(np.mean(correct[truth == j]))
        for j, c in enumerate(predicted.classes)
        if np.any(truth == j)
    }
    return ModelMetrics(
        accuracy=float(np.mean(correct)),
        log_loss=float(-np.mean(np.log(np.maximum(p_true, LOG_LOSS_FLOOR)))),
        brier=float(np.mean(np.sum((probabilities - one_hot) ** 2, axis=1))),
        set_coverage=float(np.mean(known & predicted.members[rows, np.maximum(truth, 0)])),
        set_size=float(np.mean(predicted.set_sizes)),
        ece=expected_calibration_error(predicted.confidence, correct),
        recall=recall,
        rows=int(n),
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """The row-weighted mean gap between confidence and accuracy over
    :data:`ECE_BINS` equal-width confidence bins."""
    if confidence.size == 0:
        return 0.0
    bins = np.minimum((confidence * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    counts = np.bincount(bins, minlength=ECE_BINS)
    gap_sums = np.abs(
        np.bincount(bins, weights=correct.astype(np.float64), minlength=ECE_BINS)
        - np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    )
    return float(gap_sums.sum() / counts.sum())
