"""An Arrow table checked against a schema: each Arrow type a feature can take, nulls
and unknown categories as the schema says, with JSON's messages at their rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from serving.arrow_validation import validate_arrow_table
from serving.validation import validate_predict_payload
from watchkeeper.category_column import CategoryColumn
from watchkeeper.errors import PayloadTooLarge, ValidationFailed
from watchkeeper.schema import Feature, FeatureSchema, IgnoredColumn

TEXT = 1 << 20  # bytes of category text a table may decode to

SCHEMA = FeatureSchema(
    (
        Feature("area", "numeric", minimum=0, nullable=False),
        Feature("rooms", "numeric"),
        Feature("zone", "categorical", categories=("A", "B"), allow_unknown=False),
        Feature("street", "categorical", nullable=False),
    ),
    target="price",
)


def _validated(table: pa.Table) -> Any:
    return validate_arrow_table(table, SCHEMA, max_batch_size=100, max_text_bytes=TEXT)


def _problems(table: pa.Table) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        _validated(table)
    return {p.field: p.problem for p in failed.value.details}


def _table(**columns: pa.Array) -> pa.Table:
    base = {
        "area": pa.array([120.5, 80.0, 95.0]),
        "rooms": pa.array([3, None, 4]),
        "zone": pa.array(["A", None, "B"]).dictionary_encode(),
        "street": pa.array(["Elm", "Oak", "Elm"]),
    }
    return pa.table(base | columns)


def test_columns_match_those_of_the_same_json_columns() -> None:
    validated = _validated(_table())
    json = validate_predict_payload(
        {
            "columns": {
                "area": [120.5, 80.0, 95.0],
                "rooms": [3, None, 4],
                "zone": ["A", None, "B"],
                "street": ["Elm", "Oak", "Elm"],
            }
        },
        SCHEMA,
        max_batch_size=100,
    )
    # an integer column with a null is float64 (null: NaN), which the log writes as null
    assert {
        name: [None if v != v else v for v in column] for name, column in validated.columns.items()
    } == json.columns
    assert validated.numbers.keys() == json.numbers.keys()
    for name, numbers in validated.numbers.items():
        np.testing.assert_array_equal(numbers, json.numbers[name])  # NaN where null
    assert isinstance(validated.columns["zone"], CategoryColumn)
    assert validated.n_rows == 3 and not validated.single


@pytest.mark.parametrize(
    "array",
    [
        pa.array([120, 80, 95], pa.uint16()),
        pa.array([120.5, 80.0, 95.0], pa.float32()),
        pa.array([Decimal("120.5"), Decimal("80"), Decimal("95")], pa.decimal128(6, 2)),
    ],
    ids=["uint16", "float32", "decimal"],
)
def test_every_integer_float_and_decimal_type_is_a_number(array: pa.Array) -> None:
    validated = _validated(_table(area=array))
    assert validated.numbers["area"].dtype == np.float64
    assert validated.numbers["area"].tolist() == pytest.approx([120.5, 80, 95], abs=0.5)


@pytest.mark.parametrize(
    "array",
    [pa.array(["Elm", "Oak", "Elm"], pa.large_string()), pa.array(["Elm", "Oak", "Elm"])],
    ids=["large_string", "string"],
)
def test_text_of_any_width_is_a_category(array: pa.Array) -> None:
    validated = _validated(_table(street=array))
    assert list(validated.columns["street"]) == ["Elm", "Oak", "Elm"]


def test_nulls_unknown_categories_and_bounds_are_named_at_their_rows() -> None:
    table = _table(
        area=pa.array([120.5, None, -3.0]),
        zone=pa.array(["A", "Z", "Z"]).dictionary_encode(),
        street=pa.DictionaryArray.from_arrays(
            pa.array([0, 1, 0], pa.int8()), pa.array(["Elm", None])
        ),  # a null in the dictionary itself
    )
    assert _problems(table) == {
        "columns.area[1]": "must not be null",
        "columns.area[2]": "must be >= 0, got -3.0",
        "columns.zone[1]": "unknown category 'Z'; allowed: ['A', 'B']",
        "columns.zone[2]": "unknown category 'Z'; allowed: ['A', 'B']",
        "columns.street[1]": "must not be null",
    }


def test_a_dictionary_value_no_row_uses_is_no_problem() -> None:
    zone = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0]), pa.array(["A", "B", "Z"]))
    validated = _validated(_table(zone=zone))
    assert list(validated.columns["zone"]) == ["A", "B", "A"]


def test_a_column_of_nulls_only_is_null_in_every_row() -> None:
    validated = _validated(_table(rooms=pa.nulls(3), zone=pa.nulls(3)))
    assert np.isnan(validated.numbers["rooms"]).all()
    assert list(validated.columns["zone"]) == [None, None, None]


@pytest.mark.parametrize(
    ("column", "array", "expected"),
    [
        ("area", pa.array([True, False, True]), "an integer, float or decimal column, got bool"),
        ("area", pa.array([[1], [2], [3]]), "an integer, float or decimal column, got list<item"),
        ("zone", pa.array([1, 2, 3]), "a string or dictionary-encoded string column, got int64"),
        (
            "zone",
            pa.array([1, 2, 1]).dictionary_encode(),
            "a string or dictionary-encoded string column, got dictionary<values=int64",
        ),
        (
            "zone",
            pa.array([True, False, True]),
            "a string or dictionary-encoded string column, got bool",
        ),
    ],
    ids=["bool-number", "list-number", "int-category", "int-dictionary-category", "bool-category"],
)
def test_a_column_of_another_type_is_named_with_its_type(
    column: str, array: pa.Array, expected: str
) -> None:
    problems = _problems(_table(**{column: array}))
    assert list(problems) == [f"columns.{column}"]
    assert problems[f"columns.{column}"].startswith(f"must be {expected}")


def test_a_boolean_column_for_a_feature_trained_boolean_is_its_categories_text() -> None:
    """Training makes a boolean column the categories "True" and "False" (Arrow's own
    cast writes "true"): a pandas frame's boolean column sent as Arrow is taken as a
    JSON body's booleans are, nulls kept."""
    schema = FeatureSchema(
        (Feature("central_air", "categorical", categories=("False", "True"), allow_unknown=False),),
        target="price",
    )
    table = pa.table({"central_air": pa.array([True, None, False, True])})
    validated = validate_arrow_table(table, schema, max_batch_size=10, max_text_bytes=TEXT)
    assert list(validated.columns["central_air"]) == ["True", None, "False", "True"]


