"""Validation of ``/predict`` bodies against a model's feature schema.

Three body forms: ``{"features": {...}}`` (one record), ``{"instances": [{...}, ...]}``
(records) and ``{"columns": {"Feature": [...], ...}}`` (one array per feature). All
become columns, the form the model and the prediction log take; the columnar form
skips every per-record step, which is what large batches pay for.

Checks run column by column so that a batch of thousands costs a few set and NumPy
operations per feature; only a column that fails the fast check is scanned value by
value to name each bad field. Every problem found is reported, up to
``MAX_PROBLEMS``, as ``features.Feature``, ``instances[i].Feature`` or
``columns.Feature[i]``.

A batch of records is transposed by position and each column checked as soon as it is
taken, while its values are still in the CPU's cache (:func:`_transposed_and_checked`).
What the checks build on the way is kept: numeric columns as float arrays for the model,
and a batch's category columns as their distinct values and one code per row
(:class:`~watchkeeper.category_column.CategoryColumn`), so that the encoder looks each
distinct text up once instead of once per row. A batch's columns are handed on in those
compact forms wherever they keep the values the body held (integers as int64, floats as
float64, categories coded), so that the prediction log stores the same values (numbers
as the body spelled them, a category column as its values and codes:
:mod:`watchkeeper.feature_columns`) without visiting a Python object per value.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np

from watchkeeper.category_column import CategoryColumn
from watchkeeper.errors import (
    BadRequest,
    FieldProblem,
    PayloadTooLarge,
    ValidationFailed,
    clipped,
)
from watchkeeper.schema import Feature, FeatureSchema

MAX_PROBLEMS = 100
_NUMBER = (int, float)
_NONE = type(None)
_INTEGER = frozenset({int})
_NUMBER_TYPES = frozenset(_NUMBER)
_NUMBER_OR_NULL = _NUMBER_TYPES | {_NONE}
_TEXT = frozenset({str})
_TEXT_OR_NULL = frozenset({str, _NONE})
_FORMS = ("features", "instances", "columns")
# A boolean column in training becomes these categories (``category_text``).
BOOLEAN_CATEGORIES = frozenset({"True", "False"})
# How a CSV may spell them: pandas reads true/TRUE/True as one boolean, so a client
# sending the file's own text "true" means the category "True", not an unseen value.
BOOLEAN_SPELLINGS = {"true": "True", "false": "False"}
# Below this many records, each record's values are taken by name (one itemgetter call
# per record), as a single record's are: transposing by position while checking pays
# for 1,000 records (0.91x in process) and not yet for 100 (1.03x).
_TRANSPOSE_MIN_RECORDS = 500
# Below this many rows, coding a category column costs more than the encoder saves:
# 100 rows cost 1.09x in process; 1,000 rows 0.96x with the log on in a live server.
_CODED_MIN_ROWS = 500
_BYTE_CODES = 256
_EXACT_INTEGERS = 2.0**53  # float64 holds every integer up to this exactly
# From this many values, a column of integers is converted through int64 (exact, and
# the log's form of it at no further cost): 200 values 0.94x, 500 0.84x, 1,000 0.80x
# with the log's form; 100 values 1.03x, the extra array's calls costing more.
_INTEGER_ARRAY_MIN_ROWS = 150

# Where the value of row ``i`` of one feature sits in the body, for error messages.
FieldName = Callable[[int], str]


class _Absent:
    """Stands in a column for a key the record lacks (already reported as missing)."""


_ABSENT = _Absent()


@dataclass(frozen=True)
class ValidatedRequest:
    """A valid body as columns: one sequence of values per schema feature, in schema
    order, each ``n_rows`` long (a JSON body's lists, or for a batch, where they keep
    the same values, NumPy arrays and
    :class:`~watchkeeper.category_column.CategoryColumn` for categories; an Arrow body's
    arrays and category columns).
    ``single`` when the body was ``{"features": ...}`` (answered with one prediction
    instead of a list)."""

    columns: dict[str, Sequence[Any]]
    single: bool
    n_rows: int
    # Numeric columns as float64 (null -> NaN), built by the checks anyway.
    numbers: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    # A JSON batch's category columns as distinct values and codes, built by the checks.
    categories: dict[str, CategoryColumn] = field(default_factory=dict, compare=False, repr=False)
    # False when validation changed a value's form (a JSON boolean taken as its
    # category's text): the body as sent is then not what the model saw, nor what the
    # log may store.
    as_sent: bool = field(default=True, compare=False)

    @property
    def model_input(self) -> dict[str, Sequence[Any]]:
        """The columns for ``Model.predict``, numeric ones as the arrays validation
        built and a batch's category columns coded, so that a large batch is converted
        once and each distinct category looked up once."""
        built = self.numbers | self.categories
        return {name: built.get(name, column) for name, column in self.columns.items()}


def validate_predict_payload(
    payload: Any, schema: FeatureSchema, *, max_batch_size: int
) -> ValidatedRequest:
    if not isinstance(payload, dict):
        raise BadRequest(
            "body must be a JSON object with a 'features' object, an 'instances' array or "
            f"a 'columns' object, got {_json_type(payload)}"
        )
    form = _form(payload)
    if form == "columns":
        return _validate_columns(payload["columns"], schema, max_batch_size)
    if form == "features":
        return _validate_records(
            [payload["features"]], schema, single=True, prefix=lambda _i: "features"
        )
    return _validate_records(
        _instances(payload["instances"], max_batch_size),
        schema,
        single=False,
        prefix=lambda i: f"instances[{i}]",
    )


def _form(payload: dict[str, Any]) -> str:
    keys = set(payload)
    if len(keys) == 1 and (form := next(iter(keys))) in _FORMS:
        return form
    forms = sorted(keys & set(_FORMS))
    if len(forms) > 1:
        message = f"send one of 'features', 'instances' or 'columns', not {forms}"
    elif keys - set(_FORMS):
        unknown = sorted(keys - set(_FORMS))
        message = (
            f"unknown top-level field(s) {unknown}; expected 'features', 'instances' or 'columns'"
        )
    else:
        message = "body must have a 'features' object, an 'instances' array or a 'columns' object"
    raise BadRequest(message)


def _instances(instances: Any, max_batch_size: int) -> list[Any]:
    if not isinstance(instances, list):
        raise ValidationFailed(
            "instances must be an array",
            details=[FieldProblem("instances", f"must be an array, got {_json_type(instances)}")],
        )
    check_rows(len(instances), max_batch_size, "instances", ("instance", "instances"))
    return instances


def check_rows(n: int, max_batch_size: int, field: str, unit: tuple[str, str]) -> None:
    one, many = unit
    if n == 0:
        raise ValidationFailed(
            "empty batch", details=[FieldProblem(field, f"must hold at least one {one}")]
        )
    if n > max_batch_size:
        raise PayloadTooLarge(
            f"batch of {n} {many} exceeds the limit of {max_batch_size}",
            details=[FieldProblem(field, f"at most {max_batch_size} {many}")],
        )


def _validate_records(
    records: list[Any], schema: FeatureSchema, *, single: bool, prefix: Callable[[int], str]
) -> ValidatedRequest:
    if len(records) >= _TRANSPOSE_MIN_RECORDS:
        validated = _transposed_and_checked(records, schema)
        if validated is not None:
            return validated
    columns = _complete_columns(records, schema)
    problems: list[FieldProblem] = []
    if columns is None:
        columns = _record_columns(records, schema, prefix, problems)
    checks = _Checks(coded=len(records) >= _CODED_MIN_ROWS)
    for feature in schema.features:
        name = feature.name
        problems.extend(checks.check(feature, columns[name], _in_record(prefix, name)))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise failed(problems)
    return checks.validated(columns, single=single, n_rows=len(records))


def _transposed_and_checked(records: list[Any], schema: FeatureSchema) -> ValidatedRequest | None:
    """A batch of records whose fields all come in one order, transposed by position
    and checked one column at a time; ``None`` when a record is no object, its fields
    differ from the first's in order or name, or a column fails the fast checks (looked
    up by name and checked value by value then, to name every problem). Fields that
    are ignored columns (records shaped like the training data) are passed over, their
    values unread.

    ``zip`` over the records' keys proves the order (each position holds one key in
    every record; the parser's keys are shared strings, so each comparison is one of
    identity) and ``zip`` over their values gives the columns, all in C, at a third of
    the cost of looking each value up by name. Each column is checked as soon as it is
    taken, while its values are in the CPU's cache: a batch's values lie record after
    record in memory, so a column's are far apart, and checks run after the whole
    transposition found them evicted (under load, a cache miss per value)."""
    n = len(records)
    ignored = schema.ignored_names
    try:
        width = len(schema.features) if not ignored else len(records[0])  # TypeError: null
        if set(map(len, records)) != {width}:  # TypeError: a number or null
            return None
        order = list(records[0])  # TypeError: the first record is no object
        keys = zip(*map(dict.keys, records), strict=True)  # TypeError: a record is no object
        values = zip(*map(dict.values, records), strict=True)
    except TypeError:
        return None
    fields = set(order)
    if fields != set(schema.names) and not (ignored and fields - ignored == set(schema.names)):
        return None
    checks = _Checks(coded=n >= _CODED_MIN_ROWS)
    taken: dict[str, Sequence[Any]] = {}
    for name, at, column in zip(order, keys, values, strict=True):
        if at.count(name) != n:
            return None
        if name in ignored:
            continue  # any value, not passed on; its place proven like the others'
        if not checks.valid(schema[name], column):
            return None
        # a list where no compact form stands for the column (columns are lists)
        taken[name] = column if name in checks.compact else list(column)
    return checks.validated({name: taken[name] for name in schema.names}, single=False, n_rows=n)


def _complete_columns(records: list[Any], schema: FeatureSchema) -> dict[str, list[Any]] | None:
    """The records as columns when every record is an object with exactly the schema's
    fields, ignored columns aside, else ``None``. All in C: one ``itemgetter`` call per
    record takes its values (``KeyError`` for a missing field, ``TypeError`` for a
    record that is no object), equal lengths then rule out extra fields (beyond the
    ignored columns a record holds), and ``zip`` transposes."""
    names = schema.names
    try:
        rows = list(map(itemgetter(*names), records))
    except (KeyError, TypeError):
        return None
    if set(map(len, records)) != {len(names)} and not _only_ignored_besides(records, schema):
        return None
    if len(names) == 1:  # itemgetter of one key returns the value, not a 1-tuple
        return {names[0]: rows}
    return {name: list(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}


def _only_ignored_besides(records: list[dict[str, Any]], schema: FeatureSchema) -> bool:
    """Whether every record's fields beyond the schema's features (all of which it
    holds) are ignored columns: as many as it holds of those. ``keys() & ignored``
    visits the few ignored names, not the record's fields."""
    ignored = schema.ignored_names
    if not ignored:
        return False
    extra = len(schema.features)
    return all(len(r) - extra == len(r.keys() & ignored) for r in records)


