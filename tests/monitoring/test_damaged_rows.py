"""Log rows no server writes (a buggy or foreign writer's, straight into the log), on
both databases: a number that is text, a number beyond a double's range, a time outside
what pandas holds. None may fail a monitor cycle or a window's check: the value is left
out of the window's figures and counted (``watchkeeper_monitor_unreadable_rows_total
{reason}``, and a log line), the windows advance, and the next cycle does not meet it
again."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from monitoring.monitor import FEEDBACK_WATERMARK, Monitor
from monitoring.report.build import thresholds
from monitoring.report.gather import gather
from monitoring.report.page import render
from monitoring.report.records import Period
from tests.monitoring.log_rows import update_items, write_log
from tests.monitoring.results import scraped, stored_results
from tests.processes import metric
from watchkeeper.db.engine import create_engine
from watchkeeper.db.positions import from_micros
from watchkeeper.db.tables import feedback, predictions
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel

SIZES = {
    "monitor_window_size": 500,
    "monitor_min_samples": 200,
    "monitor_settle_seconds": 0,
    "drift_multivariate": False,
}


@pytest.fixture(scope="module")
def fitted_detectors(
    tmp_path_factory: pytest.TempPathFactory,
    registry_template: Path,
    sqlite_template: Path,
) -> Path:
    """The detectors of v1 as these tests' monitor fits and saves them, once: each test
    starts with a copy (fitting them again cost each test ~1 s, nothing it proves)."""
    root = tmp_path_factory.mktemp("detectors")
    shutil.copyfile(sqlite_template, root / "log.db")
    settings = Settings(
        data_dir=root / "var",
        registry_path=registry_template,
        database_url=f"sqlite:///{root / 'log.db'}",
        **SIZES,
    )
    engine = create_engine(settings.storage.database_url)
    try:
        Monitor(settings, engine, ModelRegistry(registry_template)).suite("v1")
    finally:
        engine.dispose()
    return settings.storage.detectors_dir


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings],
    database_url: str,
    fitted_detectors: Path,
    tmp_path: Path,
) -> Settings:
    detectors = tmp_path / "detectors"
    shutil.copytree(fitted_detectors, detectors)
    return make_settings(database_url=database_url, detectors_dir=detectors, **SIZES)


def _log(settings: Settings, records: list[dict[str, Any]], trained: TrainedModel) -> None:
    """A row each record (1,000: two windows of 500)."""
    predicted = [float(v) for v in trained.model.predict(pd.DataFrame(records)).value]
    write_log(settings, records, predicted)


def _damage(settings: Settings, request_id: str, column: str, value: Any) -> None:
    """Write ``value`` into the logged request's ``column`` as a foreign writer could."""
    engine = create_engine(settings.storage.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE requests SET {column} = :value WHERE request_id = :id"),
                {"value": value, "id": request_id},
            )
    finally:
        engine.dispose()


def _run_twice(settings: Settings, make_monitor: Callable[..., Monitor]) -> Monitor:
    monitor = make_monitor()
    assert monitor.run_once() == 2
    assert monitor.run_once() == 0  # nothing left to meet again
    assert monitor.status.errors == 0
    assert sum(monitor.status.window_errors.values()) == 0
    return monitor


def _first_window(settings: Settings, check: str) -> dict[str, Any]:
    results = [r for r in stored_results(settings) if r["detector"] == check]
    assert len(results) == 2, check
    assert not [r["details"] for r in results if "error" in r["details"]]
    return min(results, key=lambda r: r["first_seq"])


