"""Feature schemas derived from training data, and read back from stored metadata with
every field of every feature checked."""

from __future__ import annotations

import pandas as pd
import pytest

from watchkeeper.schema import (
    IGNORED_EXCLUDED,
    IGNORED_NO_VALUES,
    IGNORED_PERIOD,
    FeatureSchema,
    IgnoredColumn,
)

NAMES = ("the candidate", "the champion")


def test_derived_schema_types_bounds_and_categories() -> None:
    frame = pd.DataFrame(
        {
            "area": [10, 20, 30],
            "longitude": [-93.6, -93.5, -93.7],
            "style": ["a", None, "b"],
            "price": [1.0, 2.0, 3.0],
        }
    )

    schema = FeatureSchema.derive(frame, "price")

    assert schema.names == ("area", "longitude", "style")
    assert (schema["area"].minimum, schema["area"].observed_max) == (0.0, 30.0)
    assert schema["longitude"].minimum is None
    assert schema["style"].categories == ("a", "b")
    assert schema["style"].allow_unknown


def test_schema_round_trips_through_a_dict(trained: object) -> None:
    schema = trained.model.schema  # type: ignore[attr-defined]

    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_malformed_schema_dict_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="malformed feature schema"):
        FeatureSchema.from_dict({"features": [{"kind": "numeric"}], "target": "y"})


def test_target_cannot_be_a_feature() -> None:
    frame = pd.DataFrame({"x": [1.0], "y": [2.0]})
    schema = FeatureSchema.derive(frame, "y")

    with pytest.raises(ValueError, match="cannot also be a feature"):
        FeatureSchema(features=schema.features, target="x")


def test_a_column_without_any_value_in_training_is_not_a_feature() -> None:
    """Training crashed with scikit-learn's "window shape cannot be larger" on such a
    column (wooldridge/happiness, gwbush04)."""
    import numpy as np
    import pandas as pd

    from watchkeeper.dataset import Dataset
    from watchkeeper.training import TrainingParams, train

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "empty": np.nan, "t": range(200)})
    frame["y"] = frame["x"] * 2 + rng.normal(size=200)
    schema = FeatureSchema.derive(frame, "y", exclude=("t",))

    assert schema.names == ("x",)
    trained = train(Dataset("gaps", frame, "y", exclude=("t",)), params=TrainingParams(max_iter=5))
    assert trained.model.schema.names == ("x",)


def test_a_column_without_any_value_is_remembered_as_ignored_and_why() -> None:
    """It left the schema without a trace: a client sending records shaped like the
    training data (that column in them, null) was refused 'unknown field'."""
    frame = pd.DataFrame({"x": [1.0, 2.0], "empty": [None, None], "t": [1, 2], "y": [3.0, 4.0]})

    schema = FeatureSchema.derive(frame, "y")

    assert schema.names == ("x", "t")
    assert schema.ignored == (IgnoredColumn("empty", IGNORED_NO_VALUES),)
    assert schema.ignored_names == {"empty"}
    assert schema.to_dict()["ignored"] == [{"name": "empty", "reason": IGNORED_NO_VALUES}]
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_excluded_columns_are_remembered_as_ignored_with_their_reasons() -> None:
    """A column left out (``--exclude``, the period column) is a column of the
    training data as much as one without a value: a client sending records shaped like
    it got 422 'unknown field' for it. The target is never ignored, even excluded."""
    frame = pd.DataFrame(
        {"id": [1, 2], "x": [1.0, 2.0], "t": [1, 2], "empty": [None, None], "y": [3.0, 4.0]}
    )
    period = IgnoredColumn("t", IGNORED_PERIOD)

    schema = FeatureSchema.derive(frame, "y", exclude=(period, "id", "empty", "y", "absent"))

    assert schema.names == ("x",)
    assert schema.ignored == (
        IgnoredColumn("id", IGNORED_EXCLUDED),
        period,
        IgnoredColumn("empty", IGNORED_EXCLUDED),  # excluded: why it is no feature
    )
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_a_schema_stored_before_ignored_columns_were_recorded_reads_with_none() -> None:
    stored = {"target": "y", "features": [{"name": "x", "kind": "numeric"}]}

    schema = FeatureSchema.from_dict(stored)

    assert (schema.names, schema.ignored) == (("x",), ())
    assert "ignored" not in schema.to_dict()  # written as before when there is none


@pytest.mark.parametrize(
    ("ignored", "problem"),
    [
        ("nope", "ignored: must be a list"),
        ([{"name": 1, "reason": "r"}], "ignored[0]"),
        ([{"name": "x", "reason": "r"}], "cannot also be a feature or the target"),
        ([{"name": "e", "reason": "r"}, {"name": "e", "reason": "r"}], "must be unique"),
    ],
)
def test_malformed_ignored_columns_are_a_clear_error(ignored: object, problem: str) -> None:
    stored = {"target": "y", "features": [{"name": "x", "kind": "numeric"}], "ignored": ignored}

    with pytest.raises(ValueError, match="malformed feature schema") as raised:
        FeatureSchema.from_dict(stored)
    assert problem in str(raised.value)


