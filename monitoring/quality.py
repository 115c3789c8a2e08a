"""Data quality of a window, from the model's feature schema and the request log.

The rates are exact over every row of a window. At fleet traffic the monitor does not
build a frame of every row's features for them: it counts, per request, which of the
request's stored values are missing or outside what training saw (:func:`column_flags`,
once per request, vectorised over its columns) and adds up the counts of the window's
rows (:class:`QualityCounts`). :func:`feature_quality` computes the same figures over a
frame (the reference sample, tests) with the same flags, so both agree by construction.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitoring.check_details import RejectedRequests
from watchkeeper.db.tables import requests
from watchkeeper.encoding import category_text
from watchkeeper.schema import Feature, FeatureSchema


@dataclass(frozen=True)
class ColumnFlags:
    """Per value of one feature's column: missing, and (not missing) outside what
    training saw: out of its range for a number, a category it never saw otherwise."""

    missing: np.ndarray
    outside: np.ndarray


def column_flags(feature: Feature, values: Sequence[Any] | np.ndarray) -> ColumnFlags:
    """The flags of one column of ``feature``'s values (numbers, strings, None/NaN).

    Missing is what pandas counts as missing; a number outside ``observed_min`` to
    ``observed_max`` is out of range, and so is a value that is no number (text a buggy
    or foreign writer logged, which validation refuses: nothing training saw; it counted
    as neither, so a column of text read as clean); a
    category is unseen unless its text (as the model's encoder reads it) is one of
    ``categories``. The common columns (numbers and None; strings and None) take a fast
    path, anything else pandas' own."""
    n = len(values)
    if feature.is_numeric:
        try:  # numbers and None: NumPy reads None as NaN
            numbers = np.array(values, dtype=np.float64)
            missing = np.isnan(numbers)
        except (TypeError, ValueError):
            column = _objects(values)
            missing = np.asarray(pd.isna(column), dtype=bool)
            numbers = np.asarray(pd.to_numeric(column, errors="coerce"), dtype=np.float64)
        return _number_flags(feature, numbers, missing)
    known = dict.fromkeys(feature.categories, _SEEN)
    try:
        codes = np.fromiter(
            (_MISSING if value is None else known.get(value, _OTHER) for value in values),
            dtype=np.int8,
            count=n,
        )
    except TypeError:  # an unhashable value: no category, but maybe missing
        codes = np.full(n, _OTHER, dtype=np.int8)
        for i, value in enumerate(values):
            if value is None:
                codes[i] = _MISSING
            elif isinstance(value, Hashable) and value in known:
                codes[i] = _SEEN
    missing = codes == _MISSING
    other = np.flatnonzero(codes == _OTHER)
    if len(other):  # NaN and pandas' other missing values are not categories either
        missing[other] = np.asarray(pd.isna(_objects([values[i] for i in other])), dtype=bool)
        # a value that is no text (the reference's booleans) is the category of its text,
        # as the model codes it: True is "True", not unseen
        for i in other[~missing[other]].tolist():
            if not isinstance(values[i], str) and category_text(values[i]) in known:
                codes[i] = _SEEN
    return ColumnFlags(missing, (codes == _OTHER) & ~missing)


_SEEN, _OTHER, _MISSING = 0, 1, 2


def _number_flags(feature: Feature, numbers: np.ndarray, missing: np.ndarray) -> ColumnFlags:
    lo = -np.inf if feature.observed_min is None else feature.observed_min
    hi = np.inf if feature.observed_max is None else feature.observed_max
    # NaN where a value is there: no number (compares false with both bounds)
    outside = ~missing & (np.isnan(numbers) | (numbers < lo) | (numbers > hi))
    return ColumnFlags(missing, outside)


def joined_flags(feature: Feature, columns: Sequence[Sequence[Any]]) -> ColumnFlags:
    """The flags of several columns of ``feature`` end to end: exactly
    :func:`column_flags` of each, concatenated, in one vectorised pass where the columns
    allow it. A window of single-row requests flagged request by request cost ~3 µs a
    value (~70 ms of CPU per 1,000 requests of Ames' 72 features), most of its check.

    Every flag is a value's own (the same whatever its neighbours), but a numeric
    column's reading is not: NumPy reads ``"nan"`` as a missing number, the slow path
    as a text that is no number. So numbers are read joined only when every value
    reads as a number; otherwise each column is read as :func:`column_flags` reads it."""
    lists = all(isinstance(column, list) for column in columns)
    if lists and not feature.is_numeric:
        return column_flags(feature, list(chain.from_iterable(columns)))
    if lists:
        try:
            numbers = np.array(list(chain.from_iterable(columns)), dtype=np.float64)
        except (TypeError, ValueError):
            numbers = None
        if numbers is not None and numbers.ndim == 1:
            return _number_flags(feature, numbers, np.isnan(numbers))
    parts = [column_flags(feature, column) for column in columns]
    return ColumnFlags(
        np.concatenate([p.missing for p in parts] or [np.zeros(0, dtype=bool)]),
        np.concatenate([p.outside for p in parts] or [np.zeros(0, dtype=bool)]),
    )


def _objects(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """``values`` as a 1-D object array (``np.asarray`` would make a list of lists 2-D)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass
class QualityCounts:
    """Exact counts of a window's missing and outside values, feature by feature, added
    up request by request."""

    schema: FeatureSchema
    rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)

    def add(self, flags: dict[str, ColumnFlags], items: np.ndarray | None, n: int) -> None:
        """Count ``n`` rows whose values sit at ``items`` of columns flagged ``flags``
        (``items`` None: every value of the columns). A feature without a column in
        ``flags`` is missing in all ``n`` rows."""
        self.rows += n
        for feature in self.schema.features:
            flagged = flags.get(feature.name)
            if flagged is None:
                missing, outside = n, 0
            elif items is None:
                missing, outside = int(flagged.missing.sum()), int(flagged.outside.sum())
            else:
                missing = int(flagged.missing[items].sum())
                outside = int(flagged.outside[items].sum())
            self.missing[feature.name] = self.missing.get(feature.name, 0) + missing
            self.outside[feature.name] = self.outside.get(feature.name, 0) + outside

    def rates(self) -> dict[str, dict[str, float]]:
        """Per feature: share of missing values, of categories never seen in training,
        and of numbers outside the range training saw (of every row counted)."""
        n = max(self.rows, 1)
        out: dict[str, dict[str, float]] = {}
        for f in self.schema.features:
            rates = {"missing_rate": float(self.missing.get(f.name, 0) / n)}
            key = "out_of_range_rate" if f.is_numeric else "unseen_category_rate"
            rates[key] = float(self.outside.get(f.name, 0) / n)
            out[f.name] = rates
        return out


def feature_quality(features: pd.DataFrame, schema: FeatureSchema) -> dict[str, dict[str, float]]:
    """Per feature: share of missing values, of categories never seen in training, and
    of numbers outside the range training saw."""
    counts = QualityCounts(schema)
    flags = {
        f.name: column_flags(f, features[f.name].to_numpy(dtype=object)) for f in schema.features
    }
    counts.add(flags, None, len(features))
    return counts.rates()


def rejected_rate(engine: sa.Engine, after: int, up_to: int) -> RejectedRequests:
    """Share of ``POST /predict`` requests answered 4xx among those stored after request
    ``seq`` ``after`` up to ``up_to``: a window's, from the request of the previous
    window's last prediction (counted there) to that of its own last. By ``seq``, as
    windows are cut, not by time: requests are stored out of their arrival order (two
    workers, a large batch), and counting by the window's first and last prediction's
    times missed requests, counted others in two windows, and saw none in a window
    inside one batch. An ``OPTIONS``, or a 405 to another method, is logged but asks for
    no prediction: left out of both counts, as ``WatchkeeperRejectedRequests`` leaves
    them out (the dashboard shows the two against one threshold)."""
    predict = requests.c.endpoint == "/predict"
    window = (requests.c.seq > after) & (requests.c.seq <= up_to)
    query = sa.select(
        sa.func.count(),
        sa.func.sum(sa.case((requests.c.status_code.between(400, 499), 1), else_=0)),
    ).where(predict, window, requests.c.method == "POST")
    with engine.connect() as connection:
        total, rejected = connection.execute(query).one()
    total, rejected = int(total or 0), int(rejected or 0)
    return RejectedRequests(
        requests=total, rejected=rejected, rate=rejected / total if total else 0.0
    )
