"""The request thread writes an entry's feature columns once, as stored: lists and
NumPy arrays as lists, a category column as its values and codes, on both of the
journal line's paths (orjson, and the escaped one for what orjson refuses)."""

from __future__ import annotations

import json

import numpy as np
import orjson

from serving.log_entry import LogEntry
from serving.log_features import encoded_columns, plain_json
from tests.serving.log_entries import make_entry
from watchkeeper.category_column import CategoryColumn
from watchkeeper.feature_columns import row_columns

ZONE = CategoryColumn(("RL", "RM", None), np.array([1, 0, 2, 1], dtype=np.int8))
COLUMNS = {
    "area": np.array([8450.0, 9600.5, 0.0, 1.0]),
    "rooms": np.array([3, 4, 5, 6], dtype=np.int64),
    "zone": ZONE,
    "street": ["Pave", "Grvl", None, "Pave"],
}
ROWS = {
    "area": [8450.0, 9600.5, 0.0, 1.0],
    "rooms": [3, 4, 5, 6],
    "zone": ["RM", "RL", None, "RM"],
    "street": ["Pave", "Grvl", None, "Pave"],
}


def test_a_category_column_is_written_as_its_values_and_codes_and_reads_as_its_rows() -> None:
    written = orjson.loads(encoded_columns(COLUMNS))

    assert written["zone"] == {"values": ["RL", "RM", None], "codes": [1, 0, 2, 1]}
    assert {n: written[n] for n in ("area", "rooms", "street")} == {
        n: ROWS[n] for n in ("area", "rooms", "street")
    }
    assert row_columns(written) == ROWS


def test_the_escaped_form_writes_the_same_columns() -> None:
    escaped = json.loads(json.dumps(COLUMNS, default=plain_json, ensure_ascii=True))

    assert escaped == orjson.loads(encoded_columns(COLUMNS))


def test_a_journal_line_carries_the_columns_as_written_to_the_writer() -> None:
    entry = make_entry(1, columns=COLUMNS, values=[1.0] * 4, lower=[0.0] * 4, upper=[2.0] * 4)
    entry.single = False

    parsed = LogEntry.from_line(entry.to_line()[:-1])

    assert parsed.columns_json is not None
    assert orjson.loads(parsed.columns_json) == orjson.loads(encoded_columns(COLUMNS))


def test_a_line_orjson_refuses_keeps_the_stored_form_through_the_escaped_path() -> None:
    columns = {**COLUMNS, "street": ["Pave", "\ud800", None, "Pave"]}  # a lone surrogate
    entry = make_entry(1, columns=columns, values=[1.0] * 4, lower=[0.0] * 4, upper=[2.0] * 4)
    entry.single = False

    line = entry.to_line()

    head, _, written = line.rstrip(b"\n").partition(b"\t")
    assert json.loads(head)["escaped"] is True
    assert json.loads(written)["zone"] == {"values": ["RL", "RM", None], "codes": [1, 0, 2, 1]}
