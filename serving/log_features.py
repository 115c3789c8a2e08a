"""A log entry's feature columns as the JSON text the journal and ``requests.features``
hold (:mod:`watchkeeper.feature_columns` describes the stored form).

The request thread serialises validated columns once: lists and NumPy arrays as
lists of values, and a category column (an Arrow body's) as its distinct values and
one code per row: a few µs a column where writing each row's text cost ~16 µs per
1,000 rows, and, for Ames' 40 category columns, a fifth of their text (a request's
features 189 KB instead of 491 KB) for the writer to copy and the database to store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from watchkeeper.category_column import CategoryColumn
from watchkeeper.feature_columns import stored_category


def encoded_columns(columns: dict[str, Any]) -> bytes:
    """``columns`` as the stored JSON object; raises ``TypeError`` where orjson does
    (a lone surrogate)."""
    return orjson.dumps(columns, default=plain_json, option=orjson.OPT_SERIALIZE_NUMPY)


def plain_json(value: Any) -> Any:
    """What JSON encoders take for the NumPy values and category columns of an entry's
    columns (a ``default`` for ``json.dumps`` and ``orjson.dumps``): the stored form."""
    if isinstance(value, CategoryColumn):
        return stored_category(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
