"""Records become columns the same way whichever path builds them: all complete
objects (one C pass), or anything else (value by value, naming every problem)."""

from __future__ import annotations

import pytest

from serving.validation import validate_predict_payload
from watchkeeper.errors import ValidationFailed
from watchkeeper.schema import Feature, FeatureSchema

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