def _record_columns(
    records: list[Any],
    schema: FeatureSchema,
    prefix: Callable[[int], str],
    problems: list[FieldProblem],
) -> dict[str, list[Any]]:
    """The records as columns, with ``_ABSENT`` where a field is missing, each record's
    problems (not an object, missing or unknown fields) appended to ``problems``."""
    expected = set(schema.names)
    ignored = schema.ignored_names  # columns training had but are no feature: any value
    for i, record in enumerate(records):
        where = prefix(i)
        if not isinstance(record, dict):
            problems.append(FieldProblem(where, f"must be an object, got {_json_type(record)}"))
            records[i] = {}
            continue
        if record.keys() != expected:
            keys = record.keys()
            problems.extend(
                FieldProblem(f"{where}.{name}", "missing")
                for name in schema.names
                if name not in keys
            )
            problems.extend(
                FieldProblem(f"{where}.{name}", "unknown field (not in the model's schema)")
                for name in keys
                if name not in expected and name not in ignored
            )
        if len(problems) >= MAX_PROBLEMS:
            raise failed(problems)
    return {name: [r.get(name, _ABSENT) for r in records] for name in schema.names}


def _validate_columns(raw: Any, schema: FeatureSchema, max_batch_size: int) -> ValidatedRequest:
    """``{"Feature": [v0, v1, ...], ...}``: the arrays are taken as they are (no copy,
    no per-row step); every feature must be present and all arrays equally long."""
    if not isinstance(raw, dict):
        raise ValidationFailed(
            "columns must be an object",
            details=[
                FieldProblem("columns", f"must be an object of arrays, got {_json_type(raw)}")
            ],
        )
    problems = [
        FieldProblem(f"columns.{name}", "unknown field (not in the model's schema)")
        for name in raw
        if name not in schema and name not in schema.ignored_names
    ]
    lengths = {name: len(raw[name]) for name in schema.names if isinstance(raw.get(name), list)}
    if not lengths:
        n_rows = 0
    else:  # the length most arrays agree on, so that the odd one out is named
        n_rows = Counter(lengths.values()).most_common(1)[0][0]
    for name in schema.names:
        if name not in raw:
            problems.append(FieldProblem(f"columns.{name}", "missing"))
        elif name not in lengths:
            problems.append(
                FieldProblem(f"columns.{name}", f"must be an array, got {_json_type(raw[name])}")
            )
        elif lengths[name] != n_rows:
            problems.append(
                FieldProblem(
                    f"columns.{name}",
                    f"has {lengths[name]} values, the other columns have {n_rows}",
                )
            )
    if n_rows or not problems:  # no rows at all is an empty batch only if nothing else is wrong
        check_rows(n_rows, max_batch_size, "columns", ("row", "rows"))
    checks = _Checks(coded=n_rows >= _CODED_MIN_ROWS)
    if schema.ignored_names & raw.keys():
        checks.as_sent = False  # the body holds an ignored column, which is not logged
    for feature in schema.features:
        name = feature.name
        if lengths.get(name) == n_rows:
            problems.extend(checks.check(feature, raw[name], _in_columns(name)))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise failed(problems)
    return checks.validated({name: raw[name] for name in schema.names}, single=False, n_rows=n_rows)


