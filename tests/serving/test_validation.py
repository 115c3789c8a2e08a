"""Records become columns the same way whichever path builds them: a long batch of
complete objects (transposed by position, checked column by column), a short one
(taken by name), or anything else (value by value, naming every problem); and a batch's
columns write the JSON the body held."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from serving.log_features import encoded_columns
from serving.validation import validate_predict_payload
from watchkeeper.category_column import CategoryColumn
from watchkeeper.errors import ValidationFailed
from watchkeeper.feature_columns import row_columns
from watchkeeper.schema import Feature, FeatureSchema, IgnoredColumn

SCHEMA = FeatureSchema(
    (
        Feature("area", "numeric", minimum=0),
        Feature("rooms", "numeric"),
        Feature("zone", "categorical", categories=("A", "B")),
    ),
    target="price",
)


def _fields(payload: dict, schema: FeatureSchema = SCHEMA) -> list[str]:
    with pytest.raises(ValidationFailed) as failed:
        validate_predict_payload(payload, schema, max_batch_size=100)
    return [problem.field for problem in failed.value.details]


def test_complete_records_become_columns_in_schema_order() -> None:
    records = [
        {"zone": "A", "rooms": 3, "area": 120.5},
        {"rooms": None, "area": 80, "zone": None},
    ]
    validated = validate_predict_payload({"instances": records}, SCHEMA, max_batch_size=100)
    assert validated.columns == {
        "area": [120.5, 80],
        "rooms": [3, None],
        "zone": ["A", None],
    }
    assert list(validated.columns) == ["area", "rooms", "zone"]
    assert validated.n_rows == 2 and not validated.single


def test_a_renamed_field_is_named_missing_and_unknown_though_the_count_matches() -> None:
    records = [{"area": 1, "rooms": 2, "zone": "A"}, {"area": 1, "rooms": 2, "zonee": "A"}]
    assert _fields({"instances": records}) == ["instances[1].zone", "instances[1].zonee"]


def test_an_extra_field_beside_every_schema_field_is_named() -> None:
    records = [{"area": 1, "rooms": 2, "zone": "A", "colour": "red"}]
    assert _fields({"instances": records}) == ["instances[0].colour"]


def test_a_record_that_is_no_object_is_named_and_the_others_still_checked() -> None:
    records = [["area", 1], {"area": -1, "rooms": 2, "zone": "A"}, "x"]
    assert _fields({"instances": records}) == [
        "instances[0]",
        "instances[2]",
        "instances[1].area",
    ]


def test_a_one_feature_schema_takes_records() -> None:
    schema = FeatureSchema((Feature("area", "numeric"),), target="price")
    validated = validate_predict_payload(
        {"instances": [{"area": 1}, {"area": 2.5}]}, schema, max_batch_size=100
    )
    assert validated.columns == {"area": [1, 2.5]}
    single = validate_predict_payload({"features": {"area": 3}}, schema, max_batch_size=100)
    assert single.columns == {"area": [3]} and single.single


# A batch this long takes the fast path: transposed by position, checked column by
# column as it is taken, categories coded.
BATCH = 600

STRICT = FeatureSchema(
    (
        Feature("area", "numeric", minimum=0, maximum=1e6),
        Feature("rooms", "numeric", nullable=False),
        Feature("zone", "categorical", categories=("A", "B"), allow_unknown=False),
        Feature("street", "categorical", nullable=False),
    ),
    target="price",
)


def _batch(n: int = BATCH) -> list[dict[str, Any]]:
    return [
        {"area": 50.5 + i, "rooms": i % 7, "zone": "AB"[i % 2], "street": f"s{i % 3}"}
        for i in range(n)
    ]


def _problems(payload: dict[str, Any], schema: FeatureSchema) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        validate_predict_payload(payload, schema, max_batch_size=1000)
    return {problem.field: problem.problem for problem in failed.value.details}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("area", True, "must be a number, got boolean"),
        ("area", "12", "must be a number, got string"),
        ("area", [1], "must be a number, got array"),
        ("area", -1, "must be >= 0, got -1"),
        ("area", 2e6, "must be <= 1e+06, got 2000000.0"),
        ("area", float("nan"), "must be a finite number, got NaN"),
        ("area", 10**400, "number is too large"),
        ("rooms", None, "must not be null"),
        ("zone", "C", "unknown category 'C'; allowed: ['A', 'B']"),
        ("zone", 1, "must be a string, got number"),
        ("zone", False, "must be a string, got boolean"),
        ("zone", ["A"], "must be a string, got array"),
        ("zone", {"A": 1}, "must be a string, got object"),
        ("street", None, "must not be null"),
    ],
)
def test_a_bad_value_in_a_long_batch_is_named_as_in_a_short_one(
    field: str, value: Any, problem: str
) -> None:
    records = _batch()
    records[37][field] = value
    short = [records[37]]

    assert _problems({"instances": records}, STRICT) == {f"instances[37].{field}": problem}
    assert _problems({"instances": short}, STRICT) == {f"instances[0].{field}": problem}
    columns = {name: [r[name] for r in records] for name in STRICT.names}
    assert _problems({"columns": columns}, STRICT) == {f"columns.{field}[37]": problem}


def test_records_whose_fields_come_in_different_orders_give_the_same_columns() -> None:
    records = _batch()
    shuffled = [dict(reversed(r.items())) if i % 3 else r for i, r in enumerate(records)]

    validated = validate_predict_payload({"instances": shuffled}, STRICT, max_batch_size=1000)

    assert list(validated.columns) == list(STRICT.names)
    assert {name: list(column) for name, column in validated.columns.items()} == {
        name: [r[name] for r in records] for name in STRICT.names
    }


def test_a_missing_or_extra_field_in_a_long_batch_is_named() -> None:
    records = _batch()
    records[5].pop("rooms")
    records[9]["colour"] = "red"
    records[11]["zonee"] = records[11].pop("zone")

    assert _problems({"instances": records}, STRICT) == {
        "instances[5].rooms": "missing",
        "instances[9].colour": "unknown field (not in the model's schema)",
        "instances[11].zone": "missing",
        "instances[11].zonee": "unknown field (not in the model's schema)",
    }


def test_a_batch_hands_the_log_the_values_its_body_held() -> None:
    """Numbers as the body spelled them (``1`` and ``1.0`` apart), categories as their
    values and codes (watchkeeper.feature_columns), which read back as the body's."""
    schema = FeatureSchema(
        (
            Feature("ints", "numeric"),
            Feature("floats", "numeric"),
            Feature("float_nulls", "numeric"),
            Feature("int_nulls", "numeric"),
            Feature("mixed", "numeric"),
            Feature("huge", "numeric"),
            Feature("text", "categorical"),
            Feature("many", "categorical"),
        ),
        target="y",
    )
    n = 600
    records = [
        {
            "ints": i * 7 - 1000,
            "floats": i / 7,
            "float_nulls": None if i % 5 == 0 else i * 0.1,
            "int_nulls": None if i % 5 == 0 else i,
            "mixed": i if i % 2 else i + 0.5,
            "huge": 2**53 + i,
            "text": None if i % 4 == 0 else "ab"[i % 2],
            "many": f"v{i}",  # more distinct values than a byte codes
        }
        for i in range(n)
    ]
    columns = {name: [r[name] for r in records] for name in schema.names}

    for payload in ({"instances": records}, {"columns": columns}):
        validated = validate_predict_payload(payload, schema, max_batch_size=1000)
        stored = orjson.loads(encoded_columns(validated.columns))
        assert row_columns(stored) == columns
        for name in ("ints", "floats", "float_nulls", "int_nulls", "mixed", "huge"):
            assert orjson.dumps(stored[name]) == orjson.dumps(columns[name]), name
        assert isinstance(stored["text"], dict) and len(stored["text"]["values"]) == 3
        assert isinstance(validated.columns["many"], CategoryColumn)
        assert isinstance(validated.columns["ints"], np.ndarray)
        assert isinstance(validated.columns["mixed"], list)  # 1 and 1.0 write differently