@pytest.mark.parametrize(
    ("outputs", "unreadable", "non_finite"),
    [
        pytest.param('[["abc", 1.0, 2.0]]', 1, 1, id="text prediction"),
        pytest.param('[[150000.0, "low", 2.0]]', 1, 0, id="text bound"),
        # read as an infinity, as SQLite's JSON reads it: a non-finite prediction
        pytest.param("[[1e400, 1.0, 2.0]]", 0, 1, id="prediction beyond a double"),
        pytest.param("[[-1e400, 1.0, 2.0]]", 0, 1, id="negative, beyond a double"),
        pytest.param("[[1e-400, 1.0, 2.0]]", 0, 0, id="prediction under a double"),
        # outputs that are no JSON list: the request reads as one prediction of no number
        pytest.param("[[150000.0, 1.0", 1, 1, id="outputs cut short"),
        pytest.param("not json", 1, 1, id="outputs that are no JSON"),
        pytest.param('{"a": 1}', 1, 1, id="outputs that are no list"),
    ],
)
def test_a_prediction_that_is_no_number_is_left_out_and_counted(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
    outputs: str,
    unreadable: int,
    non_finite: int,
) -> None:
    """Text where a number belongs fails no read: it reads as no number (NaN), left out
    of the output drift test with the non-finite predictions and counted as unreadable.
    Before, PostgreSQL's view raised in every query over the row (the cycle failed, for
    good), and SQLite's read raised on the window (every check an error); outputs that
    are no JSON raised in both databases' view."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1000)]
    _log(settings, records, trained)
    _damage(settings, "p00000010", "outputs", outputs)

    monitor = _run_twice(settings, make_monitor)

    output = _first_window(settings, "output_drift")
    assert output["n_rows"] == 500
    assert output["details"]["non_finite_predictions"] == non_finite
    assert output["score"] is not None
    expected = {"number": unreadable} if unreadable else {}
    assert monitor.status.unreadable_rows == expected
    exported = scraped(monitor.status)
    assert metric(exported, "watchkeeper_monitor_unreadable_rows_total", reason="number") == (
        unreadable
    )
    assert metric(exported, "watchkeeper_monitor_unreadable_rows_total", reason="time") == 0


def test_a_text_ood_score_is_no_score_and_is_scored_again(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
) -> None:
    """The score is read for every row of a window: a text score raised there on SQLite
    and failed every cycle. It reads as no score now, on both databases (PostgreSQL's
    view gives NULL), so the monitor scores the row itself and stores its score over the
    text, as for a row logged without one."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1000)]
    _log(settings, records, trained)
    engine = create_engine(settings.storage.database_url)
    try:
        ids = [f"p{i:08d}" for i in range(1000)]
        update_items(engine, ids, ood_score=0.5)
    finally:
        engine.dispose()
    _damage(settings, ids[10], "outputs", '[[150000.0, 1.0, 2.0, "high"]]')

    monitor = _run_twice(settings, make_monitor)

    ood = _first_window(settings, "ood")
    assert ood["n_rows"] == 500
    assert ood["details"]["rows_scored_by_serving"] == 499
    assert ood["details"]["rows_scored_here"] == 1
    engine = create_engine(settings.storage.database_url)
    try:
        with engine.connect() as connection:
            (score,) = connection.execute(
                sa.select(predictions.c.ood_score).where(predictions.c.request_id == ids[10])
            ).one()
    finally:
        engine.dispose()
    assert score == pytest.approx(monitor.suite("v1").ood_scores(pd.DataFrame(records[10:11]))[0])


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(datetime(1000, 1, 1, tzinfo=UTC), id="year 1000"),
        pytest.param(datetime(9999, 12, 31, tzinfo=UTC), id="year 9999"),
    ],
)
def test_a_time_pandas_cannot_hold_is_left_out_and_counted_once(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
    at: datetime,
) -> None:
    """Read as no time: the row is in no window (windows are cut by time too) and the
    watermark passes it with the rows around it. Before, reading the window index raised
    (``OutOfBoundsDatetime``) and every cycle failed."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1001)]
    _log(settings, records, trained)
    _damage(settings, "p00000010", "received_at", at)

    monitor = _run_twice(settings, make_monitor)

    _first_window(settings, "data_quality")  # two windows, neither an error
    # 1,000 of the 1,001 rows: the first window is the 500 readable ones from the start
    assert sum(r["n_rows"] for r in stored_results(settings) if r["detector"] == "ood") == 1000
    assert monitor.status.unreadable_rows == {"time": 1}  # counted once, not each cycle


def test_text_in_a_numeric_feature_is_counted_out_of_range_and_fails_no_check(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
) -> None:
    """Validation refuses it, so only a foreign writer logs it: it is nothing training
    saw, counted out of range (it counted as neither missing nor out of range)."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1000)]
    predicted = [float(v) for v in trained.model.predict(pd.DataFrame(records)).value]
    for i in range(10, 15):
        records[i]["Lot_Area"] = "a lot"
    write_log(settings, records, predicted)

    _run_twice(settings, make_monitor)

    quality = _first_window(settings, "data_quality")
    rates = quality["details"]["features"]["Lot_Area"]
    reference = quality["details"]["reference"]["Lot_Area"]["out_of_range_rate"]
    assert rates["missing_rate"] == 0.0
    assert rates["out_of_range_rate"] >= reference + 5 / 500


