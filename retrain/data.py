"""The data of a retraining job: the original training data plus labelled predictions.

Labelled predictions are the logged feature rows of predictions that received
feedback within the window, their actual value as the target. The most recent share
of them (by prediction time) is held out: candidate and champion are both judged on
it, so the comparison is on the newest data neither was trained on.

With an archive window (``WATCHKEEPER_RETRAIN_ARCHIVE_DAYS``), labelled predictions a
prune wrote to the Parquet archive join the training part too (never the holdout,
which stays the database's newest), so training reaches past the log's retention.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from retrain.labels import NAMED, LeftOut, Screened, screen_classes, screen_values, trainable_range
from watchkeeper.data_source import AMES, DataSourceError, describe_csv, load_source
from watchkeeper.dataset import Dataset, DatasetError, data_columns
from watchkeeper.db.archive import archived_labels
from watchkeeper.db.tables import feedback
from watchkeeper.errors import WatchkeeperError
from watchkeeper.labelled_rows import LabelledRows
from watchkeeper.model_metrics import JsonForm
from watchkeeper.prediction_ids import logged_ids, logged_requests, parse_prediction_id
from watchkeeper.registry import RegisteredModel
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import label_text
from watchkeeper.version_metadata import DataSource, DataWindow, VersionMetadata

log = logging.getLogger(__name__)


class NotEnoughData(WatchkeeperError):
    status_code = 409
    code = "not_enough_labelled_data"


class ArchiveUnavailable(WatchkeeperError):
    """The archive window is set but there is no archive, or it cannot be read."""

    status_code = 409
    code = "archive_unavailable"


@dataclass(frozen=True)
class ArchiveWindow:
    """Where the log's archive is (``WATCHKEEPER_RETENTION_ARCHIVE``) and how many days
    of archived labels join training (``WATCHKEEPER_RETRAIN_ARCHIVE_DAYS``; 0: none)."""

    url: str = ""
    days: float = 0.0


@dataclass(frozen=True)
class RunData:
    """What a run trains and judges on, stored as the run's ``data`` and in its
    candidate's training window."""

    base: DataWindow
    """The champion's original training data, restricted to its training window."""
    labelled_rows: int
    labelled_in_training: int
    archived_in_training: int
    archive_days: float
    holdout_rows: int
    training_rows: int
    window_days: float
    holdout_from: str
    holdout_to: str
    left_out: tuple[LeftOut, ...] = ()
    """Labels neither trained nor judged on (:mod:`retrain.labels`), by reason."""

    def stored(self) -> JsonForm:
        """The JSON form (the base window with exactly its own keys)."""
        stored = {f.name: getattr(self, f.name) for f in fields(self)}
        left_out = [item.stored() for item in self.left_out]
        return {**stored, "base": self.base.stored(), "left_out": left_out}

    def left_out_summary(self) -> str | None:
        """The labels left out, for the run's reason and log line; None when none were."""
        if not self.left_out:
            return None
        return "left out " + "; ".join(item.describe() for item in self.left_out)


