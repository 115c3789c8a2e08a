"""The monitor's reads of the prediction log on its own, on real SQLite and PostgreSQL
logs: watermarks, the high mark (the newest prediction's position, rejected requests
aside) and its settling pause, and what a read returns past a watermark (bounds, order,
columns, each item's features)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import monitoring.log_reader as log_reader_module
from monitoring.log_reader import IN_ORDER, WATERMARK, LogReader, features_of, version_position
from serving.log_entry import LogEntry
from serving.log_store import LogStore
from watchkeeper.db.features import feature_records
from watchkeeper.db.prediction_seq import prediction_seq
from watchkeeper.db.prediction_view import seq_between
from watchkeeper.db.tables import predictions, requests

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# what the monitor reads of each prediction (a model kind may add its own columns)
COLUMNS = [
    "seq",
    "prediction_id",
    "created_at",
    "model_version",
    "prediction",
    "lower",
    "upper",
    "ood_score",
]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return features_of(frame, ["area", "hood"]).to_dict("records")


def _log(engine: sa.Engine, n: int, *, items: int = 1, version: str = "v1") -> None:
    """Request ``n`` as the serving log stores it: features once, by column, on the
    request; ``items`` predictions."""
    entry = LogEntry(
        request_id=f"{n:032x}",
        received_at=T0 + timedelta(seconds=n),
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version=version,
        single=items == 1,
        columns={"area": [100.0 * n + i for i in range(items)], "hood": ["north"] * items},
        values=[float(n)] * items,
        lower=[n - 1.0] * items,
        upper=[n + 1.0] * items,
        ood=[0.5] * items,
    )
    LogStore(engine).insert([entry])


def test_the_high_mark_passes_newest_outputs_that_are_no_json(engine: sa.Engine) -> None:
    """The newest request's outputs are measured for the high mark: outputs that are no
    JSON (no server writes them) raised there, every cycle. They count one item, the
    one prediction of no number the view reads of them."""
    _log(engine, 1, items=3)
    _log(engine, 2, items=4)
    newest = f"{2:032x}"
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE requests SET outputs = '[[1.0, 0.5' WHERE request_id = :id"),
            {"id": newest},
        )
        (seq,) = connection.execute(
            sa.select(requests.c.seq).where(requests.c.request_id == newest)
        ).one()

    reader = LogReader(engine, settle_seconds=0)
    assert reader.high_mark() == prediction_seq(seq, 0)
    frame = reader.read(0, reader.high_mark())
    first = f"{1:032x}"
    assert list(frame["prediction_id"]) == [f"{first}.0", f"{first}.1", f"{first}.2", f"{newest}.0"]
    assert list(frame["prediction"].isna()) == [False, False, False, True]


def test_an_empty_log_has_no_watermark_no_high_mark_and_reads_an_empty_frame(
    engine: sa.Engine,
) -> None:
    reader = LogReader(engine, settle_seconds=0)

    frame = reader.read(reader.watermark(), reader.high_mark())

    assert (reader.watermark(), reader.high_mark()) == (0, 0)
    assert frame.empty and list(frame.columns)[: len(COLUMNS)] == COLUMNS
    assert not {"request_id", "item_index", "features"} & set(frame.columns)  # by column
    assert reader.rows_read == 0


def test_watermarks_are_kept_by_name_and_overwritten(engine: sa.Engine) -> None:
    reader = LogReader(engine, settle_seconds=0)

    reader.set_watermark(7)
    reader.set_watermark(9)
    reader.set_watermark(3, name="another")

    assert reader.watermark() == reader.watermark(WATERMARK) == 9
    assert reader.watermark("another") == 3
    assert LogReader(engine).watermark() == 9  # kept in the database, not the reader


def test_a_versions_position_is_kept_until_the_global_watermark_passes_it(
    engine: sa.Engine,
) -> None:
    """Each version's windows are cut apart: one version can be evaluated past another's
    open window. Its position is kept beside the global watermark, in one transaction,
    and dropped once the global one reaches it (a row a version ever served, else)."""
    reader = LogReader(engine, settle_seconds=0)
    long = "v" * 64  # a position's name holds 64 characters: a longer one is hashed

    reader.window_evaluated("v2", 40, 10)
    reader.window_evaluated(long, 30, 10)
    reader.window_evaluated("v1", 20, 10)

    assert reader.watermark() == 10
    assert reader.version_watermarks() == {
        version_position("v2"): 40,
        version_position(long): 30,
        version_position("v1"): 20,
    }
    assert len(version_position(long)) <= 64 and version_position(long) != version_position(
        "v" * 63
    )

    reader.window_evaluated("v1", 50, 30)

    assert reader.watermark() == 30
    assert reader.version_watermarks() == {
        version_position("v2"): 40,
        version_position("v1"): 50,
    }


def test_a_read_returns_rows_past_the_watermark_up_to_the_mark_oldest_first(
    engine: sa.Engine,
) -> None:
    for n in range(1, 6):
        _log(engine, n)
    reader = LogReader(engine, settle_seconds=0)
    seqs = list(reader.read(0, reader.high_mark())["seq"])

    frame = reader.read(seqs[1], seqs[3])  # after the 2nd, up to and with the 4th

    assert list(frame["seq"]) == seqs[2:4]
    assert list(frame["prediction_id"]) == [f"{3:032x}", f"{4:032x}"]
    assert list(frame["prediction"]) == [3.0, 4.0]
    assert list(frame["lower"]) == [2.0, 3.0] and list(frame["upper"]) == [4.0, 5.0]
    assert list(frame["ood_score"]) == [0.5, 0.5]
    assert list(frame["created_at"]) == [T0 + timedelta(seconds=3), T0 + timedelta(seconds=4)]
    assert _records(frame) == [
        {"area": 300.0, "hood": "north"},
        {"area": 400.0, "hood": "north"},
    ]
    assert reader.rows_read == 5 + 2


def test_each_prediction_of_a_batch_gets_its_own_features(engine: sa.Engine) -> None:
    _log(engine, 1, items=3)
    reader = LogReader(engine, settle_seconds=0)

    frame = reader.read(0, reader.high_mark())

    assert list(frame["prediction_id"]) == [f"{1:032x}.{i}" for i in range(3)]
    assert [f["area"] for f in _records(frame)] == [100.0, 101.0, 102.0]


def test_features_by_column_equal_one_record_per_prediction(engine: sa.Engine) -> None:
    """Requests of several items, a read starting inside one: each row gets its own
    item's features, as the per-prediction records of watchkeeper.db.features give."""
    for n in range(1, 5):
        _log(engine, n, items=4)
    reader = LogReader(engine, settle_seconds=0)
    seqs = list(reader.read(0, reader.high_mark())["seq"])

    frame = reader.read(seqs[2], seqs[-3])

    query = sa.select(predictions).where(seq_between(seqs[2], seqs[-3]))
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(*IN_ORDER)).all()
        expected = feature_records(connection, rows)
    assert _records(frame) == expected
    assert features_of(frame, ["area", "hood"])["area"].dtype == "float64"


