"""The retrain trigger: one request per drift episode within the cooldown, and the
reasons it records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from monitoring.monitor import Monitor
from monitoring.trigger import RetrainTrigger, TriggerPolicy
from monitoring.window_result import WindowResult
from serving.app import create_app, shutdown
from tests.monitoring.results import window_result
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import retrain_requests, window_results
from watchkeeper.settings import Settings


def _feature_drift_rows(settings: Settings) -> list[Any]:
    engine = create_engine(settings.storage.database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(window_results.c.window_id, window_results.c.is_drift)
            .where(window_results.c.detector == "feature_drift")
            .order_by(window_results.c.last_seq)
        ).all()
    engine.dispose()
    return rows


def _drift_verdicts(settings: Settings) -> list[bool]:
    return [bool(row.is_drift) for row in _feature_drift_rows(settings)]


def _window_ids(settings: Settings) -> list[str]:
    return [row.window_id for row in _feature_drift_rows(settings)]


def _requests(settings: Settings) -> list[dict[str, Any]]:
    engine = create_engine(settings.storage.database_url)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(retrain_requests))]
    engine.dispose()
    return rows


POLICY = {
    # 250 rows: windows of 2009–10 sales drift in runs (200-row ones alternate too often
    # for two runs of three in eight windows)
    "monitor_window_size": 250,
    "drift_multivariate": False,
    "trigger_drift_windows": 3,
    "trigger_ood_fraction": 1.0,
}


def test_a_drift_episode_raises_exactly_one_request_within_the_cooldown(
    settings: Settings,
    server: Any,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    send_predictions(server, replay_records, 1000, batch=250)  # 2009–10 sales: mostly drifted
    monitor = make_monitor(**POLICY)
    assert monitor.run_once() == 4

    more = create_app(settings, registry=CollectorRegistry())
    send_predictions(more, replay_records, 500, batch=250)
    shutdown(more)  # its background threads too: a probe left running outlived the test
    restarted = make_monitor(**POLICY)
    assert restarted.run_once() == 2

    verdicts = _drift_verdicts(settings)
    runs = [i for i in range(2, len(verdicts)) if all(verdicts[i - 2 : i + 1])]
    assert len(runs) >= 2, f"2009–10 windows should drift in runs of three: {verdicts}"
    first_run_end = runs[0]
    [request] = _requests(settings)
    assert request["trigger"] == "monitor"
    assert request["reason"].startswith("drift: dataset drift in 3 consecutive windows")
    assert request["status"] == "pending"
    assert request["model_version"] == "v1"
    assert request["evidence"]["drifted"]
    assert request["evidence"]["window_id"] == _window_ids(settings)[first_run_end]
    requested = (
        monitor.status.retrain_requests["drift"] + restarted.status.retrain_requests["drift"]
    )
    assert requested == 1


def test_after_the_cooldown_a_continuing_episode_raises_another(
    settings: Settings,
    server: Any,
    replay_records: list[dict[str, Any]],
    send_predictions: Callable[..., list[str]],
    make_monitor: Callable[..., Monitor],
) -> None:
    send_predictions(server, replay_records, 1600, batch=200)
    monitor = make_monitor(**POLICY, trigger_cooldown_seconds=0)

    monitor.run_once()

    verdicts = _drift_verdicts(settings)
    runs_of_three = sum(all(verdicts[i - 2 : i + 1]) for i in range(2, len(verdicts)))
    reasons = [r["reason"].split(":")[0] for r in _requests(settings)]
    assert runs_of_three >= 1, verdicts
    assert reasons == ["drift"] * runs_of_three


def _rolling(*, mae: float, bound: float, labels: int) -> WindowResult:
    return window_result(
        "accuracy_rolling",
        score=mae,
        window_id="v1:rolling-1",
        n_rows=labels,
        details={"mae": mae, "mae_lower_bound": bound, "confidence": 0.99},
    )


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([_rolling(mae=30_000.0, bound=26_000.0, labels=400)], "accuracy"),
        ([_rolling(mae=21_280.0, bound=15_400.0, labels=63)], None),  # too few labels
        ([_rolling(mae=16_000.0, bound=14_000.0, labels=400)], None),
        # a window's own accuracy is reported, never acted on: few labels, any window
        ([window_result("accuracy", score=30_000.0, window_id="a", n_rows=80)], None),
        (
            [
                window_result("ood", score=0.3, window_id="w"),
                window_result(
                    "feature_drift",
                    is_drift=False,
                    score=0.0,
                    window_id="w",
                    details={"drifted": []},
                ),
            ],
            "ood",
        ),
        ([window_result("ood", score=0.3, window_id="w")], None),  # no verdict: too few rows
    ],
    ids=[
        "mae-degraded",
        "mae-over-but-not-confidently",
        "mae-fine",
        "window-accuracy-ignored",
        "ood-high",
        "ood-small-window",
    ],
)
def test_accuracy_and_ood_reasons(
    settings: Settings, results: list[WindowResult], expected: str | None
) -> None:
    engine = create_engine(settings.storage.database_url)
    trigger = RetrainTrigger(engine, TriggerPolicy(ood_fraction=0.1, mae_degradation=0.25))

    row = trigger.consider(results, validation_mae=15_000.0)

    engine.dispose()
    assert (row.reason.split(":")[0] if row else None) == expected


def test_an_absurd_labels_mae_is_written_in_scientific_notation_in_the_reason(
    settings: Settings,
) -> None:
    # A label of ±1.7e308 is a number, accepted: the reason must stay a line to read.
    engine = create_engine(settings.storage.database_url)
    trigger = RetrainTrigger(engine, TriggerPolicy(mae_degradation=0.25))

    row = trigger.consider(
        [_rolling(mae=1.7e306, bound=1.6e306, labels=400)], validation_mae=15_000.0
    )

    engine.dispose()
    assert row is not None
    assert row.reason == (
        "accuracy: MAE 1.70e+306 over 400 labels, at least 1.60e+306 with 99% confidence, "
        "above 18,750 (validation 15,000 + 25%)"
    )