def _no_field(_i: int) -> str:
    return ""


def _in_record(prefix: Callable[[int], str], name: str) -> FieldName:
    return lambda i: f"{prefix(i)}.{name}"


def _in_columns(name: str) -> FieldName:
    return lambda i: f"columns.{name}[{i}]"


class _Checks:
    """Checks columns one by one, keeping what the model takes of the valid ones: a
    numeric column's float array in ``numbers``; with ``coded`` (a batch large enough
    to gain by it), a category column's codes in ``categories``, and in ``compact``
    whatever stands for a column in the log at a smaller cost (see :meth:`validated`)."""

    def __init__(self, *, coded: bool) -> None:
        self.coded = coded
        self.numbers: dict[str, np.ndarray] = {}
        self.categories: dict[str, CategoryColumn] = {}
        self.compact: dict[str, Sequence[Any]] = {}
        self.as_sent = True

    def validated(
        self, columns: dict[str, Sequence[Any]], *, single: bool, n_rows: int
    ) -> ValidatedRequest:
        """The request, each column replaced by its compact form where it has one: an
        array or a category column that the log stores as the same values (``orjson``
        writes NumPy numbers as Python's; a category column is stored as its values and
        codes), and writes without visiting a value object per row."""
        compact = self.compact
        return ValidatedRequest(
            columns={name: compact.get(name, column) for name, column in columns.items()},
            single=single,
            n_rows=n_rows,
            numbers=self.numbers,
            categories=self.categories,
            as_sent=self.as_sent,
        )

    def check(self, feature: Feature, column: list[Any], field: FieldName) -> list[FieldProblem]:
        """The column's problems."""
        if not feature.is_numeric and not self.coded:
            problems = check_categorical(feature, column, field)  # its own fast check first
            if not problems and not feature.is_boolean:
                return problems
            if (texts := self._category_texts(feature, column)) is None:
                return problems
            return check_categorical(feature, texts, field)
        if self.valid(feature, column):
            return []
        if feature.is_numeric:
            return _numeric_problems(feature, column, field)
        return check_categorical(feature, self.compact.get(feature.name, column), field)

    def _category_texts(self, feature: Feature, column: Sequence[Any]) -> list[Any] | None:
        """The column with its JSON booleans as the feature's categories ``"True"`` and
        ``"False"`` (a boolean column in training: the model codes a value by its
        text) and its integers as the categories that are their text
        (:func:`_with_category_texts`), kept as the column, which the log then stores;
        ``None`` when there is nothing to convert. Only called once the fast checks
        failed, so valid text costs nothing more."""
        texts = _with_category_texts(feature, column)
        if texts is not None:
            self.compact[feature.name] = texts
            self.as_sent = False
        return texts

    def valid(self, feature: Feature, column: Sequence[Any]) -> bool:
        """Whether the column passes the fast checks (some columns whose values are all
        valid do not: the value-by-value checks decide those)."""
        if feature.is_numeric:
            checked = _valid_numbers(feature, column)
            if checked is None:
                return False
            self.numbers[feature.name] = checked[0]
            if self.coded and (same := _same_json_numbers(checked)) is not None:
                self.compact[feature.name] = same
            return True
        if self.coded:
            if feature.is_boolean and (texts := self._category_texts(feature, column)):
                column = texts  # spelled "true"/"false": the categories' own text first
            coded = _valid_categories(feature, column)
            if coded is None and (texts := self._category_texts(feature, column)) is not None:
                coded = _valid_categories(feature, texts)
            if coded is None:
                return False
            self.categories[feature.name] = self.compact[feature.name] = coded
            return True
        return not self.check(feature, column, _no_field)  # booleans taken there


