"""Feature schemas derived from training data."""

from __future__ import annotations

import pandas as pd
import pytest

from watchkeeper.schema import FeatureSchema


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