def test_the_high_mark_is_the_last_item_of_the_newest_request_with_predictions(
    engine: sa.Engine,
) -> None:
    """Read from ``requests`` by its ``seq`` index: a rejected request stored after it
    (no predictions) does not move it; every item of the newest request is within it."""
    _log(engine, 1)
    _log(engine, 2, items=3)
    rejected = LogEntry(
        request_id=f"{3:032x}",
        received_at=T0 + timedelta(seconds=3),
        endpoint="/predict",
        method="POST",
        status_code=422,
        latency_seconds=0.01,
    )
    LogStore(engine).insert([rejected])
    reader = LogReader(engine, settle_seconds=0)
    with engine.connect() as connection:
        stored = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())

    mark = reader.high_mark()

    assert mark == prediction_seq(stored[f"{2:032x}"], 2)
    assert stored[f"{3:032x}"] > stored[f"{2:032x}"]  # stored later, yet not the mark
    assert list(reader.read(0, mark)["prediction"]) == [1.0, 2.0, 2.0, 2.0]
    assert reader.read(mark, prediction_seq(stored[f"{3:032x}"] + 1, 0)).empty


def test_a_watermark_at_the_end_reads_nothing_until_new_rows_arrive(engine: sa.Engine) -> None:
    for n in range(1, 4):
        _log(engine, n)
    reader = LogReader(engine, settle_seconds=0)
    reader.set_watermark(reader.high_mark())

    assert reader.read(reader.watermark(), reader.high_mark()).empty

    _log(engine, 4)
    _log(engine, 5)
    frame = reader.read(reader.watermark(), reader.high_mark())
    assert list(frame["prediction_id"]) == [f"{4:032x}", f"{5:032x}"]


def test_a_row_committed_during_the_settling_pause_waits_for_the_next_cycle(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark is taken before the pause, so a row another writer commits meanwhile
    (on PostgreSQL possibly with a lower seq than one already seen) is not stepped over:
    it is read by the next cycle."""
    _log(engine, 1)
    pauses: list[float] = []

    def another_writer_commits(seconds: float) -> None:
        pauses.append(seconds)
        _log(engine, 2)

    monkeypatch.setattr(log_reader_module.time, "sleep", another_writer_commits)
    reader = LogReader(engine, settle_seconds=3.0)

    mark = reader.settled_high_mark()

    assert pauses == [3.0]
    assert list(reader.read(0, mark)["prediction_id"]) == [f"{1:032x}"]
    assert list(reader.read(mark, reader.high_mark())["prediction_id"]) == [f"{2:032x}"]


def test_no_settling_pause_when_it_is_set_to_zero(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _log(engine, 1)
    monkeypatch.setattr(log_reader_module.time, "sleep", pytest.fail)

    assert LogReader(engine, settle_seconds=0).settled_high_mark() == LogReader(engine).high_mark()


def test_the_high_mark_reaches_the_last_item_of_a_request_with_gaps(engine: sa.Engine) -> None:
    """A batch that a prune left part of before migration 0010 holds ``null`` where its
    deleted items were, and counts only the others in ``n_items``: the mark is its last
    item's position all the same, or those items wait for a newer request."""
    with engine.begin() as connection:
        connection.execute(
            requests.insert().values(
                request_id="gapped",
                received_at=datetime(2026, 1, 1, tzinfo=UTC),
                endpoint="/predict",
                method="POST",
                status_code=200,
                latency_seconds=0.0,
                model_version="v1",
                n_items=2,
                single=False,
                outputs=[None, None, [1.0, 0.0, 2.0], [3.0, 2.0, 4.0]],
                features={"x": [None, None, 1, 2]},
            )
        )
    reader = LogReader(engine, settle_seconds=0)

    frame = reader.read_index(0, reader.high_mark())

    assert list(frame["item_index"]) == [2, 3]