@pytest.mark.parametrize("dictionary", [False, True])
def test_a_text_column_spelling_a_boolean_feature_as_a_csv_does_is_its_categories(
    dictionary: bool,
) -> None:
    """pandas reads a CSV's true/false as booleans ("True", "False" to the model): the
    file's own text "true" sent as an Arrow string column was an unseen value (the
    prediction for missing), or, as here with unknown categories refused, a 422."""
    schema = FeatureSchema(
        (Feature("central_air", "categorical", categories=("False", "True"), allow_unknown=False),),
        target="price",
    )
    array = pa.array(["true", None, "FALSE", "True"])
    table = pa.table({"central_air": array.dictionary_encode() if dictionary else array})
    validated = validate_arrow_table(table, schema, max_batch_size=10, max_text_bytes=TEXT)
    assert list(validated.columns["central_air"]) == ["True", None, "False", "True"]


def test_an_empty_table_is_an_empty_batch() -> None:
    assert _problems(_table().slice(0, 0)) == {"columns": "must hold at least one row"}


def test_integers_beyond_a_float64_mantissa_are_rounded_as_in_a_json_body() -> None:
    area = pa.array([2**53 + 1, 2**63 - 1, 5], pa.uint64())
    validated = _validated(_table(area=area))
    json = validate_predict_payload(
        {"features": {"area": 2**53 + 1, "rooms": 3, "zone": "A", "street": "Elm"}},
        SCHEMA,
        max_batch_size=100,
    )
    assert validated.numbers["area"].tolist() == [2.0**53, 2.0**63, 5.0]
    assert validated.numbers["area"][0] == json.numbers["area"][0]