def _label_all(settings: Settings, n: int) -> None:
    """A label for each of the ``n`` logged rows, 1,000 off its prediction."""
    engine = create_engine(settings.storage.database_url)
    try:
        with engine.begin() as connection:
            query = sa.select(predictions.c.request_id, predictions.c.prediction)
            predicted = {r.request_id: r.prediction for r in connection.execute(query)}
            now = datetime.now(UTC)
            connection.execute(
                feedback.insert(),
                [
                    {
                        "prediction_id": f"p{i:08d}",
                        "actual": predicted[f"p{i:08d}"] + 1000.0,
                        "received_at": now,
                    }
                    for i in range(n)
                ],
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("at", "damaged_after_windows"),
    [
        pytest.param(datetime(9999, 12, 31, tzinfo=UTC), False, id="year 9999, windows meet it"),
        pytest.param(datetime(1000, 1, 1, tzinfo=UTC), True, id="year 1000, labels meet it"),
        # which psycopg cannot read at all, nor SQLAlchemy's SQLite datetime
        pytest.param("infinity", True, id="infinity, labels meet it"),
    ],
)
def test_a_labelled_row_whose_time_pandas_cannot_hold_is_left_out_of_accuracy_and_counted(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
    at: datetime | str,
    damaged_after_windows: bool,
) -> None:
    """A labelled row's time is read by the window's and the version's accuracy too:
    there it raised (``OutOfBoundsDatetime``), the window's accuracy stored as an error
    and the rolling figure failing every cycle that read its labels. It is left out of
    both and counted once, by whichever read meets it first."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1001)]
    _log(settings, records, trained)
    monitor = make_monitor()
    if damaged_after_windows:  # its windows evaluated before: only the labels meet it
        assert monitor.run_once() == 2
    _damage(settings, "p00000010", "received_at", at)
    _label_all(settings, len(records))

    monitor.run_once()
    monitor.run_once()

    assert monitor.status.errors == 0
    assert sum(monitor.status.window_errors.values()) == 0
    assert monitor.status.unreadable_rows == {"time": 1}  # once, by either read
    results = stored_results(settings)
    windows = [r for r in results if r["detector"] == "accuracy"]
    assert len(windows) == 2
    assert not [r["details"] for r in windows if "error" in r["details"]]
    assert sum(r["details"]["labels"] for r in windows) == 1001 - 1 - damaged_after_windows
    (rolling,) = [r for r in results if r["detector"] == "accuracy_rolling"]
    assert "error" not in rolling["details"]
    assert rolling["details"]["labels"] == 1000 - 1  # the 1,000 newest, less the damaged
    assert rolling["score"] == pytest.approx(1000.0)
    exported = scraped(monitor.status)
    assert metric(exported, "watchkeeper_monitor_unreadable_rows_total", reason="time") == 1


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(datetime(9999, 12, 31, tzinfo=UTC), id="year 9999"),
        pytest.param("infinity", id="infinity"),
    ],
)
def test_a_report_leaves_out_a_row_whose_time_cannot_be_held(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
    at: datetime | str,
) -> None:
    """The report's most out-of-distribution rows read each one's time: PostgreSQL's
    infinity (psycopg reads none) and SQLite's text that is no time raised there and
    failed the whole report. Such a row is left out, as the monitor leaves it out."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1001)]
    _log(settings, records, trained)
    _run_twice(settings, make_monitor)
    engine = create_engine(settings.storage.database_url)
    try:
        update_items(engine, ["p00000010"], ood_score=1e6)  # the most out of distribution
        _damage(settings, "p00000010", "received_at", at)
        registry = ModelRegistry(settings.storage.registry_path)
        data = gather(engine, registry, Period(), thresholds(settings))
    finally:
        engine.dispose()

    assert data.ood_rows  # the others
    assert "p00000010" not in {row.prediction_id for row in data.ood_rows}
    assert "p00000010" not in render(data)


