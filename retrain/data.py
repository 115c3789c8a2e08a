"""The data of a retraining job: the original training data plus labelled predictions.

Labelled predictions are the logged feature rows of predictions that received
feedback within the window, their actual value as the target. The most recent share
of them (by prediction time) is held out: candidate and champion are both judged on
it, so the comparison is on the newest data neither was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from watchkeeper.data_source import AMES, DataSourceError, describe_csv, load_source
from watchkeeper.dataset import Dataset
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import feedback, predictions
from watchkeeper.errors import WatchkeeperError
from watchkeeper.registry import RegisteredModel
from watchkeeper.schema import FeatureSchema
from watchkeeper.version_metadata import DataSource


class NotEnoughData(WatchkeeperError):
    status_code = 409
    code = "not_enough_labelled_data"


@dataclass(frozen=True)
class RetrainData:
    training: Dataset
    holdout: Dataset
    description: dict[str, Any]
    source: DataSource | None = None
    """Where the base data came from: recorded with the candidate, as with its champion."""


@dataclass(frozen=True)
class BaseData:
    """The original training data a model family started from, and its source."""

    dataset: Dataset
    source: DataSource


def base_dataset(
    champion: RegisteredModel, *, csv: str | None = None, target: str | None = None
) -> BaseData:
    """The champion's original training data, as its metadata records it
    (``data_source``), restricted to its training window.

    ``csv`` (and ``target``) replace the recorded source: the candidate then records
    that file. Versions registered before sources were recorded find the packaged Ames
    data by name; any other data must then be named with ``csv``.
    """
    window = champion.record.training_window
    base = window.get("base", window)
    source = champion.record.data_source
    if csv is not None:
        target = target or (source.target if source else None)
        if target is None:
            raise DataSourceError(f"--csv {csv} needs --target: the column to predict")
        period = base.get("period_column") or (source.period_column if source else None)
        source = describe_csv(csv, target, period)
    elif source is None:
        if base.get("dataset") != AMES.dataset:
            raise DataSourceError(
                f"the training data of {champion.version} ({base.get('dataset')!r}) was not "
                "recorded with it (it was registered before Watchkeeper recorded data "
                "sources): retrain once with --csv FILE --target COLUMN; the new version "
                "records it"
            )
        source = AMES
    dataset = load_source(source, version=champion.version)
    if dataset.period is not None and "start" in base:
        dataset = dataset.between(base["start"], base["end"])
    return BaseData(dataset, source)


def labelled_predictions(
    engine: sa.Engine, schema: FeatureSchema, *, since: datetime
) -> pd.DataFrame:
    """Logged features of predictions with feedback received after ``since``, oldest
    prediction first, with the actual value in the schema's target column."""
    query = (
        sa.select(
            predictions.c.request_id,
            predictions.c.item_index,
            predictions.c.features,
            predictions.c.created_at,
            feedback.c.actual,
        )
        .join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
        .where(feedback.c.received_at >= since)
        .order_by(predictions.c.created_at, predictions.c.seq)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        records = feature_records(connection, rows)
    frame = pd.DataFrame.from_records(records, columns=list(schema.names))
    frame[schema.target] = [r.actual for r in rows]
    frame["_predicted_at"] = [r.created_at for r in rows]
    return frame


def assemble(
    engine: sa.Engine,
    base: Dataset,
    schema: FeatureSchema,
    *,
    window_days: float,
    holdout_fraction: float,
    min_holdout: int,
) -> RetrainData:
    since = datetime.now(UTC) - timedelta(days=window_days)
    labelled = labelled_predictions(engine, schema, since=since)
    n_holdout = math.ceil(len(labelled) * holdout_fraction)
    if n_holdout < min_holdout:
        raise NotEnoughData(
            f"{len(labelled)} labelled predictions in the last {window_days:g} days give a "
            f"holdout of {n_holdout}; at least {min_holdout} are needed"
        )
    columns = [*schema.names, schema.target]
    recent = labelled.iloc[len(labelled) - n_holdout :]
    older = labelled.iloc[: len(labelled) - n_holdout]
    training_frame = pd.concat([base.frame[columns], older[columns]], ignore_index=True)
    training = replace(base, frame=training_frame, period=None, exclude=())
    holdout = replace(base, frame=recent[columns].reset_index(drop=True), period=None, exclude=())
    description = {
        "base": base.window(),
        "labelled_rows": len(labelled),
        "labelled_in_training": len(older),
        "holdout_rows": len(recent),
        "training_rows": len(training_frame),
        "window_days": window_days,
        "holdout_from": _iso(recent["_predicted_at"].iloc[0]),
        "holdout_to": _iso(recent["_predicted_at"].iloc[-1]),
    }
    return RetrainData(training=training, holdout=holdout, description=description)


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat()
