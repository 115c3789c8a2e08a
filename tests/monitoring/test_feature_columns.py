"""The monitor's and the report's readers of ``requests.features`` get the same
features from a request whose category columns are stored as values and codes as from
one stored as lists (:mod:`watchkeeper.feature_columns`), on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitoring.log_reader import FEATURE_PREFIX, LogReader, features_of
from monitoring.report.log_rows import most_out_of_distribution, window_features
from monitoring.report.records import Period
from tests.stored_features import (
    CODES_ID,
    LISTS_ID,
    ROWS,
    SCHEMA,
    expected_columns,
    store_both_forms,
)

NAMES = list(SCHEMA.names)


def _halves(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features of the request stored as codes, and of the one stored as lists."""
    features = features_of(frame, NAMES)
    return (
        features[:ROWS].reset_index(drop=True),
        features[ROWS:].reset_index(drop=True),
    )


def test_a_read_gives_both_forms_the_same_features(engine: sa.Engine) -> None:
    store_both_forms(engine, journaled=True)
    reader = LogReader(engine, settle_seconds=0)

    frame = reader.read(0, reader.high_mark())

    assert [p.split(".")[0] for p in frame["prediction_id"]] == [CODES_ID] * ROWS + [
        LISTS_ID
    ] * ROWS
    codes, lists = _halves(frame)
    pd.testing.assert_frame_equal(codes, lists)
    assert list(codes["zone"]) == expected_columns()["zone"]


def test_a_windows_counts_and_sample_are_the_same_for_both_forms(engine: sa.Engine) -> None:
    store_both_forms(engine, journaled=True)
    reader = LogReader(engine, settle_seconds=0)
    index = reader.read_index(0, reader.high_mark())
    halves = [index[index["request_id"] == r].reset_index(drop=True) for r in (CODES_ID, LISTS_ID)]
    every = np.arange(ROWS)

    codes, lists = (reader.window_features(rows, SCHEMA, every) for rows in halves)

    assert codes.counts == lists.counts
    sampled = [w.rows[[FEATURE_PREFIX + n for n in NAMES]] for w in (codes, lists)]
    pd.testing.assert_frame_equal(sampled[0], sampled[1])
    assert list(sampled[0][FEATURE_PREFIX + "zone"]) == expected_columns()["zone"]


def test_the_reports_rows_are_the_same_for_both_forms(engine: sa.Engine) -> None:
    store_both_forms(engine)
    reader = LogReader(engine, settle_seconds=0)
    seqs = list(reader.read_index(0, reader.high_mark())["seq"])

    frame = window_features(engine, "v1", seqs[0], seqs[-1])
    scored = most_out_of_distribution(engine, Period(), 2 * ROWS)

    pd.testing.assert_frame_equal(
        frame[:ROWS].reset_index(drop=True), frame[ROWS:].reset_index(drop=True)
    )
    assert list(frame["street"][:ROWS]) == expected_columns()["street"]
    by_request = {
        request_id: [r.features for r in scored if r.prediction_id.startswith(request_id)]
        for request_id in (CODES_ID, LISTS_ID)
    }
    assert by_request[CODES_ID] == by_request[LISTS_ID] and len(by_request[CODES_ID]) == ROWS
