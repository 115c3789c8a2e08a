"""A retraining job trains on labelled predictions a prune moved to the archive: they
join the training data (never the holdout), counted once, equal to what the database
held before the prune."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from retrain.data import ArchiveWindow, assemble, base_dataset, labelled_predictions
from retrain.job import RetrainJob
from watchkeeper import retrain_queue
from watchkeeper.dataset import Dataset
from watchkeeper.db.archive import Archive
from watchkeeper.db.retention import Pruner, RetentionPolicy
from watchkeeper.db.tables import feedback, predictions, requests, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings

AGED_REQUESTS = 2
"""The fixture posts 500 predictions a request: the first two are labelled long ago."""


def _request_a_run(engine: sa.Engine) -> None:
    retrain_queue.enqueue(engine, trigger="manual", reason="test")


def _run(engine: sa.Engine) -> dict:
    with engine.connect() as connection:
        [run] = [dict(r._mapping) for r in connection.execute(sa.select(retrain_runs))]
    return run


def _age_the_first_requests(engine: sa.Engine, now: datetime) -> list[str]:
    """Move the first requests (their predictions with them) 500 days back and their
    labels 400, past the labelled retention (365 days: the retraining window); their
    prediction ids."""
    with engine.begin() as connection:
        request_ids = (
            connection.execute(
                sa.select(requests.c.request_id)
                .order_by(requests.c.received_at, requests.c.request_id)
                .limit(AGED_REQUESTS)
            )
            .scalars()
            .all()
        )
        ids = (
            connection.execute(
                sa.select(predictions.c.prediction_id).where(
                    predictions.c.request_id.in_(request_ids)
                )
            )
            .scalars()
            .all()
        )
        connection.execute(
            requests.update()
            .where(requests.c.request_id.in_(request_ids))
            .values(received_at=now - timedelta(days=500))
        )
        connection.execute(
            feedback.update()
            .where(feedback.c.prediction_id.in_(ids))
            .values(received_at=now - timedelta(days=400))
        )
    return list(ids)


def _prune_into(engine: sa.Engine, settings: Settings, archive: Path) -> None:
    policy = RetentionPolicy.from_settings(settings.replace(retention_archive=""))
    # no monitor runs on this log: nothing waits to be read
    policy = replace(policy, archive_url=str(archive), without_monitor=True)
    Pruner(engine, policy, pause=False).run()


def test_archived_labels_join_the_training_data_as_the_database_held_them(
    make_job: Callable[..., RetrainJob],
    labelled_log: int,
    engine: sa.Engine,
    settings: Settings,
    tmp_path: Path,
    ames: Dataset,
) -> None:
    archive = tmp_path / "archive"
    base = len(ames.between(None, 200712).frame)  # the champion's own training sales
    aged = _age_the_first_requests(engine, datetime.now(UTC))
    champion = ModelRegistry(settings.storage.registry_path).load()
    schema = champion.model.schema
    before = labelled_predictions(engine, schema, since=datetime.now(UTC) - timedelta(days=450))
    columns = [*schema.names, schema.target]
    expected = before.frame.iloc[: len(aged)][columns].reset_index(drop=True)

    _prune_into(engine, settings, archive)
    with engine.connect() as connection:
        left = connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()
        # a prune whose delete failed after writing its file: these rows are in both
        kept = connection.execute(
            sa.select(predictions.c.seq).order_by(predictions.c.seq).limit(40)
        ).scalars()
        assert Archive(str(archive)).write(connection, list(kept)) == 40
    assert left == labelled_log - len(aged)  # the aged ones left the database

    on = {"retention_archive": str(archive), "retrain_archive_days": 450.0}
    _request_a_run(engine)
    result = make_job(settings=on).run()

    run = _run(engine)
    assert result.outcome in {"promoted", "rejected"}, run["decision_reason"]
    data = run["data"]
    assert data["archived_in_training"] == len(aged)  # each once, the 40 in both too
    assert data["archive_days"] == 450.0
    assert data["holdout_rows"] == pytest.approx(left * settings.retrain.holdout_fraction, abs=1)
    assert data["training_rows"] == base + len(aged) + left - data["holdout_rows"]

    # the rows the job trained on from the archive are those the database held
    assembled = assemble(
        engine,
        base_dataset(champion).dataset,
        schema,
        window_days=settings.retrain.window_days,
        holdout_fraction=settings.retrain.holdout_fraction,
        min_holdout=settings.retrain.min_holdout,
        archive=ArchiveWindow(str(archive), 450.0),
    )
    from_archive = assembled.training.frame.iloc[base : base + len(aged)]
    pd.testing.assert_frame_equal(from_archive.reset_index(drop=True), expected, check_dtype=False)
    assert len(assembled.holdout.frame) == data["holdout_rows"]


def test_archive_days_without_an_archive_fail_the_run_with_the_reason(
    make_job: Callable[..., RetrainJob], engine: sa.Engine
) -> None:
    _request_a_run(engine)
    result = make_job(settings={"retrain_archive_days": 90.0}).run()

    run = _run(engine)
    assert result.outcome == run["outcome"] == "failed"
    assert "WATCHKEEPER_RETENTION_ARCHIVE" in run["decision_reason"]
    assert "\n" not in run["decision_reason"]


def test_an_unreadable_archive_fails_the_run_with_the_reason(
    make_job: Callable[..., RetrainJob], engine: sa.Engine, tmp_path: Path
) -> None:
    broken = tmp_path / "archive" / "predictions" / "date=2025-01-01"
    broken.mkdir(parents=True)
    (broken / "seq-000000000001-000000000002.parquet").write_bytes(b"not parquet")
    _request_a_run(engine)
    on = {"retention_archive": str(tmp_path / "archive"), "retrain_archive_days": 90.0}
    result = make_job(settings=on).run()

    run = _run(engine)
    assert result.outcome == run["outcome"] == "failed"
    assert run["decision_reason"].startswith(f"cannot read the archive {tmp_path / 'archive'}")
    assert "\n" not in run["decision_reason"]
