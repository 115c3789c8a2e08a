"""Data quality of a window, from the model's feature schema and the request log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from watchkeeper.db.tables import requests
from watchkeeper.schema import FeatureSchema


def feature_quality(features: pd.DataFrame, schema: FeatureSchema) -> dict[str, dict[str, float]]:
    """Per feature: share of missing values, of categories never seen in training, and
    of numbers outside the range training saw."""
    out: dict[str, dict[str, float]] = {}
    n = max(len(features), 1)
    for f in schema.features:
        column = features[f.name]
        missing = column.isna().to_numpy()
        rates = {"missing_rate": float(missing.sum() / n)}
        if f.is_numeric:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            lo = -np.inf if f.observed_min is None else f.observed_min
            hi = np.inf if f.observed_max is None else f.observed_max
            outside = ~missing & ((values < lo) | (values > hi))
            rates["out_of_range_rate"] = float(outside.sum() / n)
        else:
            unseen = ~missing & ~column.isin(f.categories).to_numpy()
            rates["unseen_category_rate"] = float(unseen.sum() / n)
        out[f.name] = rates
    return out


def rejected_rate(engine: sa.Engine, start: datetime, end: datetime) -> dict[str, Any]:
    """Share of ``/predict`` requests answered 4xx between ``start`` and ``end``."""
    predict = requests.c.endpoint == "/predict"
    window = requests.c.received_at.between(start, end)
    query = sa.select(
        sa.func.count(),
        sa.func.sum(sa.case((requests.c.status_code.between(400, 499), 1), else_=0)),
    ).where(predict, window)
    with engine.connect() as connection:
        total, rejected = connection.execute(query).one()
    total, rejected = int(total or 0), int(rejected or 0)
    return {"requests": total, "rejected": rejected, "rate": rejected / total if total else 0.0}
