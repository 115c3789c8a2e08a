"""A column encoder for mixed tabular data that is cheap on one row.

scikit-learn's ``ColumnTransformer`` + ``OrdinalEncoder`` cost ~30 ms for a single
row of the Ames features (joblib dispatch and per-column checks), twenty times the
trees themselves. This encoder does the same job for a tree model with native
categorical support, in plain NumPy: numeric columns become floats (missing → NaN),
categorical columns become integer codes learned in ``fit`` (missing or unseen →
NaN, which ``HistGradientBoostingRegressor`` routes as missing).

Categorical codes follow the sorted category order and the trees treat them as
ordinal: several splits recover any grouping. (Declaring them categorical to
``HistGradientBoostingRegressor`` makes it re-encode every call through its own
``ColumnTransformer``, ~12 ms a row; on the Ames 2008 validation year the ordinal
form was as accurate.)

It accepts a DataFrame or a mapping of column name → sequence, so the server can
hand it validated columns without building a DataFrame; a category column may be a
:class:`~watchkeeper.category_column.CategoryColumn` (an Arrow body's dictionary),
whose distinct values are looked up once instead of row by row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from watchkeeper.category_column import CategoryColumn

if TYPE_CHECKING:
    from watchkeeper.schema import FeatureSchema

Columns = pd.DataFrame | Mapping[str, Sequence[Any]]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class TabularEncoder(TransformerMixin, BaseEstimator):
    """Numeric columns first, then categorical codes, in the order given.

    The output has ``len(numeric) + len(categorical)`` float columns.
    """

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = ()) -> None:
        self.numeric = numeric
        self.categorical = categorical

    @classmethod
    def for_schema(cls, schema: FeatureSchema) -> TabularEncoder:
        """An encoder of ``schema``'s numeric and categorical features."""
        return cls(
            numeric=[f.name for f in schema.numeric],
            categorical=[f.name for f in schema.categorical],
        )

    def fit(self, X: Columns, y: Any = None) -> TabularEncoder:
        self.codes_: dict[str, dict[str, int]] = {}
        for name in self.categorical:
            seen = sorted({str(v) for v in _column_list(X, name) if not _is_missing(v)})
            self.codes_[name] = {value: code for code, value in enumerate(seen)}
        self.n_features_out_ = len(self.numeric) + len(self.categorical)
        # Columns with no value in the fitting rows (a fold that holds none of a rare
        # column's few values, a retraining window in which clients stopped sending
        # one): the trees cannot bin a column of NaN alone ("window shape cannot be
        # larger than input array shape") and learn nothing from it, so it is given
        # one constant instead.
        offset = len(self.numeric)
        self.empty_ = [
            j for j, name in enumerate(self.numeric) if np.isnan(_numeric_column(X, name)).all()
        ] + [offset + j for j, name in enumerate(self.categorical) if not self.codes_[name]]
        return self

    def transform(self, X: Columns) -> np.ndarray:
        check_is_fitted(self, "codes_")
        n_rows = len(X) if isinstance(X, pd.DataFrame) else len(next(iter(X.values()), ()))
        out = np.empty((n_rows, self.n_features_out_), dtype=np.float64)
        for j, name in enumerate(self.numeric):
            out[:, j] = _numeric_column(X, name)
        offset = len(self.numeric)
        for j, name in enumerate(self.categorical):
            column = X[name]
            if isinstance(column, CategoryColumn):  # each distinct value looked up once
                out[:, offset + j] = column.mapped(_codes(self.codes_[name], column.values))
            else:
                out[:, offset + j] = _codes(self.codes_[name], _column_list(X, name))
        for j in getattr(self, "empty_", ()):  # versions trained before it have none
            out[:, j] = 0.0
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([*self.numeric, *self.categorical], dtype=object)


_TEXT_OR_NULL = frozenset({str, type(None)})


def _codes(codes: dict[str, int], column: Sequence[Any]) -> list[float]:
    """The column's codes, NaN for a missing or unseen value. Text and nulls (what the
    server's validation lets through) are looked up by ``map`` in C, at half the cost
    of a Python loop; any other value (a number in a DataFrame's category column) is
    coded as its text."""
    nan = math.nan
    if set(map(type, column)) <= _TEXT_OR_NULL:  # None is no key: NaN
        return list(map(codes.get, column, repeat(nan)))
    return [codes.get(v, nan) if v.__class__ is str else _code_of(codes, v) for v in column]


def _code_of(codes: dict[str, int], value: Any) -> float:
    text = category_text(value)
    return math.nan if text is None else codes.get(text, math.nan)


def category_text(value: Any) -> str | None:
    """The text a category value is known by: ``str(value)``, ``None`` when missing.
    Training derives a feature's categories this way (a CSV's boolean ``True`` is the
    category ``"True"``) and the model codes values by it; whatever else matches values
    to categories (the monitor's tests, data quality) must match by the same text."""
    return None if _is_missing(value) else str(value)


def category_texts(values: Sequence[Any]) -> list[Any]:
    """:func:`category_text` of each value; a column of text and nulls as it is."""
    if set(map(type, values)) <= _TEXT_OR_NULL:
        return list(values)
    return [category_text(v) for v in values]


def _column_list(X: Columns, name: str) -> list[Any]:
    column = X[name]
    if isinstance(column, pd.Series):
        return column.to_numpy(dtype=object).tolist()  # NaN stays NaN: coded as missing
    return list(column)


def _numeric_column(X: Columns, name: str) -> np.ndarray:
    column = X[name]
    if isinstance(column, pd.Series):
        if column.dtype == object:
            column = pd.to_numeric(column, errors="coerce")
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(column, dtype=np.float64)