# A numeric column that passed the fast checks: its values as float64 (null -> NaN),
# what the model takes; the types of its values; and, when all are integers, the values
# as int64. A plain tuple: a single record checks 30-odd columns, and a named tuple's
# construction alone cost ~0.25 µs a column.
_Numbers = tuple[np.ndarray, set[type], np.ndarray | None]


def _valid_numbers(feature: Feature, column: Sequence[Any]) -> _Numbers | None:
    """The column as float64 (null -> NaN), and the types of its values, when every
    value is valid, in a few C-speed passes; ``None`` sends it to the value-by-value
    scan that names problems."""
    types = set(map(type, column))
    if not types <= (_NUMBER_OR_NULL if feature.nullable else _NUMBER_TYPES):
        return None
    integers = None
    if len(column) >= _INTEGER_ARRAY_MIN_ROWS and types == _INTEGER:
        integers = _int64(column)
    if integers is not None:
        values = integers.astype(np.float64)
        ok = np.ones(len(values), dtype=bool)  # an integer is finite
    else:
        try:
            values = np.array(column, dtype=np.float64)
        except OverflowError:
            return None
        ok = np.isfinite(values)
        if _NONE in types:
            ok |= np.fromiter((v is None for v in column), bool, len(column))
    if feature.minimum is not None:
        ok &= ~(values < feature.minimum)
    if feature.maximum is not None:
        ok &= ~(values > feature.maximum)
    return (values, types, integers) if ok.all() else None


