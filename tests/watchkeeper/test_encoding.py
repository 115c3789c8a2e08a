"""The tabular encoder: the same codes from a DataFrame or from columns, unseen and
missing values as NaN."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from watchkeeper.encoding import TabularEncoder


def _fitted() -> TabularEncoder:
    frame = pd.DataFrame({"n": [1.0, 2.0, None], "c": ["b", "a", None]})
    return TabularEncoder(numeric=["n"], categorical=["c"]).fit(frame)


def test_columns_and_dataframe_encode_identically() -> None:
    encoder = _fitted()
    columns = {"n": [3, None], "c": ["a", "b"]}

    from_columns = encoder.transform(columns)
    from_frame = encoder.transform(pd.DataFrame(columns))

    np.testing.assert_array_equal(from_columns, from_frame)
    np.testing.assert_array_equal(from_columns, [[3.0, 0.0], [math.nan, 1.0]])


def test_unseen_and_missing_categories_encode_as_missing() -> None:
    encoder = _fitted()

    out = encoder.transform({"n": [1.0, 1.0, 1.0], "c": ["zzz", None, float("nan")]})

    assert np.isnan(out[:, 1]).all()


def test_a_category_given_as_a_number_is_coded_as_its_text() -> None:
    frame = pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": ["10", "20", None]})
    encoder = TabularEncoder(numeric=["n"], categorical=["c"]).fit(frame)

    text = encoder.transform({"n": [1, 1, 1, 1], "c": ["20", "10", None, "30"]})
    numbers = encoder.transform({"n": [1, 1, 1, 1], "c": [20, 10, None, 30]})

    np.testing.assert_array_equal(text[:, 1], [1.0, 0.0, math.nan, math.nan])
    np.testing.assert_array_equal(numbers, text)


def test_a_column_with_no_value_in_the_fitting_rows_is_one_constant() -> None:
    fitting = pd.DataFrame(
        {"x": [1.0, 2.0], "rare": [np.nan, np.nan], "site": ["a", "b"], "tag": [None, None]}
    )
    encoder = TabularEncoder(numeric=["x", "rare"], categorical=["site", "tag"]).fit(fitting)

    later = pd.DataFrame({"x": [3.0], "rare": [7.5], "site": ["a"], "tag": ["new"]})
    assert encoder.transform(fitting).tolist() == [[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 1.0, 0.0]]
    assert encoder.transform(later).tolist() == [[3.0, 0.0, 0.0, 0.0]]
