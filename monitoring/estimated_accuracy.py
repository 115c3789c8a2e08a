"""Accuracy before the labels arrive: each window's MAE as the model's own loss
estimator expects it (direct loss estimation, :mod:`watchkeeper.loss_estimator`).

House prices are known weeks after the prediction; the estimate says at once whether
accuracy is likely falling. It is stored per window as a ``window_results`` row with
detector ``estimated_accuracy`` (score: the estimated MAE; details: ``estimated_mae``,
``n_rows``), under the same ``window_id`` as the window's other checks, so that the
realised MAE of the window can be set beside it when its labels arrive
(:func:`read_estimates`).

A version registered before the estimator existed gets a result with no estimate and a
``reason``, never an error: its windows are monitored as before.

A classifier's estimate is its accuracy (the confidence-based estimate NannyML calls
CBPE): the mean, over the window's rows, of the version's confidence calibration
(:class:`watchkeeper.classification.ConfidenceCalibration`, learnt out of fold at
training) at each row's confidence, the top class probability. The probabilities are
the ones the log stored as served; only a row logged without them is predicted again.
Its result's score is the estimated accuracy (details: ``task``,
``estimated_accuracy``, ``n_rows``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitoring.check_details import EstimateDetails
from monitoring.class_accuracy import finite_class_rows
from monitoring.log_reader import features_of
from monitoring.window_result import WindowResult
from monitoring.windows import Window
from watchkeeper.classification import Classifier, ServedModel
from watchkeeper.db.tables import window_results
from watchkeeper.model import Model
from watchkeeper.registry import ModelRegistry
from watchkeeper.task import Task
from watchkeeper.version_metadata import VersionMetadata

log = logging.getLogger(__name__)

DETECTOR = "estimated_accuracy"


@dataclass(frozen=True)
class WindowEstimate:
    """One window's estimated MAE (a regression version) or accuracy (a classifier);
    ``estimated_mae`` is None, with the ``reason``, when a regression version has no
    loss estimator."""

    window_id: str
    model_version: str
    n_rows: int
    estimated_mae: float | None
    reason: str | None = None
    estimated_accuracy: float | None = None
    task: Task = Task.REGRESSION
    non_finite_predictions: int = 0
    """A classifier's rows left out: a class probability was NaN or an infinity."""

    @property
    def score(self) -> float | None:
        """The figure stored as the result's score."""
        if self.task is Task.CLASSIFICATION:
            return self.estimated_accuracy
        return self.estimated_mae

    def details(self) -> EstimateDetails:
        """The result's details: the task's estimate and the window's size (a regression
        estimate stores no ``task``, as before classifiers), and a ``reason`` if any."""
        reason = {} if self.reason is None else {"reason": self.reason}
        if self.task is Task.CLASSIFICATION:
            return EstimateDetails(
                task=self.task,
                estimated_accuracy=self.estimated_accuracy,
                n_rows=self.n_rows,
                non_finite_predictions=self.non_finite_predictions,
                **reason,
            )
        return EstimateDetails(estimated_mae=self.estimated_mae, n_rows=self.n_rows, **reason)


