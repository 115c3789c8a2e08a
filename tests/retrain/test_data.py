"""A retraining job's data: the labelled predictions as the champion's schema types them,
and the labels it cannot train on left out, counted and named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from retrain.data import labelled_predictions
from retrain.job import RetrainJob
from serving.log_store import LogStore
from tests.log_entries import log_entry
from tests.stored_features import (
    CODES_ID,
    LISTS_ID,
    ROWS,
    SCHEMA,
    T0,
    expected_columns,
    store_both_forms,
)
from watchkeeper import retrain_queue
from watchkeeper.data_source import describe_csv
from watchkeeper.dataset import load_csv
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import feedback, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.settings import Settings
from watchkeeper.training import TrainingParams, train


def _no_lot_frontage(records: list[dict[str, Any]]) -> None:
    """A client that never sends one numeric feature: null in every row, accepted."""
    for record in records:
        record["Lot_Frontage"] = None


def test_a_numeric_feature_no_client_sent_is_read_as_numbers(
    make_labelled_log: Callable[..., list[str]], engine: sa.Engine, settings: Settings
) -> None:
    make_labelled_log(records=_no_lot_frontage)
    schema = ModelRegistry(settings.storage.registry_path).load().model.schema

    labelled = labelled_predictions(
        engine, schema, since=datetime.now(UTC) - timedelta(days=1)
    ).frame

    assert labelled["Lot_Frontage"].dtype == "float64"
    assert labelled["Lot_Frontage"].isna().all()


def test_a_numeric_feature_no_client_sent_keeps_the_candidates_schema_the_champions(
    make_labelled_log: Callable[..., list[str]],
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
    settings: Settings,
) -> None:
    make_labelled_log(records=_no_lot_frontage)
    retrain_queue.enqueue(engine, trigger="manual", reason="test")

    result = make_job().run()

    assert result is not None and result.outcome == "promoted", result
    registry = ModelRegistry(settings.storage.registry_path)
    assert registry.load("v2").model.schema["Lot_Frontage"].kind == "numeric"
    with engine.connect() as connection:
        assert connection.execute(sa.select(retrain_runs.c.outcome)).scalar() == "promoted"


def test_extreme_regression_labels_are_left_out_named_and_the_rest_trains(
    make_labelled_log: Callable[..., list[str]],
    make_job: Callable[..., RetrainJob],
    engine: sa.Engine,
) -> None:
    """Eight labels at ±1e308 failed every run ("Input y contains infinity") for as long
    as they stayed in the window; one at 2**70 was trained on (candidate MAE 4.7e15)."""
    extreme = [1e308, -1e308] * 4 + [2.0**70]

    def hostile(items: list[dict[str, Any]]) -> None:
        for k, value in enumerate(extreme):
            items[500 + k]["actual"] = value

    ids = make_labelled_log(items=hostile)
    retrain_queue.enqueue(engine, trigger="manual", reason="test")

    result = make_job().run()

    assert result is not None and result.outcome == "promoted", result
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
    [left] = run.data["left_out"]
    assert left["reason"] == "extreme" and left["count"] == len(extreme)
    assert left["prediction_ids"] == ids[500 : 500 + len(extreme)]
    assert run.data["labelled_rows"] == len(ids) - len(extreme)
    assert f"left out {len(extreme)} labels outside" in run.decision_reason
    assert ids[500] in run.decision_reason
    assert run.candidate_metrics["mae"] < 1e5


def _label_both_forms(engine: sa.Engine) -> None:
    """Both stored forms' requests, each prediction labelled."""
    store_both_forms(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(feedback),
            [
                {"prediction_id": f"{r}.{i}", "actual": 100.0 + i, "received_at": T0}
                for r in (CODES_ID, LISTS_ID)
                for i in range(ROWS)
            ],
        )


def test_both_stored_forms_of_a_requests_features_give_the_same_training_rows(
    database_url: str,
) -> None:
    """A category column stored as its values and codes (an Arrow body's) and the same
    column stored as lists read as the same rows, on SQLite and PostgreSQL."""
    engine = create_engine(database_url)
    try:
        _label_both_forms(engine)

        labelled = labelled_predictions(engine, SCHEMA, since=T0 - timedelta(days=1))
    finally:
        engine.dispose()

    assert [p[:32] for p in labelled.prediction_ids] == [CODES_ID] * ROWS + [LISTS_ID] * ROWS
    features = labelled.frame[[*SCHEMA.names, SCHEMA.target]]
    codes, lists = features[:ROWS].reset_index(drop=True), features[ROWS:].reset_index(drop=True)
    pd.testing.assert_frame_equal(codes, lists)
    assert list(codes["zone"]) == expected_columns()["zone"]


