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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitoring.windows import Window
from watchkeeper.db.tables import window_results
from watchkeeper.model import Model
from watchkeeper.registry import ModelRegistry

log = logging.getLogger(__name__)

DETECTOR = "estimated_accuracy"


@dataclass(frozen=True)
class WindowEstimate:
    """One window's estimated MAE; ``estimated_mae`` is None, with the ``reason``,
    when its model version has no loss estimator."""

    window_id: str
    model_version: str
    n_rows: int
    estimated_mae: float | None
    reason: str | None = None

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"estimated_mae": self.estimated_mae, "n_rows": self.n_rows}
        if self.reason is not None:
            details["reason"] = self.reason
        return details


class AccuracyEstimator:
    """Estimates windows' MAE with the loss estimator of the version that served them,
    each version loaded from the registry once (hash-checked like any load)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._models: dict[str, Model] = {}

    def model(self, version: str) -> Model:
        if version not in self._models:
            model = self.registry.load(version).model
            if not model.has_loss_estimator:
                log.warning(
                    "model %s was registered without a loss estimator: no estimated MAE "
                    "for its windows (retrain it to get one)",
                    version,
                )
            self._models[version] = model
        return self._models[version]

    def estimate(self, window: Window, features: pd.DataFrame | None = None) -> WindowEstimate:
        """The window's estimated MAE. ``features`` are the window's features as a frame
        when the caller has built it already (it is the costly part on large windows)."""
        model = self.model(window.model_version)
        if features is None:
            features = pd.DataFrame.from_records(
                list(window.rows["features"]), columns=list(model.schema.names)
            )
        predictions = window.rows["prediction"].to_numpy(dtype=np.float64)
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
    return [
        WindowEstimate(
            window_id=row.window_id,
            model_version=row.model_version,
            n_rows=int(row.details.get("n_rows", row.n_rows)),
            estimated_mae=row.details.get("estimated_mae"),
            reason=row.details.get("reason"),
        )
        for row in rows
        if "error" not in row.details
    ]
