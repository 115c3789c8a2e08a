"""Rows of the prediction log a report draws: a window's features, and the rows the
monitor scored furthest out of distribution."""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from monitoring.report.queries import of_version, within
from monitoring.report.records import Period
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import predictions


def window_features(
    engine: sa.Engine, model_version: str, first_seq: int, last_seq: int
) -> pd.DataFrame:
    """The features of a window's predictions (one column per feature)."""
    query = (
        sa.select(predictions.c.request_id, predictions.c.item_index, predictions.c.features)
        .where(
            predictions.c.seq >= first_seq,
            predictions.c.seq <= last_seq,
            predictions.c.model_version == model_version,
        )
        .order_by(predictions.c.seq)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        records = feature_records(connection, rows)
    return pd.DataFrame.from_records(records)


def most_out_of_distribution(
    engine: sa.Engine, period: Period, limit: int
) -> list[tuple[Any, dict[str, Any]]]:
    """The ``limit`` scored predictions of the period with the highest OOD score,
    highest first, each with a ``features`` record."""
    query = (
        sa.select(
            predictions.c.seq,
            predictions.c.prediction_id,
            predictions.c.request_id,
            predictions.c.item_index,
            predictions.c.created_at,
            predictions.c.model_version,
            predictions.c.features,
            predictions.c.prediction,
            predictions.c.ood_score,
        )
        .where(
            predictions.c.ood_score.is_not(None),
            *within(period, predictions.c.created_at),
            *of_version(period, predictions.c.model_version),
        )
        .order_by(predictions.c.ood_score.desc(), predictions.c.seq)
        .limit(limit)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        records = feature_records(connection, rows)
    return list(zip(rows, records, strict=True))
