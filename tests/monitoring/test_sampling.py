"""Sampled evaluation: a window larger than ``WATCHKEEPER_MONITOR_SAMPLE_ROWS`` runs its
drift tests, OOD scoring of unscored rows and label-free estimate on a seeded uniform
sample of that many rows, while its counts and data-quality rates cover every row; the
same window draws the same sample; a drifted window is still flagged; each result
records how many rows it evaluated of how many the window held. Regression rows are
written in the log's current layout (features by column in ``requests.features``), on
SQLite and PostgreSQL; classifier rows as :mod:`tests.monitoring.classifier_log` does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from monitoring.monitor import Monitor
from monitoring.quality import feature_quality
from monitoring.sampling import sample_window
from tests.monitoring.classifier_log import classifier_of, draw, write_rows
from tests.monitoring.log_rows import positions, store_rows
from watchkeeper.dataset import Dataset
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import predictions, window_results
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

HELD = 2_000
SAMPLE = 500
SAMPLED_CHECKS = ("feature_drift", "output_drift", "multivariate_drift", "estimated_accuracy")
START = datetime(2026, 3, 1, tzinfo=UTC)


def _write_regression_log(
    engine: sa.Engine, model: Any, frame: pd.DataFrame, *, batch: int = 100
) -> None:
    """``frame``'s rows as serving logs them today: one request per ``batch`` rows
    holding the features by column and its predictions, no OOD score."""
    frame = frame.reset_index(drop=True)
    predicted = np.asarray(model.predict(frame).value, dtype=np.float64)
    rows = []
    for start in range(0, len(frame), batch):
        part = frame.iloc[start : start + batch]
        stamp = START + timedelta(milliseconds=start)
        rows.extend(
            {
                "request_id": f"r{start:09d}",
                "item_index": i,
                "created_at": stamp,
                "model_version": "v1",
                "features": {
                    name: None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
                    for name, v in record.items()
                },
                "prediction": float(predicted[start + i]),
                "lower": 0.0,
                "upper": 0.0,
                "single": False,
            }
            for i, record in enumerate(part.to_dict("records"))
        )
    store_rows(engine, rows)


def _results(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(window_results)).all()
    return {row.detector: dict(row._mapping) for row in rows}


@pytest.fixture
def monitor(database_url: str, make_settings: Callable[..., Settings]) -> Any:  # Iterator[Monitor]
    settings = make_settings(
        database_url=database_url,
        monitor_window_size=HELD,
        monitor_sample_rows=SAMPLE,
        monitor_min_samples=200,
        monitor_settle_seconds=0,
    )
    engine = create_engine(database_url)
    yield Monitor(settings, engine, ModelRegistry(settings.storage.registry_path))
    engine.dispose()


@pytest.fixture(scope="module")
def fresh(ames: Dataset, trained: TrainedModel) -> pd.DataFrame:
    """2,000 sales of the training years (no drift), drawn with replacement."""
    frame = ames.between(None, 200712).frame[list(trained.model.schema.names)]
    return frame.sample(HELD, replace=True, random_state=11).reset_index(drop=True)


def test_a_large_window_evaluates_the_sample_and_counts_every_row(
    monitor: Monitor, fresh: pd.DataFrame, trained: TrainedModel
) -> None:
    window = fresh.copy()
    window.loc[window.index[:7], "Gr_Liv_Area"] = None  # seven missing of 2,000
    _write_regression_log(monitor.engine, trained.model, window)

    assert monitor.run_once() == 1

    results = _results(monitor.engine)
    assert {r["n_rows"] for r in results.values()} == {HELD}
    for check in SAMPLED_CHECKS:
        details = results[check]["details"]
        assert "error" not in details, check
        assert (details["rows_evaluated"], details["rows_held"]) == (SAMPLE, HELD), check
    quality = results["data_quality"]["details"]
    assert (quality["rows_evaluated"], quality["rows_held"]) == (HELD, HELD)
    assert quality["features"]["Gr_Liv_Area"]["missing_rate"] == 7 / HELD
    assert quality["features"] == feature_quality(window, trained.model.schema)
    # the estimate is the mean over exactly the sampled rows
    sample = sample_window(results["feature_drift"]["window_id"], HELD, SAMPLE)
    rows = window.iloc[sample.positions]
    expected = trained.model.expected_absolute_errors(rows, trained.model.predict(rows).value)
    assert results["estimated_accuracy"]["score"] == pytest.approx(float(expected.mean()))
    # rows logged without an OOD score: only the sample's are scored (and stored)
    ood = results["ood"]["details"]
    assert (ood["rows_scored_here"], ood["rows_evaluated"], ood["rows_held"]) == (
        SAMPLE,
        SAMPLE,
        HELD,
    )
    with monitor.engine.connect() as connection:
        scored = connection.execute(
            sa.select(predictions.c.seq).where(predictions.c.ood_score.is_not(None))
        ).scalars()
        row_of = {seq: i for i, seq in enumerate(positions(monitor.engine))}  # all one window
        assert sorted(row_of[seq] for seq in scored) == sample.positions.tolist()


def test_the_same_window_draws_the_same_sample_twice(
    monitor: Monitor, fresh: pd.DataFrame, trained: TrainedModel
) -> None:
    _write_regression_log(monitor.engine, trained.model, fresh)
    monitor.run_once()
    first = _results(monitor.engine)
    # a monitor that died before moving its watermark evaluates the window again
    with monitor.engine.begin() as connection:
        connection.execute(window_results.delete())
    monitor.reader.set_watermark(0)
    again = Monitor(
        monitor.settings, monitor.engine, ModelRegistry(monitor.settings.storage.registry_path)
    )

    assert again.run_once() == 1

    second = _results(monitor.engine)
    for check in SAMPLED_CHECKS:
        assert second[check]["score"] == first[check]["score"], check
        assert second[check]["details"] == first[check]["details"], check
    window_id = first["feature_drift"]["window_id"]
    a, b = sample_window(window_id, HELD, SAMPLE), sample_window(window_id, HELD, SAMPLE)
    np.testing.assert_array_equal(a.positions, b.positions)
    other = sample_window(window_id + "x", HELD, SAMPLE)
    assert not np.array_equal(a.positions, other.positions)


def test_a_drifted_window_is_still_flagged_when_sampled(
    monitor: Monitor, ames: Dataset, trained: TrainedModel
) -> None:
    later = ames.between(200901, None).frame[list(trained.model.schema.names)]
    window = later.sample(HELD, replace=True, random_state=3).reset_index(drop=True)
    _write_regression_log(monitor.engine, trained.model, window)

    monitor.run_once()

    results = _results(monitor.engine)
    assert results["feature_drift"]["details"]["rows_evaluated"] == SAMPLE
    assert results["feature_drift"]["is_drift"]
    assert results["multivariate_drift"]["is_drift"]


def test_a_window_within_the_sample_size_evaluates_every_row(
    monitor: Monitor, fresh: pd.DataFrame, trained: TrainedModel
) -> None:
    _write_regression_log(monitor.engine, trained.model, fresh.head(SAMPLE))
    monitor.settings = monitor.settings.replace(monitor_window_size=SAMPLE)

    assert monitor.run_once() == 1

    for check, result in _results(monitor.engine).items():
        details = result["details"]
        assert (details["rows_evaluated"], details["rows_held"]) == (SAMPLE, SAMPLE), check


def test_sample_positions_are_a_uniform_draw_without_repeats() -> None:
    held, size = 10_000, 500
    counts = np.zeros(held)
    for i in range(200):
        sample = sample_window(f"v1:{i}-{i + held}", held, size)
        positions = sample.positions
        assert len(np.unique(positions)) == size and np.all(np.diff(positions) > 0)
        assert 0 <= positions[0] and positions[-1] < held
        counts[positions] += 1
    # each row drawn with chance 5 %: in 200 draws, 10 times on average per row; the
    # tenths of the rows each get their share (2,000 draws a tenth, sd ~ 42)
    tenths = counts.reshape(10, -1).sum(axis=1)
    assert np.all(np.abs(tenths - 200 * size / 10) < 200)


def test_a_classifier_window_is_sampled_alike(
    class_settings: Settings, classifier_trained: TrainedModel
) -> None:
    settings = class_settings.replace(
        # its rows are a second apart: the window closes by count alone
        monitor_window_size=HELD,
        monitor_window_seconds=10 * HELD,
        monitor_sample_rows=SAMPLE,
    )
    engine = create_engine(settings.storage.database_url)
    monitor = Monitor(settings, engine, ModelRegistry(settings.storage.registry_path))
    model = classifier_of(classifier_trained)
    frame, _ = draw(HELD, seed=21, shift=1.0)  # x moved by one sd: the class mix moves
    try:
        write_rows(engine, model, frame)

        assert monitor.run_once() == 1

        results = _results(engine)
    finally:
        engine.dispose()
    for check in ("feature_drift", "output_drift", "estimated_accuracy"):
        details = results[check]["details"]
        assert (details["rows_evaluated"], details["rows_held"]) == (SAMPLE, HELD), check
    assert results["output_drift"]["is_drift"] and results["feature_drift"]["is_drift"]
    assert sum(results["output_drift"]["details"]["window_shares"]) == pytest.approx(1.0)
    sample = sample_window(results["output_drift"]["window_id"], HELD, SAMPLE)
    confidence = model.predict(frame.iloc[sample.positions]).confidence
    expected = model.calibration.expected_accuracy(confidence).mean()
    assert results["estimated_accuracy"]["score"] == pytest.approx(float(expected))
    assert results["data_quality"]["details"]["rows_evaluated"] == HELD


def test_a_monitor_far_behind_reads_a_bounded_chunk_at_a_time(
    monitor: Monitor, fresh: pd.DataFrame, trained: TrainedModel
) -> None:
    """1,050 old rows, windows of 100, two windows' rows a read: the cycle reads in
    chunks and cuts the same windows one read of everything cut, the short tail closed
    by the clock only at the end of the log."""
    _write_regression_log(monitor.engine, trained.model, fresh.head(1_050))
    monitor.settings = monitor.settings.replace(monitor_window_size=100, monitor_min_samples=50)
    monitor.read_windows, monitor.read_rows = 2, 0
    reads: list[int] = []
    read = monitor.reader.read_index

    def counted(after: int, up_to: int, *, limit: int | None = None) -> pd.DataFrame:
        frame = read(after, up_to, limit=limit)
        reads.append(len(frame))
        return frame

    monitor.reader.read_index = counted  # type: ignore[method-assign]

    assert monitor.run_once() == 11

    assert max(reads) == 200
    with monitor.engine.connect() as connection:
        spans = connection.execute(
            sa.select(window_results.c.first_seq, window_results.c.last_seq)
            .where(window_results.c.detector == "data_quality")
            .order_by(window_results.c.first_seq)
        ).all()
    row_of = {seq: i for i, seq in enumerate(positions(monitor.engine))}
    assert [(row_of[a], row_of[b]) for a, b in spans] == [
        (i * 100, min(i * 100 + 99, 1_049)) for i in range(11)
    ]


def test_windows_of_a_minimum_span_longer_than_a_read_are_evaluated_whole(
    monitor: Monitor, fresh: pd.DataFrame, trained: TrainedModel
) -> None:
    """1,050 rows logged at 1,000 a second: windows of at least 100 rows and 0.5 s
    hold 500 rows, while a read holds two windows' count (200): a window still open at
    the end of a read carries over to the next, and each row is read once."""
    _write_regression_log(monitor.engine, trained.model, fresh.head(1_050))
    monitor.settings = monitor.settings.replace(
        monitor_window_size=100,
        monitor_window_min_seconds=0.5,
        monitor_min_samples=50,
    )
    monitor.read_windows, monitor.read_rows = 2, 0

    assert monitor.run_once() == 3

    assert monitor.reader.rows_read == 1_050
    with monitor.engine.connect() as connection:
        spans = connection.execute(
            sa.select(
                window_results.c.first_seq, window_results.c.last_seq, window_results.c.n_rows
            )
            .where(window_results.c.detector == "data_quality")
            .order_by(window_results.c.first_seq)
        ).all()
    row_of = {seq: i for i, seq in enumerate(positions(monitor.engine))}
    # the last 50 rows close by the clock: they are months old
    assert [(row_of[a], row_of[b], n) for a, b, n in spans] == [
        (0, 499, 500),
        (500, 999, 500),
        (1_000, 1_049, 50),
    ]