@pytest.mark.parametrize("n", [149, 150, 600])
def test_a_batch_of_integers_keeps_every_value_exactly_and_every_bound(n: int) -> None:
    """A long column of integers is taken through int64 (below 150 values, through
    float64): either way the model gets floats and the log the integers exactly as
    sent, up to int64's limits and past them (as far as the parser reads integers);
    bounds and booleans are refused by name."""
    schema = FeatureSchema(
        (
            Feature("count", "numeric", minimum=-5, maximum=10**12),
            Feature("edges", "numeric"),
            Feature("beyond", "numeric"),
        ),
        target="y",
    )
    columns: dict[str, list[Any]] = {
        "count": [(i * 7919) % 1000 - 5 for i in range(n)],
        "edges": [(-(2**63), 2**63 - 1, 2**53 + 1, 0)[i % 4] for i in range(n)],
        # past int64, up to the largest integer the JSON parser returns as one
        "beyond": [2**64 - 1 - i if i % 3 == 0 else i for i in range(n)],
    }
    columns["count"][-1] = 10**12  # the bound itself is allowed
    records = [{name: columns[name][i] for name in columns} for i in range(n)]

    for payload in ({"instances": records}, {"columns": columns}):
        validated = validate_predict_payload(payload, schema, max_batch_size=1000)
        for name, column in columns.items():
            taken = validated.model_input[name]
            assert taken.dtype == np.float64
            assert taken.tolist() == [float(v) for v in column], name
        stored = encoded_columns(validated.columns)
        assert orjson.loads(stored) == columns
        assert orjson.dumps(orjson.loads(stored)["edges"]) == orjson.dumps(columns["edges"])

    bad = dict(columns, count=[*columns["count"][:-3], -6, 10**12 + 1, True])
    with pytest.raises(ValidationFailed) as failed:
        validate_predict_payload({"columns": bad}, schema, max_batch_size=1000)
    problems = {p.field: p.problem for p in failed.value.details}
    assert set(problems) == {
        f"columns.count[{n - 3}]",
        f"columns.count[{n - 2}]",
        f"columns.count[{n - 1}]",
    }
    assert "-5" in problems[f"columns.count[{n - 3}]"]
    assert "must be a number, got boolean" in problems[f"columns.count[{n - 1}]"]


