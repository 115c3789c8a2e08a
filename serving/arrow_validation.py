"""Validation of an Arrow table (a ``/predict`` body in Arrow's IPC format) against a
model's feature schema, into the same columns a JSON body becomes.

Types are checked per column, from the table's schema: a numeric feature takes
integers, floats or decimals, a categorical one strings (plain, large, or
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
import pyarrow.compute as pc

from serving.validation import (
    BOOLEAN_CATEGORIES,
    BOOLEAN_SPELLINGS,
    MAX_PROBLEMS,
    ValidatedRequest,
    check_categorical,
    check_rows,
    failed,
    number_category,
    numeric_problem,
)
from watchkeeper.category_column import CategoryColumn
from watchkeeper.errors import FieldProblem, PayloadTooLarge
from watchkeeper.schema import Feature, FeatureSchema


def validate_arrow_table(
    table: pa.Table, schema: FeatureSchema, *, max_batch_size: int, max_text_bytes: int
) -> ValidatedRequest:
    """The table as columns; 422 naming every problem, 413 when its category columns
    hold more than ``max_text_bytes`` of text once each row has its value (a
    dictionary value repeated by row, as the log's readers get them, and a JSON body
    would hold them)."""
    n_rows = table.num_rows
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(table.column_names):
        positions.setdefault(name, []).append(position)
    problems = [
        FieldProblem(f"columns.{name}", "unknown field (not in the model's schema)")
        for name in positions
        if name not in schema and name not in schema.ignored_names
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
    else:
        raise failed(problems)  # no values to check
    columns: dict[str, Any] = {}
    numbers: dict[str, np.ndarray] = {}
    text = _TextBudget(max_text_bytes)
    for feature in schema.features:
        at = positions.get(feature.name, ())
        if len(at) != 1:
            continue
        column = table.column(at[0])
        if feature.is_numeric:
            array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
            problems.extend(_numeric(feature, array, columns, numbers))
        else:
            problems.extend(_categorical(feature, column, columns, text))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise failed(problems)
    return ValidatedRequest(columns=columns, single=False, n_rows=n_rows, numbers=numbers)


def _field(feature: Feature, i: int) -> str:
    return f"columns.{feature.name}[{i}]"


def _type_problem(feature: Feature, kind: pa.DataType, expected: str) -> list[FieldProblem]:
    return [FieldProblem(f"columns.{feature.name}", f"must be {expected}, got {kind}")]


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
        return _type_problem(feature, kind, "an integer, float or decimal column")
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
    columns[feature.name] = _integers(array) if pa.types.is_integer(kind) else values
    numbers[feature.name] = values
    return []


def _integers(array: pa.Array) -> np.ndarray | list[int | None]:
    """An integer column as the log writes it: exact integers, null for null (as a
    float64 array with NaN, integers beyond 2**53 would be logged rounded)."""
    if not array.null_count:
        return array.to_numpy(zero_copy_only=False)
    logged = array.fill_null(0).to_numpy(zero_copy_only=False).astype(object)
    logged[np.asarray(array.is_null())] = None
    return logged.tolist()


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


class _TextBudget:
    """The text the category columns hold once every row has its value, against the
    request's size limit: a JSON body cannot hold more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, feature: Feature, n_bytes: int) -> None:
        self.used += n_bytes
        if self.used > self.limit:
            raise PayloadTooLarge(
                f"the category columns hold over {self.limit} bytes of text once each row "
                "has its value (dictionary values repeated by row); at most the size limit",
                details=[
                    FieldProblem(
                        f"columns.{feature.name}", f"{n_bytes} bytes of text across its rows"
                    )
                ],
            )