def _int64(column: Sequence[Any]) -> np.ndarray | None:
    """A column of Python integers as int64, exact, in one C pass (``array``: ~15 µs
    for 1,000, where ``np.array`` to float64 took ~26); ``None`` when one is beyond
    int64's range."""
    try:
        return np.frombuffer(array("q", column), dtype=np.int64)
    except OverflowError:
        return None


def _same_json_numbers(numbers: _Numbers) -> np.ndarray | None:
    """An array that serialises as the column it was made from: the integers as int64
    (exact; from float64 only up to 2**53, which it holds exactly), the floats and
    nulls as they are (NaN is written null); ``None`` for a column of integers and
    floats together, or of integers and nulls, whose JSON tells them apart."""
    values, types, integers = numbers
    if integers is not None:
        integers.flags.writeable = False
        return integers
    if types == _INTEGER:
        return values.astype(np.int64) if np.abs(values).max() <= _EXACT_INTEGERS else None
    if int not in types:
        values.flags.writeable = False  # shared with the model's input
        return values
    return None


def _valid_categories(feature: Feature, column: Sequence[Any]) -> CategoryColumn | None:
    """The column as its distinct values and a code per row when every value is valid;
    ``None`` sends it to the value-by-value scan that names problems. A column of the
    feature's known categories is coded in one pass (:class:`_KnownCategories`);
    otherwise (a category training did not see, a value of another type) types and
    known categories are checked on the distinct values alone (only text equals text, so
    no value of another type hides behind an equal one); every row is hashed once and
    looked up once, all in C."""
    coded = _known_categories(feature).coded(column)
    if coded is not None:
        return coded
    try:
        distinct = dict.fromkeys(column)
    except TypeError:  # an array or an object: no hash
        return None
    if not set(map(type, distinct)) <= (_TEXT_OR_NULL if feature.nullable else _TEXT):
        return None
    if not feature.allow_unknown and not distinct.keys() <= {*feature.categories, None}:
        return None
    index = dict(zip(distinct, range(len(distinct)), strict=True))
    taken = itemgetter(*column)(index) if len(column) > 1 else (index[column[0]],)
    if len(index) <= _BYTE_CODES:  # bytes() packs the codes in C, a byte each
        codes = np.frombuffer(bytes(taken), dtype=np.uint8)
    else:
        codes = np.array(taken, dtype=np.intp)
    return CategoryColumn(tuple(index), codes)


