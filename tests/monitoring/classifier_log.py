"""A classifier's prediction log written straight into the log (a request per
prediction, :mod:`tests.monitoring.log_rows`), as the contract between serving and the
monitor describes its predictions: ``prediction`` (and ``lower``,
``upper``) = the predicted class's index, ``probabilities`` in the version's classes
order, ``feedback.label`` = the true class as text. The monitor's tests do not depend on
how serving writes them.

The data: a binary outcome drawn from a known logistic truth, so that labels drawn from
it make a model's calibration testable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tests.monitoring.log_rows import store_rows
from watchkeeper.classification import Classifier
from watchkeeper.db.tables import feedback
from watchkeeper.task import label_text
from watchkeeper.training import TrainedModel

NOW = datetime(2026, 3, 1, tzinfo=UTC)
"""When the first logged prediction was made; each next one a second later."""


def draw(n: int, seed: int, *, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and each row's true chance of ``churn``; ``shift`` moves ``x`` (and so
    the class mix)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    p_churn = 1 / (1 + np.exp(-(1.6 * x + 0.8 * (colour == "red") - 0.3)))
    return pd.DataFrame({"x": x, "colour": colour}), p_churn


def outcomes(p_churn: np.ndarray, seed: int) -> list[str]:
    """True classes drawn from the rows' chances."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(p_churn.size) < p_churn, "churn", "stay").tolist()


def classifier_of(trained: TrainedModel) -> Classifier:
    assert isinstance(trained.model, Classifier)
    return trained.model


def write_rows(
    engine: sa.Engine,
    model: Classifier,
    frame: pd.DataFrame,
    *,
    start: int = 0,
    version: str = "v1",
) -> list[str]:
    """Rows of a classifier version as serving logs them, a request each; returns
    prediction ids."""
    predicted = model.predict(frame)
    rows = [
        {
            "request_id": f"c{start + i:08d}",
            "item_index": 0,
            "created_at": NOW + timedelta(seconds=start + i),
            "model_version": version,
            "features": {"x": float(frame["x"].iloc[i]), "colour": str(frame["colour"].iloc[i])},
            "prediction": float(index),
            "lower": float(index),
            "upper": float(index),
            "probabilities": [float(p) for p in probabilities],
        }
        for i, (index, probabilities) in enumerate(
            zip(predicted.index.tolist(), predicted.probabilities, strict=True)
        )
    ]
    return store_rows(engine, rows)


def write_labels(engine: sa.Engine, ids: list[str], labels: list[Any]) -> None:
    """Labels as ``/feedback`` stores them for a classifier (received a moment ago)."""
    received = datetime.now(UTC) - timedelta(seconds=1)
    rows = [
        {
            "prediction_id": pid,
            "label": label_text(label),
            "actual": float(label) if isinstance(label, int | float) else None,
            "received_at": received,
        }
        for pid, label in zip(ids, labels, strict=True)
    ]
    with engine.begin() as connection:
        connection.execute(feedback.insert(), rows)
