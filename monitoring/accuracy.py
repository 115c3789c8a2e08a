"""Accuracy from ground truth: feedback joined to the predictions it labels.

Feedback arrives long after its predictions, so accuracy has its own stream: each
cycle takes the feedback received since the last accuracy result (a watermark on
``feedback.received_at``) and, once at least ``min_labels`` have come in, reports
MAE, RMSE, MAPE, interval coverage and the label delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from watchkeeper.db.tables import feedback, predictions


@dataclass(frozen=True)
class AccuracyWindow:
    model_version: str
    labelled: pd.DataFrame
    received_from: datetime
    received_to: datetime

    def metrics(self) -> dict[str, Any]:
        actual = self.labelled["actual"].to_numpy(dtype=np.float64)
        predicted = self.labelled["prediction"].to_numpy(dtype=np.float64)
        error = predicted - actual
        nonzero = actual != 0
        inside = (actual >= self.labelled["lower"]) & (actual <= self.labelled["upper"])
        delay = (
            pd.to_datetime(self.labelled["received_at"], utc=True)
            - pd.to_datetime(self.labelled["created_at"], utc=True)
        ).dt.total_seconds()
        return {
            "labels": int(actual.size),
            "mae": float(np.mean(np.abs(error))),
            "rmse": float(np.sqrt(np.mean(error**2))),
            "mape": float(np.mean(np.abs(error[nonzero] / actual[nonzero])) * 100),
            "coverage": float(np.mean(inside)),
            "label_delay_seconds_median": float(np.median(delay)),
            "label_delay_seconds_max": float(np.max(delay)),
        }


def to_micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def read_labelled(engine: sa.Engine, after: datetime, up_to: datetime) -> pd.DataFrame:
    query = (
        sa.select(
            feedback.c.prediction_id,
            feedback.c.actual,
            feedback.c.received_at,
            predictions.c.created_at,
            predictions.c.model_version,
            predictions.c.prediction,
            predictions.c.lower,
            predictions.c.upper,
        )
        .join(predictions, predictions.c.prediction_id == feedback.c.prediction_id)
        .where(feedback.c.received_at > after, feedback.c.received_at <= up_to)
        .order_by(feedback.c.received_at)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pd.DataFrame(rows, columns=[c.name for c in query.selected_columns])


def accuracy_windows(
    labelled: pd.DataFrame, *, min_labels: int, after: datetime, up_to: datetime
) -> list[AccuracyWindow]:
    """Once ``min_labels`` labels have arrived: one window per model version they label.
    Fewer: nothing yet, the labels wait for the next cycle."""
    if len(labelled) < min_labels:
        return []
    return [
        AccuracyWindow(str(version), group.reset_index(drop=True), after, up_to)
        for version, group in labelled.groupby("model_version", sort=True)
    ]


def settled_now(settle_seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=settle_seconds)
