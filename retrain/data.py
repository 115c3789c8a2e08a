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
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from watchkeeper.dataset import Dataset, load_ames, load_csv
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import feedback, predictions
from watchkeeper.errors import WatchkeeperError
from watchkeeper.schema import FeatureSchema


class NotEnoughData(WatchkeeperError):
    status_code = 409
    code = "not_enough_labelled_data"


@dataclass(frozen=True)
class RetrainData:
    training: Dataset
    holdout: Dataset
    description: dict[str, Any]


def base_dataset(
    window: dict[str, Any], *, csv: str | None = None, target: str | None = None
) -> Dataset:
    """The original training data a model family started from.

    ``window`` is the champion's recorded training window; the Ames data ships in a
    package, other datasets are read from ``csv``.
    """
    base = window.get("base", window)
    if base.get("dataset") == "ames" and csv is None:
        dataset = load_ames()
    elif csv is not None and target is not None:
        dataset = load_csv(Path(csv), target, period=base.get("period_column"))
    else:
        raise NotEnoughData(
            f"the original training data ({base.get('dataset')!r}) is not packaged: "
            "pass --csv and --target"
        )
    if dataset.period is not None and "start" in base:
        dataset = dataset.between(base["start"], base["end"])
    return dataset


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
