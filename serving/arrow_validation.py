"""Validation of an Arrow table (a ``/predict`` body in Arrow's IPC format) against a
model's feature schema, into the same columns a JSON body becomes.

Types are checked per column, from the table's schema: a numeric feature takes
integers, floats or decimals, a categorical one strings (plain, large, view, or
dictionary-encoded). Numbers are checked with a few NumPy calls per column, text as a
JSON body's, each distinct value once (plain text is dictionary-encoded first, in
C++); only a column that fails is scanned row by row to name each bad field, as
``columns.Feature[i]``, with the messages a JSON body gets. A category column stays
dictionary-encoded (:class:`~watchkeeper.category_column.CategoryColumn`) up to the
model's encoder, which looks each distinct value up once: as Python strings, 1,000
rows would cost 30–60 µs to convert and as much again to encode, per column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from serving.validation import (
    MAX_PROBLEMS,
    ValidatedRequest,
    check_categorical,
    check_rows,
    failed,
    numeric_problem,
)
from watchkeeper.category_column import CategoryColumn
from watchkeeper.errors import FieldProblem
from watchkeeper.schema import Feature, FeatureSchema


def validate_arrow_table(
    table: pa.Table, schema: FeatureSchema, *, max_batch_size: int
) -> ValidatedRequest:
    n_rows = table.num_rows
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(table.column_names):
        positions.setdefault(name, []).append(position)
    problems = [
        FieldProblem(f"columns.{name}", "unknown field (not in the model's schema)")
        for name in positions
        if name not in schema
    ]
    problems.extend(
        FieldProblem(f"columns.{name}", f"appears {len(at)} times")
        for name, at in positions.items()
        if len(at) > 1 and name in schema
    )
    problems.extend(
        FieldProblem(f"columns.{name}", "missing") for name in schema.names if name not in positions
    )
    if n_rows or not problems:  # no rows at all is an empty batch only if nothing else is wrong
        check_rows(n_rows, max_batch_size, "columns", ("row", "rows"))
    columns: dict[str, Any] = {}
    numbers: dict[str, np.ndarray] = {}
    for feature in schema.features:
        at = positions.get(feature.name, ())
        if len(at) != 1:
            continue
        column = table.column(at[0])
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        if feature.is_numeric:
            problems.extend(_numeric(feature, array, columns, numbers))
        else:
            problems.extend(_categorical(feature, array, columns))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise failed(problems)
    return ValidatedRequest(columns=columns, single=False, n_rows=n_rows, numbers=numbers)


def _field(feature: Feature, i: int) -> str:
    return f"columns.{feature.name}[{i}]"


def _type_problem(feature: Feature, array: pa.Array, expected: str) -> list[FieldProblem]:
    return [FieldProblem(f"columns.{feature.name}", f"must be {expected}, got {array.type}")]


def _numeric(
    feature: Feature, array: pa.Array, columns: dict[str, Any], numbers: dict[str, np.ndarray]
) -> list[FieldProblem]:
    """Checks a numeric column; a valid one goes into ``columns`` (integers stay
    integers, as a JSON body's do in the log) and, as float64 with NaN for null,
    into ``numbers``."""
    kind = array.type
    if pa.types.is_null(kind):
        array = pa.nulls(len(array), pa.float64())
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        return _type_problem(feature, array, "an integer, float or decimal column")
    values = (
        array.to_numpy(zero_copy_only=False)
        if kind == pa.float64()
        # unsafe: integers beyond 2**53 and decimals are rounded, as a JSON body's are
        else array.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    )
    ok = np.isfinite(values)  # null is NaN here: a problem unless the feature is nullable
    if array.null_count and feature.nullable:
        ok |= np.asarray(array.is_null())
    if feature.minimum is not None:
        ok &= ~(values < feature.minimum)
    if feature.maximum is not None:
        ok &= ~(values > feature.maximum)
    if not ok.all():
        return _numeric_rows(feature, array, np.flatnonzero(~ok)[:MAX_PROBLEMS])
    columns[feature.name] = (
        array.to_numpy(zero_copy_only=False)
        if pa.types.is_integer(kind) and not array.null_count
        else values
    )
    numbers[feature.name] = values
    return []


def _numeric_rows(feature: Feature, array: pa.Array, rows: np.ndarray) -> list[FieldProblem]:
    problems = []
    for i in rows.tolist():
        value = array[i].as_py()
        if value is not None and not isinstance(value, int | float):
            value = float(value)  # a Decimal: its problem is a bound
        problem = numeric_problem(feature, value)
        if problem is not None:
            problems.append(FieldProblem(_field(feature, i), problem))
    return problems


def _categorical(feature: Feature, array: pa.Array, columns: dict[str, Any]) -> list[FieldProblem]:
    """Checks a category column through its distinct values, with a JSON body's
    messages, each named at the rows holding the value; a valid one goes into
    ``columns`` as a :class:`CategoryColumn`."""
    kind = array.type
    if not (pa.types.is_dictionary(kind) and _is_text(kind.value_type)):
        if not (_is_text(kind) or pa.types.is_null(kind)):
            return _type_problem(feature, array, "a string or dictionary-encoded string column")
        array = (array if kind == pa.string() else array.cast(pa.string())).dictionary_encode()
    values = (*array.dictionary.to_pylist(), None)  # null rows point past the dictionary
    codes = array.indices.fill_null(len(values) - 1) if array.null_count else array.indices
    index = codes.to_numpy(zero_copy_only=False)
    # each distinct value's problem, found under a field named by its code
    bad = {int(p.field): p.problem for p in check_categorical(feature, list(values), str)}
    if bad:
        rows = np.flatnonzero(np.isin(index, list(bad)))[:MAX_PROBLEMS].tolist()
        if rows:
            return [FieldProblem(_field(feature, i), bad[int(index[i])]) for i in rows]
    columns[feature.name] = CategoryColumn(values, index)
    return []


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or getattr(pa.types, "is_string_view", lambda _kind: False)(kind)  # pyarrow >= 16
    )
