"""Incremental reads of the prediction log.

Reads are keyed on a prediction's position (``predictions.seq``: its request's ``seq``
and its item index, :mod:`watchkeeper.db.prediction_seq`) past a persisted watermark,
bounded by request too (:func:`~watchkeeper.db.prediction_view.seq_between`), so that a
cycle reads the new requests from the index on ``requests.seq``: it costs what is new,
not what the log holds. A cycle notes the log's high mark, waits ``settle_seconds``, and
reads up to that mark: on PostgreSQL a writer can commit a lower ``seq`` after another
writer's higher one, and reading right up to the newest row could step over it for
good.

A cycle reads only what cutting windows needs of every row (:meth:`LogReader.read_index`:
position, request, item, time, version, the serving worker's OOD score), then per window
the exact quality counts and the sampled rows' features and predictions
(:meth:`LogReader.window_features`, :mod:`monitoring.window_features`).

:meth:`LogReader.read` returns whole rows with their features by column, one
``feature:<name>`` column each (:func:`features_of` gives them as the model's frame).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitoring.quality import QualityCounts
from monitoring.window_features import FEATURE_PREFIX, ColumnCache, window_features
from watchkeeper.db.positions import read_position, write_position
from watchkeeper.db.prediction_seq import prediction_seq
from watchkeeper.db.prediction_view import readable_outputs, seq_between, seq_in
from watchkeeper.db.tables import monitor_state, predictions, requests
from watchkeeper.schema import FeatureSchema

WATERMARK = "windows"
"""Every prediction up to this position is in an evaluated window: where a cycle reads
from (and what retention may prune up to)."""
VERSION_WATERMARK = "windows@"
"""Prefix of a model version's position: the last row of its newest evaluated window,
kept while it is past :data:`WATERMARK`. Each version's rows are cut into windows of
their own (:mod:`monitoring.windows`), so while two versions are served one can be
evaluated past another's open window: its rows after the global watermark up to its own
are evaluated already."""


class Unreadable(StrEnum):
    """Why a row read from the log was left out of a window's figures: a value no server
    writes (a buggy or foreign writer's), which raised in every cycle that read it."""

    TIME = "time"
    """Its time, or its label's arrival, is none pandas holds (before 1677 or after
    2262): in no window (its own time), and in no accuracy figure (a label of it has no
    delay to measure)."""
    NUMBER = "number"
    """Its prediction or a bound is no number (text, say, or its request's outputs are
    no JSON list, read as one prediction of no number): left out where predictions are
    judged, with the non-finite ones."""


__all__ = [
    "FEATURE_PREFIX",
    "VERSION_WATERMARK",
    "WATERMARK",
    "LogReader",
    "SampledWindow",
    "Unreadable",
    "features_of",
    "version_position",
]


def version_position(version: str) -> str:
    """The name of ``version``'s position (a name holds 64 characters: a longer
    version's is named by its hash)."""
    name = VERSION_WATERMARK + version
    if len(name) <= monitor_state.c.name.type.length:
        return name
    return VERSION_WATERMARK + "#" + hashlib.sha256(version.encode()).hexdigest()[:40]


INDEX_COLUMNS = (
    "seq",
    "request_id",
    "item_index",
    "created_at",
    "model_version",
    "ood_score",
)
"""What :meth:`LogReader.read_index` returns of every row."""
_CHUNK = 500
"""Request ids per query: bounded statements whatever the window."""
IN_ORDER = (predictions.c.request_seq, predictions.c.item_index)
"""The order of ``seq``, as the index on ``requests.seq`` gives it: a limited read
stops after ``limit`` rows where ordering by ``seq`` itself sorted every row in range."""


def features_of(rows: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The rows' features as a frame with columns ``names`` in that order (a feature no
    row has: all missing), typed as a frame of records would be (the read typed them)."""
    columns = {
        name: rows[FEATURE_PREFIX + name].to_numpy()
        if FEATURE_PREFIX + name in rows
        else np.full(len(rows), None, dtype=object)
        for name in names
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)), copy=False)


def _feature_columns(connection: sa.Connection, rows: Sequence[Any]) -> dict[str, np.ndarray]:
    """Each feature's values for ``rows``, in order: sliced out of the request's
    columns by item index."""
    n = len(rows)
    by_request: dict[str, list[int]] = {}
    for position, row in enumerate(rows):
        by_request.setdefault(row.request_id, []).append(position)
    ids = list(by_request)
    stored: dict[str, dict[str, list[Any]]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(requests.c.request_id, requests.c.features).where(
            requests.c.request_id.in_(ids[start : start + _CHUNK])
        )
        stored.update({r.request_id: r.features or {} for r in connection.execute(query)})
    out: dict[str, np.ndarray] = {}

    def column(name: str) -> np.ndarray:
        if name not in out:
            out[name] = np.full(n, None, dtype=object)
        return out[name]

    for request_id, positions in by_request.items():
        at = np.asarray(positions)
        items = np.asarray([rows[p].item_index for p in positions])
        for name, values in stored.get(request_id, {}).items():
            column(name)[at] = np.asarray(values, dtype=object)[items]
    return out


@dataclass(frozen=True)
class SampledWindow:
    """A window's exact quality counts and its sampled rows: every column
    :meth:`LogReader.read` gives, in the sample's order."""

    counts: QualityCounts
    rows: pd.DataFrame
    unreadable: int = 0
    """Sampled rows whose prediction or a bound is no number the log can hold (no
    server writes one: read as NULL, here NaN, and so left out with the non-finite
    ones)."""


class LogReader:
    def __init__(self, engine: sa.Engine, *, settle_seconds: float = 5.0) -> None:
        self.engine = engine
        self.settle_seconds = settle_seconds
        self.rows_read = 0
        self.columns = ColumnCache()

    def watermark(self, name: str = WATERMARK) -> int:
        with self.engine.connect() as connection:
            return read_position(connection, name) or 0

    def set_watermark(self, value: int, name: str = WATERMARK) -> None:
        with self.engine.begin() as connection:
            write_position(connection, name, value)

    def version_watermarks(self) -> dict[str, int]:
        """The versions' positions past the global watermark, by their names
        (:func:`version_position`)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(monitor_state.c.name, monitor_state.c.watermark).where(
                    monitor_state.c.name.startswith(VERSION_WATERMARK, autoescape=True)
                )
            ).all()
        return {name: int(value) for name, value in rows}

    def window_evaluated(self, version: str, last_seq: int, read_to: int) -> None:
        """Once a window of ``version`` ending at ``last_seq`` is stored: its version's
        position, and the global watermark at ``read_to`` (every row up to it is in an
        evaluated window), in one transaction. A version's position the global one has
        reached says nothing more: deleted (one row a version ever served, otherwise)."""
        with self.engine.begin() as connection:
            write_position(connection, version_position(version), last_seq)
            write_position(connection, WATERMARK, read_to)
            connection.execute(
                monitor_state.delete().where(
                    monitor_state.c.name.startswith(VERSION_WATERMARK, autoescape=True),
                    monitor_state.c.watermark <= read_to,
                )
            )

    def high_mark(self) -> int:
        """The position of the newest prediction in the log now: the last item of the
        newest request that holds predictions, found by the index on ``requests.seq``
        (a ``max`` over the view would expand every request). Read up to it only
        ``settle_seconds`` later (:meth:`settled_high_mark`)."""
        newest = (
            sa.select(requests.c.seq, _items_held(self.engine.dialect.name))
            .where(requests.c.outputs.is_not(None), requests.c.seq.is_not(None))
            .order_by(requests.c.seq.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            row = connection.execute(newest).first()
        return 0 if row is None else prediction_seq(int(row.seq), max(int(row[1]) - 1, 0))

    def settled_high_mark(self) -> int:
        mark = self.high_mark()
        if self.settle_seconds > 0:
            time.sleep(self.settle_seconds)
        return mark

    def read(self, after: int, up_to: int, *, limit: int | None = None) -> pd.DataFrame:
        """Accepted predictions with ``after < seq <= up_to``, oldest first; the first
        ``limit`` of them if given."""
        query = (
            sa.select(
                predictions.c.seq,
                predictions.c.prediction_id,
                predictions.c.request_id,
                predictions.c.item_index,
                predictions.c.created_at,
                predictions.c.model_version,
                predictions.c.prediction,
                predictions.c.lower,
                predictions.c.upper,
                predictions.c.ood_score,  # as the serving worker scored it; NULL if not
                predictions.c.probabilities,  # classifiers: as served, in classes order
            )
            .where(seq_between(after, up_to))
            .order_by(*IN_ORDER)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            features = _feature_columns(connection, rows)
        self.rows_read += len(rows)
        names = [c.name for c in query.selected_columns]
        skip = {"request_id", "item_index"}
        # by column: a frame built from row tuples cost more than the reading itself
        frame = pd.DataFrame(
            {name: [row[i] for row in rows] for i, name in enumerate(names) if name not in skip}
        )
        # typed once here (numbers as floats), as a frame of records would be; object
        # columns stop pandas guessing at dates in every one
        columns = pd.DataFrame(
            {FEATURE_PREFIX + name: values for name, values in features.items()},
            index=frame.index,
            dtype=object,
        ).infer_objects()
        return pd.concat([frame, columns], axis=1)

    def read_index(self, after: int, up_to: int, *, limit: int | None = None) -> pd.DataFrame:
        """What cutting windows and counting them needs of the accepted predictions with
        ``after < seq <= up_to`` (oldest first; the first ``limit`` if given): the
        columns ``INDEX_COLUMNS``, no feature and no prediction."""
        query = (
            sa.select(
                predictions.c.seq,
                predictions.c.request_id,
                predictions.c.item_index,
                _stamp(self.engine.dialect.name),
                predictions.c.model_version,
                predictions.c.ood_score,
            )
            .where(seq_between(after, up_to))
            .order_by(*IN_ORDER)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        self.rows_read += len(rows)
        # typed column by column: pandas guessing at each object column (dates in
        # request ids) and a datetime a row cost more than the query
        seq, request_id, item, stamp, version, ood = (
            zip(*rows, strict=True) if rows else ((),) * len(INDEX_COLUMNS)
        )
        return pd.DataFrame(
            {
                "seq": np.array(seq, dtype=np.int64),
                "request_id": _object_series(request_id),
                "item_index": np.array(item, dtype=np.int64),
                "created_at": _stamps(stamp, self.engine.dialect.name),
                "model_version": _object_series(version),
                "ood_score": np.array(ood, dtype=np.float64),  # NULL: NaN
            },
            columns=list(INDEX_COLUMNS),
        )

    def window_features(
        self, rows: pd.DataFrame, schema: FeatureSchema, positions: np.ndarray
    ) -> SampledWindow:
        """Of a window's ``rows`` (from :meth:`read_index`): exact quality counts over
        all of them, and the rows at ``positions`` (sorted) whole, with features."""
        seqs = [int(s) for s in rows["seq"].to_numpy()[positions]]
        with self.engine.connect() as connection:
            found = window_features(connection, self.columns, rows, schema, positions)
            whole = _rows_by_seq(connection, seqs)
        frame = pd.DataFrame(
            {name: [row[i] for row in whole] for i, name in enumerate(_ROW_COLUMNS)},
            columns=list(_ROW_COLUMNS),
        )
        sampled = pd.concat([frame, found.sampled], axis=1)
        unreadable = sum(
            row.prediction is None or row.lower is None or row.upper is None for row in whole
        )
        return SampledWindow(found.counts, sampled, unreadable)


_ROW_COLUMNS = (
    "seq",
    "prediction_id",
    "created_at",
    "model_version",
    "prediction",
    "lower",
    "upper",
    "ood_score",
    "probabilities",
)


def _rows_by_seq(connection: sa.Connection, seqs: list[int]) -> list[Any]:
    """The rows with these ``seq``s (as :meth:`LogReader.read` selects them, less the
    features), in that order; their requests found by the index on ``requests.seq``."""
    columns = [predictions.c[name] for name in _ROW_COLUMNS]
    found: dict[int, Any] = {}
    for start in range(0, len(seqs), _CHUNK):
        query = sa.select(*columns).where(seq_in(seqs[start : start + _CHUNK]))
        found.update({row.seq: row for row in connection.execute(query)})
    return [found[seq] for seq in seqs]


def _items_held(dialect: str) -> sa.ColumnElement[int]:
    """The length of a request's ``outputs``: its last item's index + 1, also in a
    request stored before migration 0010 whose pruned items are gaps (``n_items``
    counts only the predictions it holds). Read as the view reads them: outputs that
    are no JSON list (no server writes them; raised here, every cycle) hold one item."""
    return sa.func.json_array_length(readable_outputs(dialect))


def _stamp(dialect: str) -> sa.ColumnElement[Any]:
    """``created_at`` as PostgreSQL's integer microseconds since the epoch, or SQLite's
    stored text: either is read far faster than a datetime object a row."""
    if dialect == "postgresql":
        micros = sa.cast(sa.extract("epoch", predictions.c.created_at) * 1_000_000, sa.BigInteger)
        # 'infinity' (no writer's) has no integer: NULL, read as no time
        return sa.case((sa.func.isfinite(predictions.c.created_at), micros))
    return sa.type_coerce(predictions.c.created_at, sa.String)


_MICROS = (pd.Timestamp.min.value // 1000 + 1, pd.Timestamp.max.value // 1000)
"""The times pandas holds (1677 to 2262), in microseconds since the epoch."""


def _stamps(values: Sequence[Any], dialect: str) -> pd.Series:
    """What :func:`_stamp` read, as UTC timestamps; NaT where a time is none pandas
    holds (a foreign writer's year 1000 or 9999: raised, it failed every cycle that
    read its row) or that cannot be read."""
    if dialect == "postgresql":
        try:
            micros = np.array(values, dtype=np.int64)
        except TypeError:  # a NULL time (no writer leaves one): outside what is held
            micros = np.array([_MICROS[0] - 1 if v is None else v for v in values])
        held = (micros >= _MICROS[0]) & (micros <= _MICROS[1])
        stamps = pd.Series(pd.to_datetime(np.where(held, micros, 0), unit="us", utc=True))
        return stamps.mask(~held)
    return pd.Series(
        pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=True, errors="coerce")
    )


def _object_series(values: Sequence[Any]) -> pd.Series:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return pd.Series(array, dtype=object, copy=False)