def test_a_batch_of_known_categories_is_coded_with_only_the_values_its_rows_hold() -> None:
    """A large batch's category column of values training saw is coded in one lookup
    per row; what it hands on is what collecting distinct values gave: its rows, and
    only the values they hold (the log stores those). A column with a category training
    did not see, a null where none may be, or a number, goes the other ways."""
    wide = tuple(f"w{i}" for i in range(300))  # more than a byte codes
    schema = FeatureSchema(
        (
            Feature("zone", "categorical", categories=("A", "B", "C", "D")),
            Feature("wide", "categorical", categories=wide, nullable=False),
            Feature("street", "categorical", categories=("Pave", "Grvl")),
            Feature("alley", "categorical", categories=("Pave", "Grvl")),
        ),
        target="y",
    )
    n = 600
    columns: dict[str, list[Any]] = {
        "zone": [None if i % 7 == 0 else "AC"[i % 2] for i in range(n)],
        "alley": [("Grvl", None, "Pave")[i % 3] for i in range(n)],  # every known value
        "wide": [wide[(i * 3) % 300] for i in range(n)],
        "street": ["Pave" if i % 50 else "Dirt" for i in range(n)],  # unseen: allowed
    }
    records = [{name: columns[name][i] for name in columns} for i in range(n)]

    for payload in ({"instances": records}, {"columns": columns}):
        validated = validate_predict_payload(payload, schema, max_batch_size=1000)
        coded = validated.model_input
        assert {name: coded[name].tolist() for name in columns} == columns
        assert coded["zone"].values == ("A", "C", None)  # in the feature's order
        assert coded["alley"].values == ("Pave", "Grvl", None)
        assert sorted(coded["wide"].values) == sorted(set(columns["wide"]))
        assert set(coded["street"].values) == {"Pave", "Dirt"}
        stored = orjson.loads(encoded_columns(validated.columns))
        assert row_columns(stored) == columns

    bad = dict(columns, wide=[*columns["wide"][:-2], None, 7])
    with pytest.raises(ValidationFailed) as failed:
        validate_predict_payload({"columns": bad}, schema, max_batch_size=1000)
    problems = {p.field: p.problem for p in failed.value.details}
    assert problems == {
        "columns.wide[598]": "must not be null",
        "columns.wide[599]": "must be a string, got number",
    }


