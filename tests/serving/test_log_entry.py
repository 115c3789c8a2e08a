"""A journal line's numbers: the same text whether an entry holds NumPy arrays, as a
request thread's does, or lists, as an entry read back does; non-finite ones named."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from serving.log_entry import LogEntry
from tests.serving.log_entries import make_entry

NUMBERS = ("values", "lower", "upper", "ood")


def _header(entry: LogEntry) -> dict:
    return orjson.loads(entry.to_line().split(b"\t", 1)[0])


@pytest.mark.parametrize("rows", [1, 3, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_numbers_journal_as_the_same_text_as_lists(rows: int, dtype: type) -> None:
    rng = np.random.default_rng(rows)
    arrays = {
        name: (rng.normal(size=rows) * 10.0 ** rng.integers(-8, 9)).astype(dtype)
        for name in NUMBERS
    }
    as_arrays = make_entry(1, single=rows == 1, finite=True, **arrays)
    # What orjson writes for the arrays themselves, the form the line held before.
    expected = {
        name: orjson.loads(orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY))
        for name, a in arrays.items()
    }
    header = _header(as_arrays)
    assert {name: header[name] for name in NUMBERS} == expected
    lists = {n: expected[n] for n in NUMBERS}
    as_lists = make_entry(1, received_at=as_arrays.received_at, single=rows == 1, **lists)
    assert as_arrays.to_line() == as_lists.to_line()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", NUMBERS)
def test_a_single_records_non_finite_number_is_named_in_its_line(name: str, bad: float) -> None:
    arrays = {n: np.array([2.5]) for n in NUMBERS}
    arrays[name] = np.array([bad])
    entry = make_entry(1, finite=False, **arrays)
    header = _header(entry)
    spelled = {math.inf: "Infinity", -math.inf: "-Infinity"}.get(bad, "NaN")
    assert header[name] == [spelled]
    back = LogEntry.from_line(memoryview(entry.to_line())[:-1])
    got = float(getattr(back, name)[0])
    assert (math.isnan(got) and math.isnan(bad)) or got == bad
