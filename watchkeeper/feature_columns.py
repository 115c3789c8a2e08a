"""A request's features as ``requests.features`` stores them, and as readers get them.

Stored: one JSON object, a member per feature. A column is a list of its row values
(``[3, 7.5, null]``, ``["Pave", "Grvl"]``), or, for a category column that reached
the log dictionary-encoded (an Arrow body's,
:class:`~watchkeeper.category_column.CategoryColumn`), an object of its distinct
values and one code per row: ``{"values": ["Pave", "Grvl", null], "codes": [0, 0, 1]}``
(row ``i`` holds ``values[codes[i]]``). Ames' 40 category columns of 1,000 rows are
387 KB of text as lists and 84 KB as values and codes (a request's features 491 KB
and 189 KB): the request thread, the log writer and PostgreSQL (which compresses and
TOASTs the value) handle every stored byte. A validated column is always an array of
scalars, so an object in place of a list is this form and nothing else.

Readers get lists either way (:func:`row_columns`): what a client sent, row by row.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.category_column import CategoryColumn

VALUES, CODES = "values", "codes"


def stored_category(column: CategoryColumn) -> dict[str, Any]:
    """The stored form of a category column: its values once, its codes as NumPy
    integers (orjson writes them with ``OPT_SERIALIZE_NUMPY`` without a Python loop)."""
    return {VALUES: column.values, CODES: column.codes}


def row_column(stored: Any) -> Any:
    """A stored column as its row values: a list as it is; a category column's values
    and codes as the list of each row's value. Raises ``ValueError`` for an object of
    another shape, or a code outside its values (a damaged row)."""
    if not isinstance(stored, dict):
        return stored
    values, codes = stored.get(VALUES), stored.get(CODES)
    if len(stored) != 2 or not isinstance(values, list) or not isinstance(codes, list):
        raise ValueError(f"a stored column is neither a list nor values and codes: {stored!r:.80}")
    by_code = dict(enumerate(values))
    try:
        # a lookup per row (~15 µs for 1,000): a code not in range(len(values)) fails
        return list(map(by_code.__getitem__, codes))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a stored category code is not one of its values: {exc}") from exc


def row_columns(stored: dict[str, Any]) -> dict[str, Any]:
    """Every stored column as its row values (the object itself when no column is a
    category column's values and codes)."""
    if not any(isinstance(column, dict) for column in stored.values()):
        return stored
    return {name: row_column(column) for name, column in stored.items()}