def _categorical(
    feature: Feature, column: pa.ChunkedArray, columns: dict[str, Any], text: _TextBudget
) -> list[FieldProblem]:
    """Checks a category column through its distinct values, with a JSON body's
    messages, each named at the rows holding the value; a valid one goes into
    ``columns`` as a :class:`CategoryColumn`. Record batches are taken one by one, each
    with its own dictionary (combining them may need wider codes than the body's)."""
    kind = column.type
    if pa.types.is_boolean(kind) and BOOLEAN_CATEGORIES & set(feature.categories):
        column = _boolean_texts(column)  # as a JSON body's booleans: the model's text
        kind = column.type
    elif (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and (
        feature.integer_categories or feature.decimal_categories
    ):
        texts = _number_texts(feature, column)  # as a JSON body's numbers
        if texts is None:
            return _type_problem(feature, kind, "a string or dictionary-encoded string column")
        column, kind = texts, texts.type
    if pa.types.is_dictionary(kind):
        if not _is_text(kind.value_type):
            return _type_problem(feature, kind, "a string or dictionary-encoded string column")
    elif not (_is_text(kind) or pa.types.is_null(kind)):
        return _type_problem(feature, kind, "a string or dictionary-encoded string column")
    values: list[str | None] = []
    pieces: list[tuple[np.ndarray, np.ndarray | None]] = []  # codes, and null rows
    n_bytes = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            n_bytes += _dictionary_text(chunk)
        else:  # its text is in the body: bounded by the body's size
            chunk = (
                chunk.cast(pa.string()) if pa.types.is_null(kind) else chunk
            ).dictionary_encode()
        codes = chunk.indices
        # int64 where codes change: a small index type may not fit one past the values
        if chunk.null_count:
            nulls = np.asarray(chunk.is_null())
            index = codes.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            nulls, index = None, codes.to_numpy(zero_copy_only=False)
        pieces.append((index.astype(np.int64) + len(values) if values else index, nulls))
        values.extend(chunk.dictionary.to_pylist())
    text.spend(feature, n_bytes)
    if feature.is_boolean:  # "true" as a CSV spells it: the category "True"
        values = [
            BOOLEAN_SPELLINGS.get(v.lower(), v)
            if v is not None and v not in BOOLEAN_CATEGORIES
            else v
            for v in values
        ]
    index = pieces[0][0] if len(pieces) == 1 else np.concatenate([p for p, _ in pieces])
    if any(nulls is not None for _, nulls in pieces):
        index = index.astype(np.int64)
        index[np.concatenate([_nulls(p, n) for p, n in pieces])] = len(values)  # the None
    distinct = (*values, None)
    if check_categorical(feature, list(distinct), str):
        # some distinct value is bad: name the rows of those the rows use (a dictionary
        # may hold values no row uses, as a pandas Categorical keeps unused categories)
        used = np.unique(index)
        bad = {
            int(used[int(p.field)]): p.problem
            for p in check_categorical(feature, [distinct[i] for i in used.tolist()], str)
        }
        if bad:
            rows = np.flatnonzero(np.isin(index, list(bad)))[:MAX_PROBLEMS].tolist()
            return [FieldProblem(_field(feature, i), bad[int(index[i])]) for i in rows]
    columns[feature.name] = CategoryColumn(distinct, index)
    return []


def _boolean_texts(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A boolean column as the text of its values, ``"True"`` and ``"False"`` (Arrow's
    own cast writes ``"true"``), nulls kept."""
    return pc.if_else(column, "True", "False")


def _number_texts(feature: Feature, column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """An integer or float column as the categories its values stand for, as a JSON
    body's numbers do (:func:`~serving.validation.number_category`: 1 or 1.0 for
    ``"1"``, 1.5 for ``"1.5"``; a column of numbers training read as text),
    dictionary-encoded, nulls kept; ``None`` when a value stands for none, which is
    refused as a JSON body's number is. Each distinct value is looked up once, told
    apart by its bits (-0.0 is not 0.0: ``repr`` writes them apart). A float32 or
    float16 value is read as float64, as a numeric feature's is."""
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    nulls = np.asarray(array.is_null()) if array.null_count else None
    values = array.drop_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(array.type):
        values = values.astype(np.float64)
    bits = values.view(np.int64) if values.dtype == np.float64 else values
    _, first, codes = np.unique(bits, return_index=True, return_inverse=True)
    texts = [number_category(feature, v) for v in values[first].tolist()]
    if None in texts:
        return None
    indices = codes.astype(np.int64)
    if nulls is not None:  # each present row's code in its place; null where it was
        indices = np.zeros(len(array), dtype=np.int64)
        indices[~nulls] = codes
    encoded = pa.DictionaryArray.from_arrays(
        pa.array(indices, mask=nulls), pa.array(texts, pa.string())
    )
    return pa.chunked_array([encoded])


def _dictionary_text(chunk: pa.DictionaryArray) -> int:
    """Bytes of text the chunk's rows hold once each has its value."""
    lengths = pc.binary_length(chunk.dictionary)
    if lengths.null_count:
        lengths = lengths.fill_null(0)
    codes = chunk.indices.drop_null() if chunk.null_count else chunk.indices
    return int(lengths.to_numpy(zero_copy_only=False)[codes.to_numpy(zero_copy_only=False)].sum())


def _nulls(index: np.ndarray, nulls: np.ndarray | None) -> np.ndarray:
    return np.zeros(len(index), bool) if nulls is None else nulls


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)  # views: arrow_ipc