class AccuracyEstimator:
    """Estimates windows' MAE with the loss estimator of the version that served them,
    or a classifier's accuracy with its confidence calibration; each version's metadata
    (and, where needed, model) read from the registry once (hash-checked like any
    load)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._models: dict[str, ServedModel] = {}
        self._records: dict[str, VersionMetadata] = {}

    def record(self, version: str) -> VersionMetadata:
        if version not in self._records:
            self._records[version] = self.registry.record(version)
        return self._records[version]

    def model(self, version: str) -> ServedModel:
        if version not in self._models:
            model = self.registry.load(version).model
            if isinstance(model, Model) and not model.has_loss_estimator:
                log.warning(
                    "model %s was registered without a loss estimator: no estimated MAE "
                    "for its windows (retrain it to get one)",
                    version,
                )
            self._models[version] = model
        return self._models[version]

    def estimate(
        self,
        window: Window,
        features: pd.DataFrame | None = None,
        *,
        rows: pd.DataFrame | None = None,
    ) -> WindowEstimate:
        """The window's estimate, over ``rows`` (a sample of the window's rows, by
        default all of them) whose features are ``features`` when the caller has built
        them already (the costly part on large windows). ``n_rows`` is what the window
        holds."""
        record = self.record(window.model_version)
        rows = window.rows if rows is None else rows
        if features is None:
            features = features_of(rows, record.feature_schema.names)
        if record.task is Task.CLASSIFICATION:
            return self._estimate_accuracy(window, rows, features, record)
        model = self.model(window.model_version)
        assert isinstance(model, Model)  # the metadata says regression
        predictions = rows["prediction"].to_numpy(dtype=np.float64)
        errors = model.expected_absolute_errors(features, predictions)
        if errors is None:
            return WindowEstimate(
                window.window_id,
                window.model_version,
                len(window.rows),
                None,
                reason=f"model {window.model_version} has no loss estimator "
                "(registered before direct loss estimation)",
            )
        return WindowEstimate(
            window.window_id, window.model_version, len(window.rows), float(errors.mean())
        )

    def _estimate_accuracy(
        self, window: Window, rows: pd.DataFrame, features: pd.DataFrame, record: VersionMetadata
    ) -> WindowEstimate:
        assert record.confidence_calibration is not None  # the metadata's validator
        # rows whose probabilities were NaN or infinite have no confidence: left out
        finite = finite_class_rows(rows)
        if not finite.all():
            rows, features = rows[finite], features[finite]
        confidence = self.confidence(
            window.model_version, rows, features, len(record.classes or ())
        )
        scored = np.isfinite(confidence)  # a row predicted again may be NaN too
        non_finite = int(finite.size - np.count_nonzero(scored))
        estimate = None
        if scored.any():
            calibration = record.confidence_calibration.spec()
            estimate = float(np.mean(calibration.expected_accuracy(confidence[scored])))
        return WindowEstimate(
            window.window_id,
            window.model_version,
            len(window.rows),
            None,
            reason=None if estimate is not None else "no prediction with a class to score",
            estimated_accuracy=estimate,
            task=Task.CLASSIFICATION,
            non_finite_predictions=non_finite,
        )

    def confidence(
        self, version: str, rows: pd.DataFrame, features: pd.DataFrame, n_classes: int
    ) -> np.ndarray:
        """Each row's top class probability: as stored by serving, or, for a row logged
        without probabilities, as the model predicts it now."""
        stored = rows["probabilities"] if "probabilities" in rows else None
        confidence = np.full(len(rows), np.nan)
        if stored is not None:
            for i, probabilities in enumerate(stored.tolist()):
                if isinstance(probabilities, list | tuple) and len(probabilities) == n_classes:
                    confidence[i] = max(float(p) for p in probabilities)
        missing = np.isnan(confidence)
        if missing.any():
            model = self.model(version)
            assert isinstance(model, Classifier)
            confidence[missing] = model.predict(features[missing]).confidence
        return confidence


def read_estimates(engine: sa.Engine, model_version: str | None = None) -> list[WindowEstimate]:
    """Stored estimates in log order (of one version, or all), errors left out."""
    query = (
        sa.select(window_results)
        .where(window_results.c.detector == DETECTOR)
        .order_by(window_results.c.first_seq)
    )
    if model_version is not None:
        query = query.where(window_results.c.model_version == model_version)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    results = [WindowResult.from_row(row._mapping) for row in rows]
    return [
        WindowEstimate(
            window_id=result.window_id,
            model_version=result.model_version,
            n_rows=details.n_rows,
            estimated_mae=details.estimated_mae,
            reason=details.reason,
            estimated_accuracy=details.estimated_accuracy,
            task=details.task,
            non_finite_predictions=details.non_finite_predictions or 0,
        )
        for result in results
        if (details := result.details_as(EstimateDetails)) is not None
    ]
