"""Labelled rows keep each prediction's id and time beside the features, row for row,
whatever the features are called."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from watchkeeper.labelled_rows import LabelledRows

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _rows() -> LabelledRows:
    frame = pd.DataFrame(
        {"_prediction_id": ["p", "q", "r", "s"], "_predicted_at": [1.0, 2.0, 3.0, 4.0]},
        index=[7, 8, 9, 10],
    )
    times = tuple(T0 + timedelta(seconds=i) for i in range(4))
    return LabelledRows(frame, ("a.0", "a.1", "a.2", "a.3"), times)


def test_a_mask_or_a_slice_takes_the_same_rows_of_features_ids_and_times() -> None:
    rows = _rows()

    masked = rows.take(np.array([True, False, True, False]))
    newest = rows.take(slice(2, None))

    assert masked.frame.to_dict("list") == {
        "_prediction_id": ["p", "r"],
        "_predicted_at": [1.0, 3.0],
    }
    assert masked.prediction_ids == ("a.0", "a.2")
    assert masked.predicted_at == (T0, T0 + timedelta(seconds=2))
    assert list(newest.frame.index) == [0, 1] and newest.prediction_ids == ("a.2", "a.3")


def test_ids_or_a_mask_that_do_not_match_the_rows_are_refused() -> None:
    rows = _rows()
    with pytest.raises(ValueError, match="4 rows with 3 prediction ids"):
        LabelledRows(rows.frame, rows.prediction_ids[:3], rows.predicted_at)
    with pytest.raises(ValueError, match="a mask of 2 for 4 rows"):
        rows.take([True, False])