def test_differences_name_each_feature_and_how_it_differs() -> None:
    champion = FeatureSchema.derive(
        pd.DataFrame({"area": [1.0], "rooms": [3], "colour": ["red"], "price": [1.0]}), "price"
    )
    candidate = FeatureSchema.derive(
        pd.DataFrame({"area": ["large"], "colour": ["red"], "garage": [1.0], "price": [1.0]}),
        "price",
    )

    assert candidate.differences(champion, names=NAMES) == [
        "area: categorical in the candidate, numeric in the champion",
        "garage: only in the candidate",
        "rooms: only in the champion",
    ]
    assert champion.differences(champion, names=NAMES) == []


def test_differences_name_features_in_another_order() -> None:
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "y": [0.0]})
    schema = FeatureSchema.derive(frame, "y")
    swapped = FeatureSchema.derive(frame[["b", "a", "y"]], "y")

    expected = ["the features' order: b, a in the candidate"]
    assert swapped.differences(schema, names=NAMES) == expected


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"minimum": "0"}, "minimum: Input should be a valid number"),
        ({"maximum": [1]}, "maximum: Input should be a valid number"),
        ({"minimum": float("nan")}, "minimum: Input should be a finite number"),
        ({"maximum": float("inf")}, "maximum: Input should be a finite number"),
        ({"minimum": 5, "maximum": 1}, "feature: Value error, minimum 5 is above maximum 1"),
        ({"observed_min": float("nan")}, "observed_min: Value error, must be a number, not NaN"),
        ({"kind": "Numeric"}, "kind: Input should be 'numeric' or 'categorical'"),
        ({"categories": "abc"}, "categories: Input should be a valid list"),
        ({"categories": ["a", 1]}, "categories.1: Input should be a valid string"),
        ({"nullable": "yes"}, "nullable: Input should be a valid boolean"),
        ({"allow_unknown": 1}, "allow_unknown: Input should be a valid boolean"),
        ({"unit": "m2"}, "unit: Extra inputs are not permitted"),
    ],
)
def test_a_stored_feature_with_a_wrong_field_is_refused_naming_the_feature_and_field(
    change: dict[str, object], problem: str
) -> None:
    """Once loaded, such a schema failed every request (a 500, or a 422 for good
    values): it is refused where it is read instead."""
    stored = {
        "target": "price",
        "features": [
            {"name": "zone", "kind": "categorical", "categories": ["A"]},
            {"name": "area", "kind": "numeric", "minimum": 0, "observed_max": 2500.0, **change},
        ],
    }

    with pytest.raises(ValueError, match="malformed feature schema") as caught:
        FeatureSchema.from_dict(stored)

    assert f"features[1] ('area'): {problem}" in str(caught.value)


def test_a_stored_feature_name_or_target_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match=r"features\[0\]: name: Input should be a valid string"):
        FeatureSchema.from_dict({"target": "y", "features": [{"name": 3, "kind": "numeric"}]})
    with pytest.raises(ValueError, match="target: must be a string"):
        FeatureSchema.from_dict({"target": ["y"], "features": []})


def test_what_training_saw_may_be_infinite() -> None:
    """Training accepts a column holding inf, and records it as seen."""
    stored = {"target": "y", "features": [{"name": "x", "kind": "numeric", "observed_max": 1e999}]}

    assert FeatureSchema.from_dict(stored)["x"].observed_max == float("inf")


def test_a_column_of_numbers_with_a_few_text_cells_is_read_as_categories_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = pd.DataFrame(
        {"size": ["1.5", "2.5", "n/a", "3.5"], "site": ["a", "b", "c", "d"], "y": [1, 2, 3, 4]}
    )

    with caplog.at_level("WARNING", logger="watchkeeper.schema"):
        schema = FeatureSchema.derive(frame, "y")

    assert [f.kind for f in schema.features] == ["categorical", "categorical"]
    [warning] = caplog.messages
    assert warning.startswith(
        "column 'size' holds numbers but 1 of its 4 values are not (e.g. 'n/a')"
    )


def test_booleans_beside_their_text_are_categories_without_a_numbers_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retraining's rows: the training CSV's booleans and the log's "True"/"False".
    pandas reads True as 1, and training said the column "holds numbers"."""
    frame = pd.DataFrame({"flag": [True, False, True, "True", "False"], "y": [1, 2, 3, 4, 5]})

    with caplog.at_level("WARNING", logger="watchkeeper.schema"):
        schema = FeatureSchema.derive(frame, "y")

    assert schema["flag"].categories == ("False", "True")
    assert caplog.messages == []


def test_a_retraining_s_schema_keeps_the_champion_s_ignored_columns() -> None:
    """A retraining's rows hold only the champion's features (an ignored column is not
    logged): the candidate derived from them dropped the ignored column, and refused
    again the records shaped like the original training data."""
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    champion = (IgnoredColumn("empty", IGNORED_NO_VALUES), IgnoredColumn("x", "became one"))

    candidate = FeatureSchema.derive(frame, "y").keeping_ignored(champion)

    assert candidate.names == ("x",)
    assert candidate.ignored == (IgnoredColumn("empty", IGNORED_NO_VALUES),)
    assert candidate.keeping_ignored(champion) == candidate


def test_a_retraining_s_schema_keeps_the_champion_s_period_and_excluded_columns() -> None:
    frame = pd.DataFrame({"id": [1, 2], "t": [1, 2], "x": [1.0, 2.0], "y": [3.0, 4.0]})
    champion = FeatureSchema.derive(frame, "y", exclude=("id", IgnoredColumn("t", IGNORED_PERIOD)))

    candidate = FeatureSchema.derive(frame[["x", "y"]], "y").keeping_ignored(champion.ignored)

    assert candidate == champion