def _label(settings: Settings, ids: range, received_at: dict[int, datetime | str]) -> None:
    """A label for each logged row of ``ids``, 1,000 off its prediction, received now
    or at ``received_at[i]`` (as a foreign writer or a wrong clock could store it)."""
    engine = create_engine(settings.storage.database_url)
    try:
        with engine.begin() as connection:
            query = sa.select(predictions.c.request_id, predictions.c.prediction)
            predicted = {r.request_id: r.prediction for r in connection.execute(query)}
            now = datetime.now(UTC)
            for i in ids:
                connection.execute(
                    sa.text(
                        "INSERT INTO feedback (prediction_id, actual, received_at)"
                        " VALUES (:id, :actual, :at)"
                    ),
                    {
                        "id": f"p{i:08d}",
                        "actual": predicted[f"p{i:08d}"] + 1000.0,
                        "at": received_at.get(i, now),
                    },
                )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(datetime(9999, 12, 31, tzinfo=UTC), id="year 9999"),
        pytest.param(datetime(3000, 1, 1, tzinfo=UTC), id="year 3000"),
    ],
)
def test_a_label_received_in_the_far_future_moves_no_watermark_and_is_counted(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
    at: datetime,
) -> None:
    """A label's own arrival time from a foreign writer or a wrong clock (year 9999):
    the labels' watermark (where the monitor reads labels from) must not pass real
    time, or no later label would be read; the label is left out of accuracy (its
    delay cannot be measured) and counted, and the labels after it are read."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1001)]
    _log(settings, records, trained)
    monitor = make_monitor()
    assert monitor.run_once() == 2
    _label(settings, range(500), {10: at})

    monitor.run_once()
    before = datetime.now(UTC)
    assert from_micros(monitor.reader.watermark(FEEDBACK_WATERMARK)) <= before
    _label(settings, range(500, 1001), {})
    monitor.run_once()
    monitor.run_once()

    assert monitor.status.errors == 0
    assert sum(monitor.status.window_errors.values()) == 0
    assert from_micros(monitor.reader.watermark(FEEDBACK_WATERMARK)) <= datetime.now(UTC)
    results = stored_results(settings)
    windows = [r for r in results if r["detector"] == "accuracy"]
    assert len(windows) == 2
    assert not [r["details"] for r in windows if "error" in r["details"]]
    # the two windows hold 1,000 rows (the 1,001st waits for its window), less the label
    assert sum(r["details"]["labels"] for r in windows) == 1000 - 1
    rolling = [r for r in results if r["detector"] == "accuracy_rolling"]
    assert rolling and not [r["details"] for r in rolling if "error" in r["details"]]
    assert max(r["details"]["labels"] for r in rolling) == 1000 - 1  # the newest, less it
    assert monitor.status.unreadable_rows == {"time": 1}  # once, whichever read meets it
    exported = scraped(monitor.status)
    assert metric(exported, "watchkeeper_monitor_unreadable_rows_total", reason="time") == 1


def test_a_report_reads_past_outputs_that_are_no_json(
    settings: Settings,
    replay_records: list[dict[str, Any]],
    trained: TrainedModel,
    make_monitor: Callable[..., Monitor],
) -> None:
    """The report expands the requests that can hold its most out-of-distribution rows
    (by ``requests.max_ood_score``): outputs cut short there raised in the view and
    failed the whole report. The request reads as a prediction of no score: not among
    the report's rows."""
    records = [dict(replay_records[i % len(replay_records)]) for i in range(1001)]
    _log(settings, records, trained)
    _run_twice(settings, make_monitor)
    engine = create_engine(settings.storage.database_url)
    try:
        update_items(engine, ["p00000010"], ood_score=1e6)  # the most out of distribution
        _damage(settings, "p00000010", "outputs", "[[150000.0, 1.0, 2.0, 1e6")
        registry = ModelRegistry(settings.storage.registry_path)
        data = gather(engine, registry, Period(), thresholds(settings))
    finally:
        engine.dispose()

    assert data.ood_rows  # the others
    assert "p00000010" not in {row.prediction_id for row in data.ood_rows}