def test_a_bad_category_is_found_behind_many_no_row_uses() -> None:
    """A pandas Categorical keeps unused categories: the check stops at 100 problems,
    which must not be spent on values no row holds."""
    unused = [f"unused{i}" for i in range(120)]
    zone = pa.DictionaryArray.from_arrays(pa.array([120, 0, 121]), pa.array([*unused, "Z", "A"]))
    street = pa.DictionaryArray.from_arrays(
        pa.array([120, 120, None]), pa.array([*[None] * 120, "Elm"])
    )
    assert _problems(_table(zone=zone, street=street)) == {
        "columns.zone[0]": "unknown category 'Z'; allowed: ['A', 'B']",
        "columns.zone[1]": "unknown category 'unused0'; allowed: ['A', 'B']",
        "columns.street[2]": "must not be null",
    }


def test_small_dictionary_codes_with_a_null_and_many_values_are_read() -> None:
    """int8 codes index 128 values at most: a null row's code must not be one more."""
    unused = [f"v{i}" for i in range(126)]
    zone = pa.DictionaryArray.from_arrays(
        pa.array([0, None, 1], pa.int8()), pa.array(["A", "B", *unused])
    )
    validated = _validated(_table(zone=zone))
    assert list(validated.columns["zone"]) == ["A", None, "B"]


def test_batches_with_dictionaries_that_only_fit_wider_codes_together_are_read() -> None:
    """Two record batches whose int8 dictionaries, unified, need more than 128 codes."""
    kind = pa.dictionary(pa.int8(), pa.string())
    first = [f"a{i}" for i in range(100)]
    second = [f"b{i}" for i in range(100)]
    zone = pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int8()), pa.array(["A", "B"])),
            pa.DictionaryArray.from_arrays(pa.array([1], pa.int8()), pa.array(["B", "A"])),
        ]
    )
    street = pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(pa.array([0, 99], pa.int8()), pa.array(first)),
            pa.DictionaryArray.from_arrays(pa.array([5], pa.int8()), pa.array(second)),
        ],
        type=kind,
    )
    table = _table().set_column(2, "zone", zone).set_column(3, "street", street)
    validated = _validated(table)
    assert list(validated.columns["zone"]) == ["A", "B", "A"]
    assert list(validated.columns["street"]) == ["a0", "a99", "b5"]


def test_text_a_dictionary_repeats_over_rows_beyond_the_size_limit_is_413() -> None:
    """One long value referenced by every row: tiny in the body, rows × its length in
    the log (which stores each row's value)."""
    street = pa.DictionaryArray.from_arrays(pa.array([0, 0, 0]), pa.array(["x" * 400_000]))
    with pytest.raises(PayloadTooLarge) as refused:
        _validated(_table(street=street))
    assert [p.field for p in refused.value.details] == ["columns.street"]
    assert refused.value.details[0].problem == "1200000 bytes of text across its rows"


def test_an_integer_column_with_a_null_keeps_its_integers_for_the_log() -> None:
    rooms = pa.array([1, None, 2**53 + 1])
    validated = _validated(_table(rooms=rooms))
    assert validated.columns["rooms"] == [1, None, 2**53 + 1]
    assert validated.numbers["rooms"][[0, 2]].tolist() == [1.0, 2.0**53]


def test_a_schema_without_batches_and_a_missing_column_names_the_column() -> None:
    """A stream of a schema only: its columns have no chunks at all."""
    schema = _table().drop_columns(["rooms"]).schema
    assert _problems(pa.Table.from_batches([], schema=schema)) == {"columns.rooms": "missing"}


