"""An Arrow table checked against a schema: each Arrow type a feature can take, nulls
and unknown categories as the schema says, with JSON's messages at their rows."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from serving.arrow_validation import validate_arrow_table
from serving.validation import validate_predict_payload
from watchkeeper.category_column import CategoryColumn
from watchkeeper.errors import ValidationFailed
from watchkeeper.schema import Feature, FeatureSchema

SCHEMA = FeatureSchema(
    (
        Feature("area", "numeric", minimum=0, nullable=False),
        Feature("rooms", "numeric"),
        Feature("zone", "categorical", categories=("A", "B"), allow_unknown=False),
        Feature("street", "categorical", nullable=False),
    ),
    target="price",
)


def _problems(table: pa.Table) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        validate_arrow_table(table, SCHEMA, max_batch_size=100)
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
    validated = validate_arrow_table(_table(), SCHEMA, max_batch_size=100)
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
    validated = validate_arrow_table(_table(area=array), SCHEMA, max_batch_size=100)
    assert validated.numbers["area"].dtype == np.float64
    assert validated.numbers["area"].tolist() == pytest.approx([120.5, 80, 95], abs=0.5)


@pytest.mark.parametrize(
    "array",
    [pa.array(["Elm", "Oak", "Elm"], pa.large_string()), pa.array(["Elm", "Oak", "Elm"])],
    ids=["large_string", "string"],
)
def test_text_of_any_width_is_a_category(array: pa.Array) -> None:
    validated = validate_arrow_table(_table(street=array), SCHEMA, max_batch_size=100)
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
    validated = validate_arrow_table(_table(zone=zone), SCHEMA, max_batch_size=100)
    assert list(validated.columns["zone"]) == ["A", "B", "A"]


def test_a_column_of_nulls_only_is_null_in_every_row() -> None:
    validated = validate_arrow_table(
        _table(rooms=pa.nulls(3), zone=pa.nulls(3)), SCHEMA, max_batch_size=100
    )
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
    ],
    ids=["bool-number", "list-number", "int-category", "int-dictionary-category"],
)
def test_a_column_of_another_type_is_named_with_its_type(
    column: str, array: pa.Array, expected: str
) -> None:
    problems = _problems(_table(**{column: array}))
    assert list(problems) == [f"columns.{column}"]
    assert problems[f"columns.{column}"].startswith(f"must be {expected}")


def test_an_empty_table_is_an_empty_batch() -> None:
    assert _problems(_table().slice(0, 0)) == {"columns": "must hold at least one row"}


def test_integers_beyond_a_float64_mantissa_are_rounded_as_in_a_json_body() -> None:
    area = pa.array([2**53 + 1, 2**63 - 1, 5], pa.uint64())
    validated = validate_arrow_table(_table(area=area), SCHEMA, max_batch_size=100)
    json = validate_predict_payload(
        {"features": {"area": 2**53 + 1, "rooms": 3, "zone": "A", "street": "Elm"}},
        SCHEMA,
        max_batch_size=100,
    )
    assert validated.numbers["area"].tolist() == [2.0**53, 2.0**63, 5.0]
    assert validated.numbers["area"][0] == json.numbers["area"][0]
