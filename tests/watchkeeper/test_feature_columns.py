"""``requests.features`` in both stored forms: lists, and a category column as its
values and codes. Every reader in this package gets the same lists from either, on
both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from tests.stored_features import (
    CODES_ID,
    LISTS_ID,
    ROWS,
    expected_columns,
    store_both_forms,
    stored_text,
)
from watchkeeper.category_column import CategoryColumn
from watchkeeper.db.archive import Archive, read_archive, read_rows
from watchkeeper.db.features import feature_records
from watchkeeper.db.tables import predictions, requests
from watchkeeper.feature_columns import row_column, row_columns, stored_category
from watchkeeper.prediction_ids import logged_requests


def test_a_list_column_reads_as_it_is() -> None:
    column = [1, 2.5, None, "a"]

    assert row_column(column) is column
    assert row_columns({"x": column}) == {"x": column}


def test_values_and_codes_read_as_each_rows_value_null_included() -> None:
    stored = {"values": ["RL", "RM", None], "codes": [1, 0, 2, 0]}

    assert row_column(stored) == ["RM", "RL", None, "RL"]
    assert row_column({"values": [], "codes": []}) == []


def test_a_category_column_round_trips_through_its_stored_form() -> None:
    column = CategoryColumn(("Elm", "Oak", None), np.array([0, 2, 1, 0], dtype=np.int8))

    stored = orjson.loads(orjson.dumps(stored_category(column), option=orjson.OPT_SERIALIZE_NUMPY))

    assert stored == {"values": ["Elm", "Oak", None], "codes": [0, 2, 1, 0]}
    assert row_column(stored) == column.tolist()


@pytest.mark.parametrize(
    "stored",
    [
        {"values": ["a"], "codes": [1]},  # past its values
        {"values": ["a", "b"], "codes": [-1]},  # would wrap in Python
        {"values": ["a"], "codes": ["0"]},
        {"values": ["a"]},
        {"values": ["a"], "codes": [0], "more": 1},
        {"values": "a", "codes": [0]},
        {"codes": [0], "other": ["a"]},
    ],
)
def test_an_object_of_another_shape_or_a_code_outside_its_values_is_refused(
    stored: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        row_column(stored)


@pytest.mark.parametrize("journaled", [False, True], ids=["stored", "journaled"])
def test_the_stored_forms_differ_and_the_column_type_reads_both_as_lists(
    engine: sa.Engine, journaled: bool
) -> None:
    store_both_forms(engine, journaled=journaled)

    codes, lists = (
        orjson.loads(stored_text(engine, CODES_ID)),
        orjson.loads(stored_text(engine, LISTS_ID)),
    )
    assert codes["zone"] == {"values": ["RL", "RM", None], "codes": [1, 0, 2, 0, 1]}
    assert codes["street"] == {"values": ["Pave", "Grvl"], "codes": [0, 0, 1, 0, 0]}
    assert lists == expected_columns() and codes["area"] == lists["area"]
    with engine.connect() as connection:
        read = dict(connection.execute(sa.select(requests.c.request_id, requests.c.features)).all())
    assert read == {CODES_ID: expected_columns(), LISTS_ID: expected_columns()}


def test_feature_records_are_the_same_for_both_forms(engine: sa.Engine) -> None:
    store_both_forms(engine)

    with engine.connect() as connection:
        rows = connection.execute(sa.select(predictions).order_by(predictions.c.seq)).all()
        records = feature_records(connection, rows)

    expected = [{n: v[i] for n, v in expected_columns().items()} for i in range(ROWS)]
    assert [r.request_id for r in rows] == [CODES_ID] * ROWS + [LISTS_ID] * ROWS
    assert records == expected + expected


def test_logged_requests_hold_the_same_features_for_both_forms(engine: sa.Engine) -> None:
    store_both_forms(engine)

    with engine.connect() as connection:
        found = logged_requests(connection, [CODES_ID, LISTS_ID], features=True)

    assert found[CODES_ID].features == found[LISTS_ID].features == expected_columns()


def test_the_archive_writes_the_same_features_for_both_forms(
    engine: sa.Engine, tmp_path: Path
) -> None:
    store_both_forms(engine)

    with engine.connect() as connection:
        seqs = list(connection.execute(sa.select(predictions.c.seq)).scalars())
        frame = read_rows(connection, seqs)
        Archive(str(tmp_path / "archive")).write(connection, seqs)
    archived = read_archive(str(tmp_path / "archive"))

    for rows in (frame, archived):
        by_request = [
            rows[rows["request_id"] == r][["area", "zone", "street"]].reset_index(drop=True)
            for r in (CODES_ID, LISTS_ID)
        ]
        assert by_request[0].equals(by_request[1])
        assert list(by_request[0]["zone"]) == expected_columns()["zone"]
