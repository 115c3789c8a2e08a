"""Data quality of a window on its own: the per-feature shares of missing values, values
outside the training range and unseen categories, and the share of rejected requests
read from a real log database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from monitoring.check_details import RejectedRequests
from monitoring.quality import (
    QualityCounts,
    column_flags,
    feature_quality,
    joined_flags,
    rejected_rate,
)
from watchkeeper.db.tables import requests
from watchkeeper.schema import Feature, FeatureSchema

SCHEMA = FeatureSchema(
    (
        Feature("area", "numeric", observed_min=10.0, observed_max=100.0),
        Feature("hood", "categorical", categories=("north", "south")),
        # a numeric feature whose training range is unknown
        Feature("age", "numeric"),
    ),
    target="price",
)


def _window(records: list[dict[str, object]]) -> pd.DataFrame:
    """Features as the monitor builds them from logged records: one column per schema
    feature, whatever each record holds."""
    return pd.DataFrame.from_records(records, columns=list(SCHEMA.names))


def test_rates_are_shares_of_every_row_of_the_window() -> None:
    features = _window(
        [
            {"area": 10.0, "hood": "north", "age": 1},  # on the bounds: in range
            {"area": 100.0, "hood": "south", "age": 2},
            {"area": 150.0, "hood": "east", "age": None},
            {"area": None, "hood": None, "age": 3},
        ]
    )

    assert feature_quality(features, SCHEMA) == {
        "area": {"missing_rate": 0.25, "out_of_range_rate": 0.25},
        "hood": {"missing_rate": 0.25, "unseen_category_rate": 0.25},
        "age": {"missing_rate": 0.25, "out_of_range_rate": 0.0},
    }


def test_an_empty_window_has_zero_rates_not_a_division_by_zero() -> None:
    quality = feature_quality(_window([]), SCHEMA)

    assert set(quality) == set(SCHEMA.names)
    assert all(rate == 0.0 for rates in quality.values() for rate in rates.values())


def test_a_feature_absent_from_every_record_is_all_missing_and_nothing_else() -> None:
    features = _window([{"area": 50.0}, {"area": 60.0, "hood": "north"}])

    quality = feature_quality(features, SCHEMA)

    assert quality["age"] == {"missing_rate": 1.0, "out_of_range_rate": 0.0}
    assert quality["hood"] == {"missing_rate": 0.5, "unseen_category_rate": 0.0}


def test_a_frame_without_a_schema_column_is_refused_not_reported_clean() -> None:
    with pytest.raises(KeyError, match="hood"):
        feature_quality(pd.DataFrame({"area": [1.0], "age": [2.0]}), SCHEMA)


def test_infinities_are_out_of_range_and_nan_is_missing() -> None:
    features = _window(
        [
            {"area": math.inf, "hood": "north", "age": math.inf},
            {"area": -math.inf, "hood": "north", "age": -math.inf},
            {"area": math.nan, "hood": "north", "age": math.nan},
            {"area": 50.0, "hood": "north", "age": 5},
        ]
    )

    quality = feature_quality(features, SCHEMA)

    assert quality["area"] == {"missing_rate": 0.25, "out_of_range_rate": 0.5}
    # without a training range nothing can be outside it
    assert quality["age"] == {"missing_rate": 0.25, "out_of_range_rate": 0.0}


def test_text_in_a_numeric_column_is_out_of_range_not_clean() -> None:
    """A logged value that is text where the schema says numeric (validation refuses
    it: a buggy or foreign writer's) is nothing training saw. It counted as neither
    missing nor out of range: a column of text read as clean."""
    features = _window(
        [
            {"area": "abc", "hood": "north", "age": "old"},
            {"area": "", "hood": "north", "age": [1]},
            {"area": "50", "hood": "north", "age": None},  # a number's text: a number
            {"area": 50.0, "hood": "north", "age": 5},
        ]
    )

    quality = feature_quality(features, SCHEMA)

    assert quality["area"] == {"missing_rate": 0.0, "out_of_range_rate": 0.5}
    # no training range, yet text is still outside what training saw
    assert quality["age"] == {"missing_rate": 0.25, "out_of_range_rate": 0.5}


def test_a_category_is_matched_by_its_text_as_the_model_codes_it() -> None:
    """A reference sample keeps a training CSV's booleans; the schema's categories are
    their text. Matched by value, every boolean was unseen: the reference's unseen rate
    read 1.0 where the model knew every value."""
    flag = Feature("flag", "categorical", categories=("False", "True"))

    flags = column_flags(flag, np.array([True, False, "True", None, "yes", 1], dtype=object))

    assert flags.missing.tolist() == [False, False, False, True, False, False]
    assert flags.outside.tolist() == [False, False, False, False, True, True]


def test_rates_stay_shares_between_zero_and_one_on_random_windows() -> None:
    rng = np.random.default_rng(3)
    for size in (1, 7, 500):
        area = rng.normal(50, 60, size)
        area[rng.random(size) < 0.2] = np.nan
        hood = rng.choice(np.array(["north", "south", "west", None], dtype=object), size)
        features = pd.DataFrame({"area": area, "hood": hood, "age": rng.random(size)})

        quality = feature_quality(features, SCHEMA)

        area_rates = quality["area"]
        assert area_rates["missing_rate"] == pytest.approx(np.isnan(area).mean())
        outside = (area < 10.0) | (area > 100.0)
        assert area_rates["out_of_range_rate"] == pytest.approx(outside.mean())
        assert quality["hood"]["unseen_category_rate"] == pytest.approx((hood == "west").mean())
        for rates in quality.values():
            assert all(0.0 <= rate <= 1.0 for rate in rates.values())


# -- flags a column at a time, counts added up request by request --------------------


def _pandas_flags(feature: Feature, values: list[object]) -> tuple[list[bool], list[bool]]:
    """The flags as the frame-based rates computed them before the fast paths: pandas'
    missing values, ``to_numeric`` against the range (a value there that is no number:
    outside), ``isin`` the categories."""
    column = pd.Series(values, dtype=object)
    missing = column.isna().to_numpy()
    if feature.is_numeric:
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        lo = -np.inf if feature.observed_min is None else feature.observed_min
        hi = np.inf if feature.observed_max is None else feature.observed_max
        outside = ~missing & (np.isnan(numbers) | (numbers < lo) | (numbers > hi))
    else:
        outside = ~missing & ~column.isin(feature.categories).to_numpy()
    return missing.tolist(), outside.tolist()


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("area", [10.0, 100.0, 9.99, 100.01, None, 50, 7, math.nan, math.inf, -math.inf]),
        ("area", [None, None]),
        ("area", [5.0, "x", None, True]),  # what validation refuses: pandas' own path
        ("age", [1e300, -1e300, None, 0]),
        ("hood", ["north", "south", "east", None, math.nan, "", "North", 1, "nor\u2028th"]),
        ("hood", [None, ["north"], {"a": 1}, "south"]),  # unhashable: unseen, not an error
        ("hood", []),
    ],
)
def test_a_column_is_flagged_as_the_frame_rates_flag_it(name: str, values: list[object]) -> None:
    feature = next(f for f in SCHEMA.features if f.name == name)

    flags = column_flags(feature, values)

    assert (flags.missing.tolist(), flags.outside.tolist()) == _pandas_flags(feature, values)
    again = column_flags(feature, pd.Series(values, dtype=object).to_numpy())
    assert again.missing.tolist() == flags.missing.tolist()
    assert again.outside.tolist() == flags.outside.tolist()


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("area", [[10.0], [None], [150.0, 50], [], [math.inf]]),
        # "nan" is a missing number read with the others, a text that is no number read
        # with a text: each column as it alone reads
        ("area", [["nan"], [5.0, "x", "nan"], [True, 20]]),
        ("hood", [["north"], [None, "east"], [math.nan], [1, ["north"]]]),
        ("age", []),
    ],
)
def test_columns_flagged_joined_are_flagged_as_each_alone(
    name: str, columns: list[list[object]]
) -> None:
    feature = next(f for f in SCHEMA.features if f.name == name)

    joined = joined_flags(feature, columns)

    alone = [column_flags(feature, column) for column in columns]
    assert joined.missing.tolist() == [m for a in alone for m in a.missing.tolist()]
    assert joined.outside.tolist() == [o for a in alone for o in a.outside.tolist()]


def test_counts_of_parts_of_columns_add_up_to_the_rates_of_those_rows() -> None:
    """Two requests' columns, the window holding items 1 and 3 of the first and all of
    the second; a feature the second request lacks is missing in its rows."""
    first = {"area": [5.0, 50.0, None, 500.0], "hood": ["north", "east", "south", None]}
    second = {"area": [20.0, 200.0], "hood": ["west", "north"], "age": [1, None]}
    counts = QualityCounts(SCHEMA)

    for columns, items in ((first, np.array([1, 3])), (second, None)):
        flags = {
            f.name: column_flags(f, columns[f.name]) for f in SCHEMA.features if f.name in columns
        }
        counts.add(flags, items, 2)

    rows = [
        {"area": 50.0, "hood": "east"},
        {"area": 500.0, "hood": None},
        {"area": 20.0, "hood": "west", "age": 1},
        {"area": 200.0, "hood": "north", "age": None},
    ]
    assert counts.rows == 4
    assert counts.rates() == feature_quality(_window(rows), SCHEMA)
    assert counts.rates()["area"] == {"missing_rate": 0.0, "out_of_range_rate": 0.5}


# -- rejected requests, from the log ------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _log_requests(
    engine: sa.Engine, rows: list[tuple[str, int, int]], method: str = "POST"
) -> None:
    """Requests stored as ``seq``, received in the opposite order (as two workers, or a
    large batch, store them): the rate must follow the order of storage."""
    with engine.begin() as connection:
        connection.execute(
            requests.insert(),
            [
                {
                    "request_id": f"{n:032x}",
                    "received_at": T0 - timedelta(seconds=seq),
                    "endpoint": endpoint,
                    "method": method,
                    "status_code": status,
                    "latency_seconds": 0.01,
                    "seq": seq,
                }
                for n, (endpoint, status, seq) in enumerate(rows, start=_count(engine))
            ],
        )


def test_rejected_rate_counts_4xx_of_predict_stored_after_the_window_start_up_to_its_end(
    engine: sa.Engine,
) -> None:
    """By request ``seq``, not by time: counted by the window's first and last
    prediction's times, requests stored out of arrival order were missed, counted in
    two windows, or a window inside one batch saw none (0 % with 9 of 11 refused)."""
    _log_requests(
        engine,
        [
            ("/predict", 400, 10),  # the previous window's last request: counted there
            ("/predict", 422, 11),
            ("/predict", 200, 12),
            ("/predict", 500, 13),  # a failure, not a rejection
            ("/predict", 200, 20),  # the window's last request
            ("/predict", 400, 21),  # after it
            ("/feedback", 400, 14),  # another endpoint
        ],
    )
    result = rejected_rate(engine, after=10, up_to=20)

    assert (result.requests, result.rejected) == (4, 1)
    assert result.rate == pytest.approx(1 / 4)


def _count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(requests)).scalar_one()


def test_rejected_rate_counts_post_requests_only(engine: sa.Engine) -> None:
    # OPTIONS /predict is logged (204) but asks for no prediction: a browser's
    # preflight before each POST would halve the rate. A GET answered 405 asks for none
    # either: the alert on the same rate counts POST /predict only.
    _log_requests(engine, [("/predict", 400, 1), ("/predict", 200, 2)])
    _log_requests(engine, [("/predict", 204, 3)], method="OPTIONS")
    _log_requests(engine, [("/predict", 405, 4)], method="GET")

    result = rejected_rate(engine, after=0, up_to=10)

    assert (result.requests, result.rejected) == (2, 1)


def test_rejected_rate_of_a_window_without_requests_is_zero(engine: sa.Engine) -> None:
    _log_requests(engine, [("/feedback", 400, 1)])

    result = rejected_rate(engine, after=0, up_to=10)

    assert result == RejectedRequests(requests=0, rejected=0, rate=0.0)