def _bookkeeping_named(n: int, seed: int) -> pd.DataFrame:
    """A price from features named as retraining's bookkeeping once was: a number
    ``_predicted_at`` and a category ``_prediction_id``, both informative."""
    rng = np.random.default_rng(seed)
    signal, group = rng.normal(size=n), rng.choice(["p", "q", "r"], size=n)
    y = 10 + 3 * signal + np.where(group == "p", 4.0, 0.0) + rng.normal(scale=0.3, size=n)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "_predicted_at": signal,
            "_prediction_id": group,
            "period": np.arange(n) * 4 // n,
            "y": y,
        }
    )


def test_features_named_predicted_at_and_prediction_id_keep_their_values_in_retraining(
    engine: sa.Engine, make_job: Callable[..., RetrainJob], tmp_path: Path
) -> None:
    """They were overwritten by each row's prediction time and id: every candidate's
    schema differed from the champion's (rejected), or trained on prediction ids."""
    csv = tmp_path / "named.csv"
    _bookkeeping_named(1200, seed=0).to_csv(csv, index=False)
    data = load_csv(csv, "y", period="period")
    registry = ModelRegistry(tmp_path / "named")
    trained = train(data.between(None, 2), data.between(3, 3), params=TrainingParams(max_iter=30))
    registry.register(trained, data_source=describe_csv(csv, "y", "period"))
    logged = _bookkeeping_named(400, seed=1)
    names = ["x", "_predicted_at", "_prediction_id"]
    now = datetime.now(UTC)
    LogStore(engine).insert(
        [
            log_entry(
                1,
                len(logged),
                when=now,
                request_id="r1",
                columns={n: logged[n].tolist() for n in names},
                values=[0.0] * len(logged),
                lower=[0.0] * len(logged),
                upper=[0.0] * len(logged),
            )
        ]
    )
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(),
            [
                {"prediction_id": f"r1.{i}", "actual": float(y), "received_at": now}
                for i, y in enumerate(logged["y"])
            ],
        )

    schema = registry.load().model.schema
    labelled = labelled_predictions(engine, schema, since=now - timedelta(days=1))

    pd.testing.assert_frame_equal(labelled.frame[[*names, "y"]], logged[[*names, "y"]])
    assert labelled.prediction_ids == tuple(f"r1.{i}" for i in range(len(logged)))
    retrain_queue.enqueue(
        engine, trigger="manual", reason="test", options=RetrainOptions(max_iter=30)
    )
    job = make_job(
        settings={"registry_path": tmp_path / "named", "retrain_min_holdout": 50},
    )
    job.registry = registry
    result = job.run()
    assert result is not None and result.outcome in {"promoted", "rejected"}, result
    assert "schema differs" not in result.reason
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
    assert run.candidate_metrics["mae"] < 1.0  # learnt from the features, not from ids


def test_a_labelled_request_whose_time_no_reader_holds_is_left_out_of_training(
    database_url: str,
) -> None:
    """A foreign writer's ``infinity`` in a request's time: psycopg cannot read it and
    SQLite's reader raised, so every retraining read of the labels failed. The request
    is left out; the others train."""
    engine = create_engine(database_url)
    try:
        _label_both_forms(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE requests SET received_at = 'infinity' WHERE request_id = :id"),
                {"id": CODES_ID},
            )

        labelled = labelled_predictions(engine, SCHEMA, since=T0 - timedelta(days=1))
    finally:
        engine.dispose()

    assert [p[:32] for p in labelled.prediction_ids] == [LISTS_ID] * ROWS
    assert len(labelled.frame) == ROWS


def test_a_labelled_request_whose_outputs_are_no_json_fails_no_read(database_url: str) -> None:
    """A foreign writer's outputs cut short: reading which items the request holds
    raised (orjson), so every retraining read of the labels failed. The request holds
    item 0, as the ``predictions`` view reads it (its features and label are whole);
    the others train."""
    engine = create_engine(database_url)
    try:
        _label_both_forms(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE requests SET outputs = '[[1.0, 0.5' WHERE request_id = :id"),
                {"id": CODES_ID},
            )

        labelled = labelled_predictions(engine, SCHEMA, since=T0 - timedelta(days=1))
    finally:
        engine.dispose()

    ids = list(labelled.prediction_ids)
    assert sorted(p for p in ids if p.startswith(CODES_ID)) == [f"{CODES_ID}.0"]
    assert len([p for p in ids if p.startswith(LISTS_ID)]) == ROWS
    assert len(labelled.frame) == ROWS + 1