def test_a_batch_gives_the_model_coded_categories_and_float_numbers() -> None:
    records = _batch()

    validated = validate_predict_payload({"instances": records}, STRICT, max_batch_size=1000)

    model_input = validated.model_input
    assert isinstance(model_input["zone"], CategoryColumn)
    assert model_input["zone"].tolist() == [r["zone"] for r in records]
    assert model_input["rooms"].dtype == np.float64
    assert model_input["rooms"].tolist() == [float(r["rooms"]) for r in records]


FLAG_SCHEMA = FeatureSchema(
    (
        Feature("area", "numeric"),
        # what training makes of a boolean column: its values' text
        Feature("central_air", "categorical", categories=("False", "True"), allow_unknown=False),
        Feature("zone", "categorical", categories=("A", "B")),
    ),
    target="price",
)


@pytest.mark.parametrize(
    ("form", "n"),
    [("features", 1), ("instances", 3), ("instances", BATCH), ("columns", 3), ("columns", BATCH)],
)
def test_a_json_boolean_for_a_boolean_feature_is_taken_as_its_category(form: str, n: int) -> None:
    """A feature trained from a boolean column has the categories "True" and "False";
    a client's JSON ``true`` is that value, and the model and the log get the text
    (a short batch's as a list, a long one's coded)."""
    flags = [i % 3 != 0 for i in range(n)]
    records = [{"area": 50.0 + i, "central_air": f, "zone": "A"} for i, f in enumerate(flags)]
    payload = {
        "features": {"features": records[0]},
        "instances": {"instances": records},
        "columns": {"columns": {k: [r[k] for r in records] for k in records[0]}},
    }[form]
    validated = validate_predict_payload(payload, FLAG_SCHEMA, max_batch_size=BATCH)
    assert not validated.as_sent  # the body's value is not what the log may store
    column = validated.columns["central_air"]
    if isinstance(column, CategoryColumn):
        column = [column.values[code] for code in column.codes]
    assert list(column) == [str(f) for f in flags]


def test_text_for_a_boolean_feature_is_taken_as_sent() -> None:
    payload = {"features": {"area": 1.0, "central_air": "True", "zone": "B"}}
    validated = validate_predict_payload(payload, FLAG_SCHEMA, max_batch_size=10)
    assert validated.as_sent
    assert validated.columns["central_air"] == ["True"]


def test_a_boolean_for_a_feature_without_boolean_categories_is_still_refused() -> None:
    records = [{"area": 1.0, "central_air": True, "zone": True}] * 2
    assert _problems({"instances": records}, FLAG_SCHEMA) == {
        "instances[0].zone": "must be a string, got boolean",
        "instances[1].zone": "must be a string, got boolean",
    }


def test_a_bad_value_beside_booleans_in_a_boolean_feature_is_named_alone() -> None:
    n = BATCH
    flags: list[Any] = [True] * n
    flags[7] = "maybe"
    flags[9] = 1
    payload = {"columns": {"area": [1.0] * n, "central_air": flags, "zone": ["A"] * n}}
    problems = _problems(payload, FLAG_SCHEMA)
    assert problems == {
        "columns.central_air[7]": "unknown category 'maybe'; allowed: ['False', 'True']",
        "columns.central_air[9]": "must be a string, got number",
    }


WITH_IGNORED = FeatureSchema(
    SCHEMA.features, target="price", ignored=(IgnoredColumn("empty", "no value in training"),)
)


@pytest.mark.parametrize("n", [1, 3, 600])  # taken by name, and transposed by position
@pytest.mark.parametrize("value", [None, 5, "text", [1], {"a": 1}])
def test_an_ignored_column_takes_any_value_and_is_not_passed_on(n: int, value: Any) -> None:
    """A column training had without any value left the schema: records shaped like the
    training data, that column in them, were refused 'unknown field'."""
    record = {"area": 1, "rooms": 2, "zone": "A", "empty": value}
    columns = {"area": [1] * n, "rooms": [2] * n, "zone": ["A"] * n, "empty": [value] * n}

    for payload in (
        {"features": record},
        {"instances": [dict(record) for _ in range(n)]},
        {"columns": columns},
    ):
        validated = validate_predict_payload(payload, WITH_IGNORED, max_batch_size=1000)
        assert list(validated.columns) == ["area", "rooms", "zone"], payload.keys()
        assert list(validated.model_input) == ["area", "rooms", "zone"]
    assert (
        validate_predict_payload(
            {"columns": columns | {"empty": value}}, WITH_IGNORED, max_batch_size=1000
        ).n_rows
        == n
    )  # not even an array: ignored whole


