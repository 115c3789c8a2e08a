"""Rows of the prediction log a report draws: a window's features, and the rows the
monitor scored furthest out of distribution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from monitoring.report.queries import of_version_in_period, within
from monitoring.report.records import Period
from watchkeeper.db.features import feature_records
from watchkeeper.db.planner_hints import unindexed
from watchkeeper.db.prediction_view import held_time, seq_between
from watchkeeper.db.tables import predictions, requests

FeatureValues = dict[str, Any]
"""One logged prediction's features by name, as the client sent them (JSON values)."""


@dataclass(frozen=True)
class ScoredRow:
    """A logged prediction with its OOD score and its features."""

    seq: int
    prediction_id: str
    created_at: datetime
    model_version: str
    prediction: float
    ood_score: float
    features: FeatureValues


def window_features(
    engine: sa.Engine, model_version: str, first_seq: int, last_seq: int
) -> pd.DataFrame:
    """The features of a window's predictions (one column per feature): its requests
    read by the index on ``requests.seq``, the version checked rather than looked up
    (SQLite without statistics would read all of the version's requests)."""
    query = (
        sa.select(predictions.c.request_id, predictions.c.item_index, predictions.c.features)
        .where(
            seq_between(first_seq - 1, last_seq),
            unindexed(predictions.c.model_version) == model_version,
        )
        .order_by(predictions.c.request_seq, predictions.c.item_index)  # = seq
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        records = feature_records(connection, rows)
    return pd.DataFrame.from_records(records)


def most_out_of_distribution(engine: sa.Engine, period: Period, limit: int) -> list[ScoredRow]:
    """The ``limit`` scored predictions of the period with the highest OOD score,
    highest first (a NaN score ranks nowhere).

    Only the requests that can hold them are expanded: the ``limit`` of the period with
    the highest ``max_ood_score``, since a prediction among the top ones has fewer than
    ``limit`` predictions above it, so fewer than ``limit`` requests whose highest score
    beats its request's. Expanding every request of the period through the view to sort
    its items took ten times as long (migration 0011). A period's or a version's
    requests are found by their index; the whole log is ranked from the ``seq`` index,
    which holds each request's score beside its ``seq`` (migration 0013), without
    reading the requests' rows."""
    score = requests.c.max_ood_score
    top_requests = (
        sa.select(requests.c.seq)
        .where(
            score.is_not(None),
            *within(period, requests.c.received_at),
            *of_version_in_period(period, requests.c.model_version),
        )
        .order_by(score.desc(), requests.c.seq)
        .limit(limit)
    )
    query = (
        sa.select(
            predictions.c.seq,
            predictions.c.prediction_id,
            predictions.c.request_id,
            predictions.c.item_index,
            held_time(predictions.c.created_at).label("created_at"),
            predictions.c.model_version,
            predictions.c.features,
            predictions.c.prediction,
            predictions.c.ood_score,
        )
        .where(predictions.c.ood_score.is_not(None))
        .order_by(predictions.c.ood_score.desc(), predictions.c.seq)
        .limit(limit)
    )
    if engine.dialect.name == "postgresql":
        # PostgreSQL reads a NaN score as NaN, which sorts above every number.
        query = query.where(predictions.c.ood_score != sa.text("'NaN'::float8"))
    with engine.connect() as connection:
        seqs = list(connection.execute(top_requests).scalars())
        if not seqs:
            return []
        query = query.where(predictions.c.request_seq.in_(seqs))
        # a time none pandas holds (a foreign writer's year 9999, PostgreSQL's
        # infinity, which psycopg cannot read) is left out, as the monitor leaves it
        rows = [row for row in connection.execute(query) if row.created_at is not None]
        records = feature_records(connection, rows)
    return [
        ScoredRow(
            seq=int(row.seq),
            prediction_id=str(row.prediction_id),
            created_at=row.created_at,
            model_version=str(row.model_version),
            prediction=float(row.prediction),
            ood_score=float(row.ood_score),
            features=features,
        )
        for row, features in zip(rows, records, strict=True)
    ]
