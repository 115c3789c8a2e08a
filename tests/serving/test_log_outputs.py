"""``requests.outputs`` as the writer writes it: a single record's items read back from
the journal take a path without NumPy, and must come out as the NumPy path writes them."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from serving.log_entry import LogEntry
from serving.log_outputs import outputs_text
from tests.log_entries import journaled, log_entry


def _numpy_text(entry: LogEntry) -> str:
    """What the NumPy path writes for the entry's numbers (all finite)."""
    columns = [entry.values, entry.lower, entry.upper]
    if entry.ood is not None:
        columns.append(entry.ood)
    stacked = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    return orjson.dumps(stacked, option=orjson.OPT_SERIALIZE_NUMPY).decode()


@pytest.mark.parametrize(
    ("values", "ood"),
    [
        ([181000.0], [0.12]),
        ([1e-7], None),
        ([1e300], [0.0]),
        ([-0.0, 2.5], [3.0, 1e-300]),
    ],
)
def test_a_few_finite_items_are_written_as_the_numpy_path_writes_them(
    values: list[float], ood: list[float] | None
) -> None:
    entry = journaled(
        log_entry(
            1,
            len(values),
            values=np.array(values),
            lower=np.array(values) - 1,
            upper=np.array(values) + 1,
            ood=None if ood is None else np.array(ood),
        )
    )
    assert isinstance(entry.values, list)  # as the writer reads them
    assert outputs_text(entry) == _numpy_text(entry)


def test_integers_and_non_finite_numbers_take_the_general_path() -> None:
    """An integer is written as a float (``1.0``), a non-finite number as its name."""
    entry = log_entry(1, 1, values=[1], lower=[0], upper=[2], ood=None)
    assert orjson.loads(outputs_text(entry)) == [[1.0, 0.0, 2.0]]
    assert outputs_text(entry) == "[[1.0,0.0,2.0]]"
    nan = journaled(log_entry(2, 1, values=np.array([math.nan]), ood=None))
    assert orjson.loads(outputs_text(nan))[0][0] == "NaN"