@dataclass(frozen=True, slots=True)
class _KnownCategories:
    """A feature's categories from training, and null where it may be null, each with
    a code. Looking a column's rows up here at once codes it in one pass, where
    collecting its distinct values first takes two (1,000 rows: 15–20 µs a column
    less). Only text equals text and only None is None, so a row found here is valid."""

    index: dict[str | None, int]
    values: tuple[str | None, ...]  # the index's keys, by code

    def coded(self, column: Sequence[Any]) -> CategoryColumn | None:
        """The column with its distinct values and codes, or ``None`` if a row is not
        one of the known values (or has no hash)."""
        index = self.index
        try:
            taken = itemgetter(*column)(index) if len(column) > 1 else (index[column[0]],)
        except (KeyError, TypeError):
            return None
        # Only the values the rows hold, as the log stores a category column.
        values = self.values
        if len(index) > _BYTE_CODES:
            codes = np.array(taken, dtype=np.intp)
            used = np.bincount(codes, minlength=len(index)) > 0
            if used.all():
                return CategoryColumn(values, codes)
            kept = np.flatnonzero(used)
            renumbered = np.zeros(len(index), dtype=codes.dtype)
            renumbered[kept] = np.arange(len(kept))
            return CategoryColumn(tuple(values[i] for i in kept.tolist()), renumbered[codes])
        # A byte a code: which codes occur is a memchr each, and the renumbering one
        # bytes.translate, where NumPy's bincount and fancy indexing cost ~10 µs a
        # column more in call overheads (a nullable feature's column rarely holds
        # every known value, null included, so most columns are renumbered).
        raw = bytes(taken)
        held = bytes([code for code in range(len(index)) if code in raw])
        if len(held) < len(index):
            raw = raw.translate(bytes.maketrans(held, bytes(range(len(held)))))
            values = tuple([values[code] for code in held])
        return CategoryColumn(values, np.frombuffer(raw, dtype=np.uint8))


@lru_cache(maxsize=4096)
def _known_categories(feature: Feature) -> _KnownCategories:
    nulls: tuple[None, ...] = (None,) if feature.nullable else ()
    known = dict.fromkeys((*feature.categories, *nulls))  # in order, each once
    return _KnownCategories({value: code for code, value in enumerate(known)}, tuple(known))


def _numeric_problems(feature: Feature, column: list[Any], field: FieldName) -> list[FieldProblem]:
    return [
        FieldProblem(field(i), problem)
        for i, value in enumerate(column)
        if (problem := numeric_problem(feature, value)) is not None
    ][:MAX_PROBLEMS]


def numeric_problem(feature: Feature, value: Any) -> str | None:
    if value is _ABSENT:
        return None
    if value is None:
        return None if feature.nullable else "must not be null"
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return f"must be a number, got {_json_type(value)}"
    try:
        number = float(value)
    except OverflowError:
        return "number is too large"
    if number != number:
        return "must be a finite number, got NaN"
    if number in (float("inf"), float("-inf")):
        return f"must be a finite number, got {'-' if number < 0 else ''}Infinity"
    if feature.minimum is not None and number < feature.minimum:
        return f"must be >= {feature.minimum:g}, got {value}"
    if feature.maximum is not None and number > feature.maximum:
        return f"must be <= {feature.maximum:g}, got {value}"
    return None