def test_an_unknown_field_beside_an_ignored_one_is_still_named() -> None:
    record = {"area": 1, "rooms": 2, "zone": "A", "empty": None, "colour": "red"}
    assert _fields({"instances": [record]}, WITH_IGNORED) == ["instances[0].colour"]
    assert _fields({"features": {**record, "zone": 5}}, WITH_IGNORED) == [
        "features.colour",
        "features.zone",
    ]
    columns = {"area": [1], "rooms": [2], "zone": ["A"], "empty": [None], "colour": ["red"]}
    assert _fields({"columns": columns}, WITH_IGNORED) == ["columns.colour"]
    assert _fields({"instances": [record]}) == ["instances[0].empty", "instances[0].colour"]


@pytest.mark.parametrize("n", [1, 3, 600])  # taken by name, and transposed by position
def test_records_holding_ignored_columns_take_the_fast_paths(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records shaped like the training data (ignored columns in them) were taken value
    by value, as records with a problem are: a 1,000-record Ames batch holding its
    three period columns cost 2.8x the CPU to validate of the same batch without them
    (30.2 ms, 10.7), 1.7x the request's (bench/ignored_columns_bench.py)."""
    import serving.validation

    def value_by_value(*_args: Any) -> None:
        raise AssertionError("taken value by value")

    monkeypatch.setattr(serving.validation, "_record_columns", value_by_value)
    schema = FeatureSchema(
        SCHEMA.features,
        target="price",
        ignored=(IgnoredColumn("empty", "no value"), IgnoredColumn("month", "the period")),
    )
    uniform = [{"area": i, "empty": None, "rooms": 2, "zone": "A"} for i in range(n)]
    mixed = [{**r, "month": 7} if r["area"] % 2 else r for r in uniform]
    mixed[0] = {"month": "x", **mixed[0]}

    for records in (uniform, mixed):
        payload = {"instances": records} if n > 1 else {"features": records[0]}
        validated = validate_predict_payload(payload, schema, max_batch_size=1000)
        assert list(validated.columns) == ["area", "rooms", "zone"]
        assert list(validated.numbers["area"]) == list(range(n))


@pytest.mark.parametrize("n", [3, 600])
def test_an_unknown_field_in_place_of_an_ignored_one_is_still_named(n: int) -> None:
    records = [{"area": 1, "rooms": 2, "zone": "A", "empty": None} for _ in range(n)]
    records[-1] = {"area": 1, "rooms": 2, "zone": "A", "colour": None}
    records[1] = {**records[1], "colour": "red"}

    with pytest.raises(ValidationFailed) as failed:
        validate_predict_payload({"instances": records}, WITH_IGNORED, max_batch_size=1000)
    assert [p.field for p in failed.value.details] == [
        "instances[1].colour",
        f"instances[{n - 1}].colour",
    ]


RATED = FeatureSchema(
    (
        Feature("area", "numeric"),
        Feature("rating", "categorical", categories=("1", "10", "2", "n/a")),
        Feature("grade", "categorical", categories=("1", "2"), allow_unknown=False),
    ),
    target="price",
)


def _rated(n: int, rating: list[Any], grade: list[Any]) -> dict[str, dict[str, Any]]:
    return {
        "single": {"features": {"area": 1, "rating": rating[0], "grade": grade[0]}},
        "instances": {
            "instances": [
                {"area": 1, "rating": r, "grade": g}
                for _ in range(n)
                for r, g in zip(rating, grade, strict=True)
            ]
        },
        "columns": {
            "columns": {
                "area": [1] * n * len(rating),
                "rating": rating * n,
                "grade": grade * n,
            }
        },
    }


def _values(column: Any) -> list[Any]:
    if isinstance(column, CategoryColumn):
        return [column.values[code] for code in column.codes.tolist()]
    return list(column)


@pytest.mark.parametrize("n", [1, 300])  # value by value, and coded (600 rows)
def test_a_number_that_is_a_category_of_a_text_feature_is_that_category(n: int) -> None:
    """A category feature whose training values were numbers as text ("1", "2")
    refused the JSON number 1 with 'must be a string, got number'."""
    for form, payload in _rated(n, [1, 10.0], [2, "1"]).items():
        validated = validate_predict_payload(payload, RATED, max_batch_size=1000)
        rows = 1 if form == "single" else 2 * n
        assert _values(validated.columns["rating"]) == (["1", "10"] * n)[:rows], form
        assert _values(validated.columns["grade"]) == (["2", "1"] * n)[:rows], form
        assert _values(validated.model_input["rating"]) == (["1", "10"] * n)[:rows], form
        assert not validated.as_sent  # logged as the category's text, not as sent


@pytest.mark.parametrize("n", [1, 300])
@pytest.mark.parametrize(
    ("rating", "grade", "problem"),
    [
        ([3, 1.5], ["1", "2"], ("rating", "must be a string, got number")),
        (["1", "2"], [3, 7], ("grade", "must be a string, got number")),
        (["1", "2"], [True, False], ("grade", "must be a string, got boolean")),
    ],
)
def test_a_number_matching_no_category_or_a_boolean_is_still_refused(
    n: int, rating: list[Any], grade: list[Any], problem: tuple[str, str]
) -> None:
    for form, payload in _rated(n, rating, grade).items():
        with pytest.raises(ValidationFailed) as failed:
            validate_predict_payload(payload, RATED, max_batch_size=1000)
        found = {(p.field.split(".")[-1].split("[")[0], p.problem) for p in failed.value.details}
        assert found == {problem}, form


def test_a_category_that_is_no_integer_s_own_text_takes_no_number() -> None:
    schema = FeatureSchema(
        (Feature("code", "categorical", categories=("01", "+2", "3.0", "1_000")),), target="y"
    )
    assert schema["code"].integer_categories == {}
    for value in (1, 2, 1000):
        assert _fields({"features": {"code": value}}, schema) == ["features.code"]
    # the float 3.0 is written "3.0": that category, and so is 3, the same JSON number
    for value in (3.0, 3):
        validated = validate_predict_payload(
            {"features": {"code": value}}, schema, max_batch_size=1
        )
        assert validated.columns["code"] == ["3.0"]


DECIMAL = FeatureSchema(
    (
        Feature("area", "numeric"),
        Feature("size", "categorical", categories=("0.5", "1.5", "2", "2.50", "n/a")),
        Feature("grade", "categorical", categories=("1.0", "2.5"), allow_unknown=False),
    ),
    target="price",
)


def _sized(n: int, size: list[Any], grade: list[Any]) -> dict[str, dict[str, Any]]:
    rows = [
        {"area": 1, "size": s, "grade": g}
        for _ in range(n)
        for s, g in zip(size, grade, strict=True)
    ]
    return {
        "single": {"features": rows[0]},
        "instances": {"instances": rows},
        "columns": {"columns": {k: [r[k] for r in rows] for k in rows[0]}},
    }


@pytest.mark.parametrize("n", [1, 300])  # value by value, and coded (900 rows)
def test_a_float_written_as_a_category_of_a_text_feature_is_that_category(n: int) -> None:
    """A category whose text is a decimal number ("1.5") refused the JSON number 1.5
    with 'must be a string, got number', where 2 was taken for "2"."""
    size, grade = [1.5, 2.0, 0.5], [1.0, 2.5, "1.0"]
    for form, payload in _sized(n, size, grade).items():
        validated = validate_predict_payload(payload, DECIMAL, max_batch_size=1000)
        rows = 1 if form == "single" else 3 * n
        assert _values(validated.columns["size"]) == (["1.5", "2", "0.5"] * n)[:rows], form
        assert _values(validated.columns["grade"]) == (["1.0", "2.5", "1.0"] * n)[:rows], form
        assert not validated.as_sent  # logged as the category's text, not as sent


@pytest.mark.parametrize("n", [1, 600])  # value by value, and transposed and coded
@pytest.mark.parametrize(
    ("size", "grade", "problem"),
    [
        ([2.5], ["1.0"], ("size", "must be a string, got number")),  # "2.50" is not 2.5's text
        ([float("nan")], ["1.0"], ("size", "must be a string, got NaN")),
        ([float("inf")], ["1.0"], ("size", "must be a string, got number")),
        ([1e-300], ["1.0"], ("size", "must be a string, got number")),
        (["2"], [3], ("grade", "must be a string, got number")),
        (["2"], [-0.0], ("grade", "must be a string, got number")),
    ],
)
def test_a_float_whose_text_is_no_category_is_still_refused_naming_the_field(
    n: int, size: list[Any], grade: list[Any], problem: tuple[str, str]
) -> None:
    for form, payload in _sized(n, size, grade).items():
        with pytest.raises(ValidationFailed) as failed:
            validate_predict_payload(payload, DECIMAL, max_batch_size=1000)
        found = {(p.field.split(".")[-1].split("[")[0], p.problem) for p in failed.value.details}
        assert found == {problem}, form


EQUAL = FeatureSchema(
    (
        Feature("area", "numeric"),
        Feature("size", "categorical", categories=("1.0", "1e+20", "-0.0", "2.50")),
        Feature("grade", "categorical", categories=("1", "1.0", "0.0", "-0.0")),
    ),
    target="price",
)


@pytest.mark.parametrize("n", [1, 200])  # value by value, and transposed and coded
def test_a_number_equal_to_a_decimal_category_is_that_category(n: int) -> None:
    """JSON does not tell 1 from 1.0 (a JavaScript client sends 1.0 as ``1``), nor does
    /openapi.json's enum: the integer 1 was refused for the category "1.0" ('must be a
    string, got number') while the document allowed it. Where two categories are the
    same number ("1" and "1.0"), the number as sent picks: 1 is "1", 1.0 is "1.0"."""
    size, grade = [1, 10**20, 0, 1.0, 0.0], [1, 1.0, 0, 0.0, -0.0]
    for form, payload in _sized_as(n, size=size, grade=grade).items():
        validated = validate_predict_payload(payload, EQUAL, max_batch_size=1000)
        rows = 1 if form == "single" else 5 * n
        assert (
            _values(validated.columns["size"])
            == (["1.0", "1e+20", "-0.0", "1.0", "-0.0"] * n)[:rows]
        ), form
        assert (
            _values(validated.columns["grade"]) == (["1", "1.0", "0.0", "0.0", "-0.0"] * n)[:rows]
        ), form


def _sized_as(n: int, **columns: list[Any]) -> dict[str, dict[str, Any]]:
    names = list(columns)
    rows = [
        {"area": 1, **dict(zip(names, values, strict=True))}
        for _ in range(n)
        for values in zip(*columns.values(), strict=True)
    ]
    return {
        "single": {"features": rows[0]},
        "instances": {"instances": rows},
        "columns": {"columns": {k: [r[k] for r in rows] for k in rows[0]}},
    }


@pytest.mark.parametrize("n", [1, 600])
@pytest.mark.parametrize("value", [2, 2.5, 10**20 + 1, 1e-300, True])
def test_a_number_equal_to_no_category_written_as_its_number_is_refused(n: int, value: Any) -> None:
    """2.5 is not "2.50" (no number is written so), nor is 10**20 + 1 the float 1e+20."""
    for form, payload in _sized_as(n, size=[value], grade=["1"]).items():
        with pytest.raises(ValidationFailed) as failed:
            validate_predict_payload(payload, EQUAL, max_batch_size=1000)
        assert {p.field.split(".")[-1].split("[")[0] for p in failed.value.details} == {"size"}, (
            form
        )


def test_decimal_categories_are_those_a_float_s_repr_writes() -> None:
    feature = Feature(
        "c", "categorical", categories=("1.5", "1.50", "1", "1.0", "1e+20", "nan", "inf", "-0.0")
    )
    assert feature.decimal_categories == {"1.5", "1.0", "1e+20", "-0.0"}
