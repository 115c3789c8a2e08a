"""A category column held as its distinct values and one code per row.

A dictionary-encoded column (Arrow's, pandas' ``Categorical``) has few distinct texts
and many rows. As Python strings, every row costs a lookup wherever the column is
read: 1,000 rows cost :class:`~watchkeeper.encoding.TabularEncoder` ~57 µs a
column through ``dict.get``; with the distinct values looked up once and the codes
taken by NumPy, a few µs. It is a read-only sequence of the row values, so code that
does not know it reads it as a list would be read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np


class CategoryColumn(Sequence[str | None]):
    """Row ``i`` holds ``values[codes[i]]`` (None: null). Not a dataclass: serialisers
    (orjson) would write a dataclass as an object of its fields, not as its rows."""

    __slots__ = ("codes", "values")

    def __init__(self, values: tuple[str | None, ...], codes: np.ndarray) -> None:
        self.values = values
        self.codes = codes  # integers, one per row, each in range(len(values))

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, index: int) -> str | None: ...
    @overload
    def __getitem__(self, index: slice) -> list[str | None]: ...
    def __getitem__(self, index: int | slice) -> str | None | list[str | None]:
        if isinstance(index, slice):
            return self.tolist()[index]
        return self.values[self.codes[index]]

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.tolist())

    def tolist(self) -> list[str | None]:
        """The row values as a list (NumPy takes them by code, without a Python loop)."""
        return np.array(self.values, dtype=object)[self.codes].tolist()

    def mapped(self, lookup: Sequence[float]) -> np.ndarray:
        """``lookup[j]`` for value ``j``, row by row: a per-value result per row."""
        return np.asarray(lookup, dtype=np.float64)[self.codes]