@dataclass(frozen=True)
class RetrainData:
    training: Dataset
    holdout: Dataset
    description: RunData
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
    that file. Without ``target``, the champion's target column, which the file must
    have (:func:`_champion_target`). Versions registered before sources were recorded
    find the packaged Ames data by name; any other data must then be named with
    ``csv``.
    """
    base = champion.record.training_window.origin
    source = champion.record.data_source
    if csv is not None:
        columns = _header(csv)
        asked = RetrainOptions(data=csv, target=target).described()
        if target is None:
            target = _champion_target(champion, csv, columns)
        period = period_column(champion.record)
        # the family's excluded columns (ids, leaky ones) stay excluded in what it records
        exclude = source.exclude if source else ()
        if columns is not None:
            check_needed(champion.version, champion.record, asked, columns, target=target)
            # read only to be left out: one the file lacks is no loss (the candidate
            # keeps ignoring it in requests), and recording it would fail the next run
            exclude = tuple(c for c in exclude if c in columns)
        source = describe_csv(csv, target, period, exclude=exclude)
    elif source is None:
        if base.dataset != AMES.dataset:
            raise DataSourceError(
                f"the training data of {champion.version} ({base.dataset!r}) was not "
                "recorded with it (it was registered before Watchkeeper recorded data "
                "sources): retrain once with --csv FILE --target COLUMN; the new version "
                "records it"
            )
        source = AMES
    dataset = load_source(source, version=champion.version)
    if dataset.period is not None and base.has_period:
        dataset = dataset.between(base.start, base.end)
    return BaseData(dataset, source)


def _header(data: str) -> list[str] | None:
    """The columns of ``data`` (a request's ``--csv``/``--rdataset``), read without its
    rows; ``None`` when it cannot be read: reading it whole says why, naming it."""
    try:
        return data_columns(data)
    except DatasetError:
        return None


def period_column(record: VersionMetadata) -> str | None:
    """The period column of the data a version (its ``record``) was trained on."""
    source = record.data_source
    return record.training_window.origin.period_column or (source.period_column if source else None)


def check_needed(
    version: str,
    record: VersionMetadata,
    asked: str,
    columns: list[str],
    *,
    target: str,
) -> None:
    """:class:`DataSourceError` naming each column a retrain of the champion
    ``version`` (its ``record``) needs that the data ``asked`` for (as the command line
    spells it), whose header holds ``columns``, lacks: the target, the champion's
    period column (it orders the rows and bounds the family's training window) and the
    champion's features (the candidate is trained on them). The job checks it before
    reading the data whole; ``watchkeeper retrain`` before queueing the request.
    The champion's excluded and ignored columns are not needed: the run reads no value
    of them, and the candidate keeps ignoring them in requests."""
    schema = record.feature_schema
    period = period_column(record)
    roles = [(target, "the target"), *([(period, "the period column")] if period else [])]
    roles += [(name, "a feature") for name in schema.names]
    missing = [f"{name!r} ({role})" for name, role in roles if name not in columns]
    if missing:
        raise DataSourceError(
            f"the request asks for {asked}, and that data lacks {len(missing)} column(s) "
            f"a retrain of the champion {version} needs: {', '.join(missing)} "
            f"(its columns: {', '.join(columns)})"
        )


def _champion_target(champion: RegisteredModel, data: str, columns: list[str] | None) -> str:
    """The target of ``data`` (a request's ``--csv``/``--rdataset``, whose ``columns``
    the header holds) asked for without ``--target``: the champion's target column, if
    the data has one of that name; else :class:`DataSourceError` naming it and the
    data's columns, before the data is read whole. Requests queued by a command line
    before it checked this (or by hand) ask for it; the run took the champion's target
    and failed reading the data, its reason not saying that no target was asked for,
    nor what to do."""
    source = champion.record.data_source
    target = source.target if source else champion.record.feature_schema.target
    if columns is None:  # not there, or no CSV: reading it says so, naming the file
        return target
    if target not in columns:
        asked = RetrainOptions(data=data).described()
        raise DataSourceError(
            f"the request asks for {asked} without --target, and that data has no column "
            f"{target!r}, the target of the champion {champion.version} (its columns: "
            f"{', '.join(columns)}); request the retrain again with --target COLUMN"
        )
    log.info(
        "retraining on %s without --target: training on %r, the target of %s",
        data,
        target,
        champion.version,
    )
    return target


def labelled_predictions(
    engine: sa.Engine,
    schema: FeatureSchema,
    *,
    since: datetime,
    classes: tuple[Any, ...] | None = None,
) -> LabelledRows:
    """Logged features of predictions with feedback received after ``since``, oldest
    prediction first, with the actual value in the schema's target column: the number,
    or for a classifier (``classes`` given) the class label, as the training data holds
    it (``"1"`` from a client is the class ``1``; an unseen class stays text); each
    prediction's id and time beside them, so that no feature's name is taken."""
    label = feedback.c.label if classes is not None else feedback.c.actual
    # The labels' range by its index, then each label's request by its key, with its
    # features: the database expands no request's predictions to match ids.
    query = sa.select(feedback.c.prediction_id, label.label("target")).where(
        feedback.c.received_at >= since, label.is_not(None)
    )
    with engine.connect() as connection:
        labels = [
            (row.prediction_id, key, row.target)
            for row in connection.execute(query)
            if (key := parse_prediction_id(row.prediction_id)) is not None
        ]
        stored = logged_requests(
            connection, (key.request_id for _, key, _ in labels), features=True
        )
    rows = sorted(
        (
            (request, key, pid, target)
            for pid, key, target in labels
            if (request := stored.get(key.request_id)) is not None
            and request.holds(key)
            and request.received_at is not None  # a time no reader holds: left out
        ),
        # prediction time, then the log's order (as the predictions view's ``seq``)
        key=lambda row: (row[0].received_at, row[0].position(row[1])),
    )
    records = [
        {name: values[key.item_index] for name, values in (request.features or {}).items()}
        for request, key, _, _ in rows
    ]
    frame = as_schema_kinds(pd.DataFrame.from_records(records, columns=list(schema.names)), schema)
    targets = [target for _, _, _, target in rows]
    frame[schema.target] = targets if classes is None else as_classes(targets, classes)
    return LabelledRows(
        frame,
        tuple(pid for _, _, pid, _ in rows),
        tuple(request.received_at for request, _, _, _ in rows),
    )


def as_schema_kinds(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """``frame`` with each numeric feature of ``schema`` as floats (NaN where missing).

    Built from logged records, a numeric feature no client sent (null in every row,
    as serving allows) is a column of ``None``, which pandas types as text: training
    would derive it as categorical, and the gate refuse every candidate for a schema
    that differs from the champion's."""
    for feature in schema.numeric:
        if not pd.api.types.is_numeric_dtype(frame[feature.name]):
            frame[feature.name] = pd.to_numeric(frame[feature.name], errors="coerce").astype(
                "float64"
            )
    return frame


def as_classes(labels: list[Any], classes: tuple[Any, ...]) -> list[Any]:
    """Label texts as the model's class values where they name one."""
    known = {label_text(c): c for c in classes}
    return [known.get(label_text(v), v) for v in labels]


def archived_predictions(
    engine: sa.Engine,
    schema: FeatureSchema,
    archive: ArchiveWindow,
    *,
    now: datetime,
    classes: tuple[Any, ...] | None = None,
) -> LabelledRows:
    """Archived labelled predictions whose label arrived within ``archive.days``, oldest
    prediction first, without those still in the database (a prune whose delete failed
    after its archive file was written leaves a row in both: counted once), as
    :func:`labelled_predictions` has them."""
    if not archive.url:
        raise ArchiveUnavailable(
            f"WATCHKEEPER_RETRAIN_ARCHIVE_DAYS={archive.days:g} needs an archive to read: "
            "set WATCHKEEPER_RETENTION_ARCHIVE (or set the archive days to 0)"
        )
    since = now - timedelta(days=archive.days)
    try:
        archived = archived_labels(
            archive.url, schema.names, schema.target, since=since, labels=classes is not None
        )
    except Exception as exc:  # any filesystem's or Parquet's error: the job says which
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ArchiveUnavailable(
            f"cannot read the archive {archive.url} ({type(exc).__name__}: {detail[:200]})"
        ) from exc
    in_database = _logged_ids(engine, list(archived.prediction_ids))
    archived = archived.take([pid not in in_database for pid in archived.prediction_ids])
    frame = as_schema_kinds(archived.frame, schema)
    if classes is not None:
        frame[schema.target] = as_classes(frame[schema.target].tolist(), classes)
    return archived.with_frame(frame)


def _logged_ids(engine: sa.Engine, ids: list[str]) -> set[str]:
    """Those of ``ids`` the prediction log still holds."""
    with engine.connect() as connection:
        return logged_ids(connection, ids)


def assemble(
    engine: sa.Engine,
    base: Dataset,
    schema: FeatureSchema,
    *,
    window_days: float,
    holdout_fraction: float,
    min_holdout: int,
    archive: ArchiveWindow = ArchiveWindow(),
    classes: tuple[Any, ...] | None = None,
) -> RetrainData:
    """``classes``: the champion's, when it is a classifier (labels are classes)."""
    now = datetime.now(UTC)
    columns = [*schema.names, schema.target]
    archived = LabelledRows.empty(columns)
    if archive.days > 0:  # read first: a misconfigured archive fails the job up front
        archived = archived_predictions(engine, schema, archive, now=now, classes=classes)
    since = now - timedelta(days=window_days)
    labelled = labelled_predictions(engine, schema, since=since, classes=classes)
    # the labels training cannot use are left out of the holdout too, counted and named
    screen = _screen(base, schema, classes)
    archived, left_archived = _usable(archived, schema, screen)
    labelled, left_labelled = _usable(labelled, schema, screen)
    left_out = _merged(left_archived + left_labelled)
    n_holdout = math.ceil(len(labelled) * holdout_fraction)
    if n_holdout < min_holdout:
        left = "".join(f" ({item.count} left out: {item.detail})" for item in left_out)
        raise NotEnoughData(
            f"{len(labelled)} labelled predictions in the last {window_days:g} days{left} "
            f"give a holdout of {n_holdout}; at least {min_holdout} are needed"
        )
    recent = labelled.take(slice(len(labelled) - n_holdout, None))
    older = labelled.take(slice(None, len(labelled) - n_holdout))
    # in time order: the base data, then the archive (older than the database's rows)
    parts = [base.frame[columns], archived.frame[columns], older.frame[columns]]
    training_frame = pd.concat([p for p in parts if len(p)], ignore_index=True)
    training = replace(base, frame=training_frame, period=None, exclude=())
    holdout = replace(base, frame=recent.frame[columns], period=None, exclude=())
    description = RunData(
        base=DataWindow.model_validate(base.window()),
        labelled_rows=len(labelled),
        labelled_in_training=len(older),
        archived_in_training=len(archived),
        archive_days=archive.days,
        holdout_rows=len(recent),
        training_rows=len(training_frame),
        window_days=window_days,
        holdout_from=_iso(recent.predicted_at[0]),
        holdout_to=_iso(recent.predicted_at[-1]),
        left_out=left_out,
    )
    return RetrainData(training=training, holdout=holdout, description=description)


Screen = Callable[[pd.Series, list[str]], Screened]


def _screen(base: Dataset, schema: FeatureSchema, classes: tuple[Any, ...] | None) -> Screen:
    """How this job screens labels: by the champion's classes, or by the range of the
    original training target."""
    if classes is not None:
        return lambda labels, ids: screen_classes(labels.tolist(), ids, classes)
    allowed = trainable_range(pd.to_numeric(base.frame[schema.target], errors="coerce"))
    return lambda labels, ids: screen_values(labels.tolist(), ids, allowed)


def _usable(
    rows: LabelledRows, schema: FeatureSchema, screen: Screen
) -> tuple[LabelledRows, tuple[LeftOut, ...]]:
    if not len(rows):
        return rows, ()
    screened = screen(rows.frame[schema.target], [str(p) for p in rows.prediction_ids])
    return rows.take(screened.usable), screened.left_out


def _merged(items: tuple[LeftOut, ...]) -> tuple[LeftOut, ...]:
    """One record per reason (the archive's and the database's labels together)."""
    merged: dict[str, LeftOut] = {}
    for item in items:
        if item.reason in merged:
            first = merged[item.reason]
            named = (first.prediction_ids + item.prediction_ids)[:NAMED]
            item = replace(first, count=first.count + item.count, prediction_ids=named)
        merged[item.reason] = item
    return tuple(merged.values())


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat()
