"""A window's features on their own, on real SQLite and PostgreSQL logs: the exact
quality counts added up request by request equal the rates over a frame of every row
(requests cut by the window's bounds, hostile values); only the sampled rows' features
come back, equal to what a whole read gives them; a request cut by a boundary is decoded
once for both windows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from monitoring.log_reader import INDEX_COLUMNS, LogReader, features_of
from monitoring.quality import feature_quality
from tests.monitoring.log_rows import store_rows
from watchkeeper.db.engine import create_engine
from watchkeeper.schema import Feature, FeatureSchema

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCHEMA = FeatureSchema(
    (
        Feature("area", "numeric", observed_min=10.0, observed_max=100.0),
        Feature("hood", "categorical", categories=("north", "south")),
        Feature("age", "numeric"),  # no known range: never out of range
        Feature("roof", "categorical", categories=("flat",)),  # no request sends it
    ),
    target="price",
)
NAMES = list(SCHEMA.names)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _values(n: int, seed: int) -> dict[str, list[Any]]:
    """``n`` items by column: in and out of range, missing, unseen and hostile text."""
    rng = np.random.default_rng(seed)
    area = [None if v < 0.1 else float(v * 200) for v in rng.random(n)]
    hoods = ["north", "south", "east", None, "nor\u2028th", 'so"uth\\', "\U0001f600"]
    age = [None if v < 0.2 else int(v * 80) for v in rng.random(n)]
    return {
        "area": area,
        "hood": [hoods[i] for i in rng.integers(0, len(hoods), n)],
        "age": age,
        "extra": ["ignored"] * n,  # not a feature of the schema
    }


def _write(engine: sa.Engine, sizes: dict[str, int]) -> None:
    """Requests of ``sizes[request_id]`` items each, in that order, a second apart,
    each holding the features of :func:`_values`."""
    rows = []
    for n, (request_id, size) in enumerate(sizes.items()):
        columns = _values(size, n)
        rows += [
            {
                "request_id": request_id,
                "item_index": item,
                "created_at": T0 + timedelta(seconds=n),
                "model_version": "v1",
                "features": {name: values[item] for name, values in columns.items()},
                "prediction": float(len(rows) + item),
                "lower": 0.0,
                "upper": 1.0,
                "single": False,
            }
            for item in range(size)
        ]
    store_rows(engine, rows)


LAYOUT = {"a": 60, "b": 40, "c": 40, "d": 30}
"""170 rows."""


@pytest.mark.parametrize(("first", "last"), [(0, 169), (25, 130), (61, 61), (59, 62)])
def test_counts_equal_the_rates_over_every_row_and_the_sample_its_rows(
    engine: sa.Engine, first: int, last: int
) -> None:
    """Windows cutting requests anywhere: ``first``..``last`` (0-based, inclusive) of
    the 170 rows."""
    _write(engine, LAYOUT)
    reader = LogReader(engine, settle_seconds=0)
    everything = reader.read_index(0, reader.high_mark())
    rows = everything.iloc[first : last + 1].reset_index(drop=True)
    positions = np.arange(0, len(rows), 3)

    found = reader.window_features(rows, SCHEMA, positions)

    whole = reader.read(int(rows["seq"].iloc[0]) - 1, int(rows["seq"].iloc[-1]))
    assert list(whole["seq"]) == list(rows["seq"])
    assert found.counts.rows == len(rows)
    assert found.counts.rates() == feature_quality(features_of(whole, NAMES), SCHEMA)
    expected = features_of(whole.iloc[positions].reset_index(drop=True), NAMES)
    pd.testing.assert_frame_equal(features_of(found.rows, NAMES), expected)
    assert list(found.rows["seq"]) == list(rows["seq"].iloc[positions])
    assert list(found.rows["prediction"]) == list(whole["prediction"].iloc[positions])


def test_the_index_holds_no_feature_and_types_every_column(engine: sa.Engine) -> None:
    _write(engine, LAYOUT)
    reader = LogReader(engine, settle_seconds=0)

    index = reader.read_index(0, reader.high_mark(), limit=100)

    assert list(index.columns) == list(INDEX_COLUMNS) and len(index) == 100
    assert str(index["created_at"].dtype).startswith("datetime64") and index["created_at"].dt.tz
    assert index["created_at"].iloc[61] == pd.Timestamp(T0 + timedelta(seconds=1))  # b's
    assert index["ood_score"].dtype == "float64" and index["ood_score"].isna().all()
    assert index["request_id"].tolist() == ["a"] * 60 + ["b"] * 40
    assert index["item_index"].tolist() == list(range(60)) + list(range(40))
    assert reader.rows_read == 100
    tail = reader.read_index(int(index["seq"].iloc[-1]), reader.high_mark())
    assert tail["request_id"].tolist() == ["c"] * 40 + ["d"] * 30
    assert reader.read_index(0, 0).columns.tolist() == list(INDEX_COLUMNS)


def test_a_request_cut_by_a_window_boundary_is_decoded_once(engine: sa.Engine) -> None:
    _write(engine, LAYOUT)
    reader = LogReader(engine, settle_seconds=0)
    rows = reader.read_index(0, reader.high_mark())
    empty = np.array([], dtype=np.int64)

    reader.window_features(rows.iloc[:30].reset_index(drop=True), SCHEMA, empty)
    reader.window_features(rows.iloc[30:140].reset_index(drop=True), SCHEMA, empty)

    assert reader.columns.decoded == 3  # a, then b and c: a is not read again


def test_a_column_shorter_than_its_rows_counts_their_values_missing(engine: sa.Engine) -> None:
    """A foreign writer's request whose ``area`` column holds 10 values for its 60 rows:
    the 50 rows past its end have no value, so they count as missing (they used to go
    uncounted)."""
    _write(engine, LAYOUT)
    first = _values(60, 0)["area"]
    with engine.begin() as connection:
        stored = connection.execute(
            sa.text("SELECT features FROM requests WHERE request_id = 'a'")
        ).scalar_one()
        columns = orjson.loads(stored)
        columns["area"] = first[:10]
        connection.execute(
            sa.text("UPDATE requests SET features = :features WHERE request_id = 'a'"),
            {"features": orjson.dumps(columns).decode()},
        )
    reader = LogReader(engine, settle_seconds=0)
    rows = reader.read_index(0, reader.high_mark()).iloc[:100].reset_index(drop=True)

    found = reader.window_features(rows, SCHEMA, np.array([], dtype=np.int64))

    others = _values(40, 1)["area"]  # b's rows, whole
    kept = first[:10] + others
    assert found.counts.rows == 100
    assert found.counts.missing["area"] == 50 + sum(v is None for v in kept)
    assert found.counts.outside["area"] == sum(v is not None and v > 100 for v in kept)