def check_categorical(feature: Feature, column: list[Any], field: FieldName) -> list[FieldProblem]:
    if feature.allow_unknown and _all_strings(column):
        return []
    types = set(map(type, column))
    allowed = {str, _NONE} if feature.nullable else {str}
    if types <= allowed and (feature.allow_unknown or set(column) <= {*feature.categories, None}):
        return []
    known = set(feature.categories)
    problems = []
    for i, value in enumerate(column):
        if value is _ABSENT:
            problem = None
        elif value is None:
            problem = None if feature.nullable else "must not be null"
        elif not isinstance(value, str):
            problem = f"must be a string, got {_json_type(value)}"
        elif not feature.allow_unknown and value not in known:
            # cut, or a long value would push the allowed list past a problem's limit
            problem = f"unknown category {clipped(repr(value), 200)}; allowed: {sorted(known)}"
        else:
            problem = None
        if problem is not None:
            problems.append(FieldProblem(field(i), problem))
            if len(problems) >= MAX_PROBLEMS:
                break
    return problems


def number_category(feature: Feature, value: int | float) -> str | None:
    """The category of ``feature`` a number (never a boolean) stands for, if any: the
    category equal to it as a number, as /openapi.json's ``enum`` compares (JSON does
    not tell 1 from 1.0). Where two categories are the same number (``"1"`` and
    ``"1.0"``, ``"0.0"`` and ``"-0.0"``) the number as sent picks: a float whose
    ``repr`` is a category is that one (1.0 for ``"1.0"``,
    :attr:`~watchkeeper.schema.Feature.decimal_categories`), else an integer's text
    (``1`` or ``1.0`` for ``"1"``, :attr:`~watchkeeper.schema.Feature.integer_categories`),
    else a decimal category of its value (``1`` for ``"1.0"``,
    :attr:`~watchkeeper.schema.Feature.decimal_numbers`). Only categories a number
    writes count: 2.5 is not ``"2.50"``, and NaN or an infinity is no category."""
    if type(value) is float and feature.decimal_categories:
        text = repr(value)
        if text in feature.decimal_categories:
            return text
    category = feature.integer_categories.get(value)  # 1.0 == 1: the same key; NaN none
    if category is None and feature.decimal_categories:
        category = feature.decimal_numbers.get(value)  # 10**20 == 1e20; 10**20 + 1 is not
    return category


def _with_category_texts(feature: Feature, column: Sequence[Any]) -> list[Any] | None:
    """``column`` with each boolean as its text, when the feature has that text among
    its categories (training found the column boolean), and, for a boolean feature,
    each other spelling of it (``"true"``, ``"FALSE"``) as its category; each JSON
    number that is one of the feature's categories written as a number
    (:func:`number_category`: ``1`` or ``1.0`` for ``"1"``, ``1.5`` for ``"1.5"``; a
    column of numbers training read as text; ``/feedback`` matches class labels alike)
    as that category. ``None`` when there is nothing to convert; what has no such
    category stays (a boolean or a number is then refused as no string). A boolean is
    never taken for ``"1"`` or ``"0"``: its text is ``"True"``/``"False"``."""
    numbers = bool(feature.integer_categories or feature.decimal_categories)
    booleans = bool(BOOLEAN_CATEGORIES & set(feature.categories))
    if not numbers and not booleans:
        return None
    spellings = BOOLEAN_SPELLINGS if feature.is_boolean else {}

    def text(value: Any) -> Any:
        if value is True or value is False:
            return str(value) if booleans else value
        if numbers and type(value) in _NUMBER_TYPES:  # not bool: True == 1 as a key
            category = number_category(feature, value)
            return value if category is None else category
        if spellings and isinstance(value, str) and value not in BOOLEAN_CATEGORIES:
            return spellings.get(value.lower(), value)
        return value

    texts = [text(v) for v in column]
    if all(t is v for t, v in zip(texts, column, strict=True)):
        return None
    return texts


def _all_strings(column: list[Any]) -> bool:
    """Whether every value is a string. ``str.join`` takes nothing else and checks in
    C, at a third of the cost of collecting the column's types (a column with a null
    takes the slower path)."""
    try:
        "".join(column)
    except TypeError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, _NUMBER):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def failed(problems: list[FieldProblem]) -> ValidationFailed:
    problems = problems[:MAX_PROBLEMS]
    fields = ", ".join(p.field for p in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    return ValidationFailed(f"invalid input: {fields}{more}", details=problems)
