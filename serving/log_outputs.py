"""A request's predictions as the log stores them: ``requests.outputs``, JSON text.

One ``[prediction, lower, upper]`` per item, with its OOD score fourth when the worker
scored it, and a classifier's probabilities fifth (its score then, or ``null``): the
layout the ``predictions`` view reads (:mod:`watchkeeper.db.prediction_view`). Item
after item rather than a list per column: SQLite reads an element of a JSON array by
parsing the text up to it, so a view over parallel lists would read a request's
items in time quadratic in their number.

JSON has no NaN or infinity: such a number is written as its name (``"NaN"``,
``"Infinity"``, ``"-Infinity"``), which both databases read back as a float. The
usual all-finite request is one NumPy stack and one orjson call (~0.1 ms for 1,000
items).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from serving.log_entry import LogEntry, non_finite_name
from watchkeeper.db.max_ood import highest_score

_FEW = 32  # checked one by one rather than by one NumPy call


def _floats(values: Any) -> np.ndarray:
    """Numbers as the entry holds them: floats, or names of non-finite ones as
    journaled (``float()`` reads them); ``null`` from a line journaled before names
    were is NaN (its kind is lost)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _all_finite(array: np.ndarray) -> bool:
    if array.size > _FEW:
        return bool(np.isfinite(array).all())
    return all(map(math.isfinite, array.ravel().tolist()))


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else non_finite_name(value)


def _few_finite_items(entry: LogEntry) -> list[tuple[float, ...]] | None:
    """The items of a regression entry of a few predictions read back from the journal
    (lists of floats), when every number is finite: those need no NumPy (a stack of
    four arrays cost more than the rest of a single record's row); else ``None``."""
    columns = (entry.values, entry.lower, entry.upper)
    if entry.ood is not None:
        columns = (*columns, entry.ood)
    n = len(entry.values)
    if entry.probabilities is not None or n > _FEW:
        return None
    for column in columns:
        if type(column) is not list or len(column) != n:
            return None
        for value in column:
            # exactly float: an int would be written without its ".0"
            if type(value) is not float or not math.isfinite(value):
                return None
    return list(zip(*columns, strict=True))


def outputs_text(entry: LogEntry) -> str:
    """The entry's predictions as ``requests.outputs`` holds them."""
    items = _few_finite_items(entry)
    if items is not None:
        return orjson.dumps(items).decode()
    columns = [_floats(entry.values), _floats(entry.lower), _floats(entry.upper)]
    if entry.ood is not None:
        columns.append(_floats(entry.ood))
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError(f"bounds or scores are not {n} long")
    stacked = np.column_stack(columns) if n else np.empty((0, len(columns)))
    if entry.probabilities is None and _all_finite(stacked):
        return orjson.dumps(stacked, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    items: list[list[Any]] = [[_number(v) for v in row] for row in stacked.tolist()]
    if entry.probabilities is not None:
        probabilities = entry.probabilities
        rows = probabilities.tolist() if hasattr(probabilities, "tolist") else probabilities
        if len(rows) != n:
            raise ValueError(f"{len(rows)} rows of probabilities for {n} predictions")
        for item, row in zip(items, rows, strict=True):
            if len(item) == 3:
                item.append(None)  # no score: the probabilities stay fifth
            item.append(row)
    return orjson.dumps(items).decode()


def max_ood_score(entry: LogEntry) -> float | None:
    """The entry's highest OOD score, as ``requests.max_ood_score`` holds it: a few
    journaled scores as they are (a NumPy array costs a single record more), many as
    an array."""
    scores = entry.ood
    if scores is None:
        return None
    if not isinstance(scores, np.ndarray) and len(scores) > _FEW:
        scores = _floats(scores)
    return highest_score(scores)
