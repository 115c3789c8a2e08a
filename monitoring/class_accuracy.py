"""Accuracy of a classifier's labelled predictions, the counterpart of
:class:`monitoring.accuracy.AccuracyMetrics` for a classification version.

A classifier's log row holds the predicted class's index and the class probabilities
in the version's classes order; its label is the true class as text
(``feedback.label``, :func:`watchkeeper.task.label_text`). The prediction set is
recomputed from the probabilities and the version's threshold, as serving built it. A
label of a class the model never saw is a real outcome and counts as wrong
(:func:`watchkeeper.classification.classification_metrics`).

The accuracy carries a Wilson score interval, each bound one-sided at the monitor's
``trigger_accuracy_confidence``: the retrain trigger and the alert compare the *upper*
bound with the validation accuracy less the allowed drop, so that a dip over a few
dozen labels does not retrain. Wilson rather than the normal approximation because an
accuracy near 1 over few labels would give a bound above 1 (or an interval of width
zero at 100 %).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from monitoring.check_details import ClassAccuracyDetails
from watchkeeper.classification import (
    ClassPredictions,
    PredictionSetSpec,
    classification_metrics,
)
from watchkeeper.task import Task, label_text


@dataclass(frozen=True)
class ClassVersion:
    """What the monitor needs of a classification version, read from its metadata
    (no model load): the classes in probability-column order and the set's rule."""

    classes: tuple[Any, ...]
    prediction_set: PredictionSetSpec


@dataclass(frozen=True)
class WilsonInterval:
    lower: float
    upper: float


def wilson_interval(correct: int, n: int, confidence: float) -> WilsonInterval:
    """Wilson score bounds of a proportion ``correct / n``, each one-sided at
    ``confidence`` (the true accuracy is below ``upper`` with probability
    ``confidence``). With no labels nothing is known: [0, 1]."""
    if n <= 0:
        return WilsonInterval(0.0, 1.0)
    z = float(stats.norm.ppf(confidence))
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return WilsonInterval(max(0.0, centre - half), min(1.0, centre + half))


def true_labels(labelled: pd.DataFrame) -> list[str]:
    """Each row's true class as text: ``label``, or the numeric ``actual`` of feedback
    stored before labels had a column of their own."""
    labels = labelled["label"].tolist() if "label" in labelled else [None] * len(labelled)
    actual = labelled["actual"].tolist()
    return [
        label if label is not None else label_text(number)
        for label, number in zip(labels, actual, strict=True)
    ]


def finite_class_rows(rows: pd.DataFrame, classes: int | None = None) -> np.ndarray:
    """Each row: it has a predicted class. A row whose class probabilities the model
    returned as NaN or an infinity has none: serving logs its class as NaN and those
    probabilities as ``null`` (JSON has no such number); a row logged before that kept
    an arbitrary class (an argmax over NaN) beside its ``null`` probabilities. Neither
    can be judged, tested for drift or scored by its confidence. Nor can a row whose
    stored "probabilities" are no probabilities (text, or a number outside [0, 1]: no
    row serving writes, a buggy writer's): a negative confidence fell in no calibration
    bin and raised on every cycle that read its label. Given the version's number of
    ``classes``, nor can a row holding another number of probabilities (a malformed
    row, or another model's)."""
    finite = np.isfinite(rows["prediction"].to_numpy(dtype=np.float64))
    if "probabilities" in rows:
        for i, stored in enumerate(rows["probabilities"].tolist()):
            if isinstance(stored, list | tuple) and (
                not all(map(_is_probability, stored))
                or (classes is not None and len(stored) != classes)
            ):
                finite[i] = False
    return finite


def _is_probability(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def class_predictions(rows: pd.DataFrame, version: ClassVersion) -> ClassPredictions:
    """The rows' predictions as served: stored probabilities, prediction sets recomputed
    from them. A row logged without probabilities counts as certain of its predicted
    class (all the log says of it)."""
    k = len(version.classes)
    probabilities = np.zeros((len(rows), k), dtype=np.float64)
    for i, (stored, predicted) in enumerate(
        zip(rows["probabilities"].tolist(), rows["prediction"].tolist(), strict=True)
    ):
        if isinstance(stored, list | tuple) and len(stored) == k:
            probabilities[i] = np.asarray(stored, dtype=np.float64)
        else:
            probabilities[i, min(max(int(predicted), 0), k - 1)] = 1.0
    return ClassPredictions(
        classes=version.classes,
        probabilities=probabilities,
        members=version.prediction_set.members(probabilities),
    )


@dataclass(frozen=True)
class ClassificationAccuracy:
    """Accuracy of a set of a classifier's labelled predictions."""

    labels: int
    accuracy: float
    accuracy_lower_bound: float
    accuracy_upper_bound: float
    """One-sided Wilson bounds at the monitor's confidence (see the module docstring)."""
    log_loss: float
    brier: float
    set_coverage: float
    """Share of true classes inside the prediction set."""
    set_size: float
    ece: float
    """Expected calibration error of the confidence (top probability)."""
    recall: dict[str, float]
    """Per true class (label text) seen among the labels."""
    unknown_labels: int
    """Labels of a class the model never saw (counted wrong)."""
    label_delay_seconds_median: float
    label_delay_seconds_max: float
    non_finite_predictions: int = 0
    """Labelled predictions left out: the model returned a class probability as NaN or
    an infinity, so there was no class to judge (:func:`finite_class_rows`). With none
    left, the figures are NaN."""

    @classmethod
    def of(
        cls, labelled: pd.DataFrame, version: ClassVersion, *, confidence: float
    ) -> ClassificationAccuracy:
        finite = finite_class_rows(labelled)
        non_finite = int(finite.size - np.count_nonzero(finite))
        if non_finite:
            labelled = labelled[finite]
            if labelled.empty:
                return cls.unmeasured(non_finite)
        actual = true_labels(labelled)
        predicted = class_predictions(labelled, version)
        metrics = classification_metrics(actual, predicted)
        known = {label_text(c) for c in version.classes}
        n = int(metrics.required("rows"))
        correct = int(round(metrics.required("accuracy") * n))
        bounds = wilson_interval(correct, n, confidence)
        delay = (
            pd.to_datetime(labelled["received_at"], utc=True)
            - pd.to_datetime(labelled["created_at"], utc=True)
        ).dt.total_seconds()
        return cls(
            labels=n,
            accuracy=metrics.required("accuracy"),
            accuracy_lower_bound=bounds.lower,
            accuracy_upper_bound=bounds.upper,
            log_loss=metrics.required("log_loss"),
            brier=metrics.required("brier"),
            set_coverage=metrics.required("set_coverage"),
            set_size=metrics.required("set_size"),
            ece=metrics.required("ece"),
            recall=dict(metrics.recall or {}),
            unknown_labels=sum(label not in known for label in actual),
            label_delay_seconds_median=float(np.median(delay)),
            label_delay_seconds_max=float(np.max(delay)),
            non_finite_predictions=non_finite,
        )

    @classmethod
    def unmeasured(cls, non_finite: int) -> ClassificationAccuracy:
        """No labelled prediction with a class: nothing measured (the accuracy within
        [0, 1], as :func:`wilson_interval` says of no labels)."""
        nan = math.nan
        return cls(0, nan, 0.0, 1.0, nan, nan, nan, nan, nan, {}, 0, nan, nan, non_finite)

    def as_details(self, **extra: float | None) -> ClassAccuracyDetails:
        """Stored as a result's details; ``task`` tells readers (metrics, the trigger,
        the report) which figures to expect."""
        return ClassAccuracyDetails(task=Task.CLASSIFICATION, **asdict(self), **extra)