def test_an_ignored_column_of_any_type_is_taken_and_not_passed_on() -> None:
    schema = FeatureSchema(
        SCHEMA.features, target="price", ignored=(IgnoredColumn("empty", "no value in training"),)
    )
    for empty in (pa.nulls(3), pa.array([1, 2, 3]), pa.array(["a", None, "c"])):
        table = _table(empty=empty)
        validated = validate_arrow_table(table, schema, max_batch_size=100, max_text_bytes=TEXT)
        assert list(validated.columns) == ["area", "rooms", "zone", "street"]
    assert _problems(_table(empty=pa.nulls(3))) == {
        "columns.empty": "unknown field (not in the model's schema)"
    }


def test_an_integer_column_whose_values_are_categories_is_their_text() -> None:
    """A category feature trained on numbers as text ("1", "2"): a client's integer
    column was refused 'must be a string ... column, got int64'."""
    schema = FeatureSchema(
        (Feature("rating", "categorical", categories=("1", "2", "n/a"), nullable=True),),
        target="y",
    )

    def validated(array: pa.Array) -> Any:
        table = pa.table({"rating": array})
        return validate_arrow_table(table, schema, max_batch_size=100, max_text_bytes=TEXT)

    for kind in (pa.int8(), pa.uint16(), pa.int64()):
        column = validated(pa.array([2, None, 1, 2], kind)).columns["rating"]
        assert [column.values[c] for c in column.codes.tolist()] == ["2", None, "1", "2"]
    with pytest.raises(ValidationFailed) as failed:
        validated(pa.array([1, 3]))
    assert [(p.field, p.problem) for p in failed.value.details] == [
        ("columns.rating", "must be a string or dictionary-encoded string column, got int64")
    ]


def test_a_float_column_whose_values_are_categories_is_their_text() -> None:
    """A category whose text is a decimal number ("1.5") refused a client's float
    column 'must be a string ... column, got double', as a JSON body refused 1.5."""
    schema = FeatureSchema(
        (Feature("size", "categorical", categories=("-0.0", "0.5", "1.5", "2", "2.50")),),
        target="y",
    )

    def validated(array: pa.Array) -> Any:
        table = pa.table({"size": array})
        return validate_arrow_table(table, schema, max_batch_size=100, max_text_bytes=TEXT)

    for kind in (np.float64, np.float32, np.float16):
        values = np.array([1.5, 0, 2.0, 0.5, -0.0, 1.5], kind)
        array = pa.array(values, mask=np.array([False, True, False, False, False, False]))
        column = validated(array).columns["size"]
        assert [column.values[c] for c in column.codes.tolist()] == (
            ["1.5", None, "2", "0.5", "-0.0", "1.5"]
        ), kind
    for refused in (2.5, float("nan"), float("inf"), 3.0):  # "2.50" is not 2.5's text
        with pytest.raises(ValidationFailed) as failed:
            validated(pa.array([1.5, refused]))
        assert [(p.field, p.problem) for p in failed.value.details] == [
            ("columns.size", "must be a string or dictionary-encoded string column, got double")
        ], refused


def test_a_number_column_equal_to_decimal_categories_is_their_text() -> None:
    """JSON does not tell 1 from 1.0, nor -0.0 from 0: an integer column was refused
    for the category "1.0" ('must be a string ... column, got int64'), and a float
    column's 0.0 for "-0.0", where /openapi.json allows those numbers."""
    schema = FeatureSchema(
        (Feature("size", "categorical", categories=("1.0", "-0.0", "1e+20", "2.50")),),
        target="y",
    )

    def texts(array: pa.Array) -> list[Any]:
        table = pa.table({"size": array})
        validated = validate_arrow_table(table, schema, max_batch_size=100, max_text_bytes=TEXT)
        column = validated.columns["size"]
        return [column.values[c] for c in column.codes.tolist()]

    assert texts(pa.array([1, 0, None, 1], pa.uint64())) == ["1.0", "-0.0", None, "1.0"]
    assert texts(pa.array([1e20, 0.0])) == ["1e+20", "-0.0"]
    assert texts(pa.array([0.0, 1.0, -0.0])) == ["-0.0", "1.0", "-0.0"]
    for refused in (pa.array([1, 2]), pa.array([1.0, 2.5])):  # 2.5 is not "2.50"
        with pytest.raises(ValidationFailed):
            texts(refused)
