"""A classifier's accuracy alert for real: a served classifier whose labels turn against
it (the outcome each client reports flipped) makes the monitor's Wilson upper bound
fall under the validation accuracy minus the drop; Prometheus takes
``WatchkeeperClassifierAccuracyDegraded`` to firing, and Alertmanager delivers it to
people and to the ``/alerts`` webhook, which queues a retrain request. The regression
accuracy alert stays silent throughout."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from monitoring.replay import Replayer
from tests.monitoring import classifier_log
from tests.observability import Server, alert_path
from tests.processes import Process, wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.db.tables import retrain_requests
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainingParams, train

pytestmark = pytest.mark.integration

TOKEN = "classifier-alert-token"
ALERT = "WatchkeeperClassifierAccuracyDegraded"


@pytest.fixture(scope="module")
def classifier_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry whose current version (v1) is a binary classifier on a known logistic
    truth (tests/monitoring/classifier_log.py)."""
    frame, p = classifier_log.draw(3000, seed=1)
    frame["outcome"] = classifier_log.outcomes(p, seed=2)
    frame["period"] = np.arange(len(frame)) * 6 // len(frame)
    training = Dataset("synthetic", frame[frame.period < 5], "outcome", "period", ("period",))
    validation = Dataset("synthetic", frame[frame.period == 5], "outcome", "period", ("period",))
    root = tmp_path_factory.mktemp("classifier-registry")
    ModelRegistry(root).register(train(training, validation, params=TrainingParams(max_iter=40)))
    return root


def _states(prometheus: Server, name: str) -> set[str]:
    alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == name}


@pytest.mark.timeout(600)
def test_a_classifier_losing_accuracy_fires_its_alert_and_requests_a_retrain(
    start_watchkeeper: Callable[..., Process],
    start_prometheus: Callable[..., Server],
    start_alertmanager: Callable[..., Server],
    people: tuple[str, list[dict[str, Any]]],
    classifier_registry: Path,
    tmp_path: Path,
) -> None:
    registry = tmp_path / "served-registry"
    shutil.copytree(classifier_registry, registry)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    own = {"WATCHKEEPER_REGISTRY_PATH": str(registry), "WATCHKEEPER_ADMIN_TOKEN": TOKEN}
    server = start_watchkeeper("serve", **own)
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE="100",
        WATCHKEEPER_MONITOR_MIN_SAMPLES="100",
        WATCHKEEPER_MONITOR_MIN_LABELS="50",
        # only Alertmanager may ask for a retrain in this test
        WATCHKEEPER_TRIGGER_ACCURACY_DROP="0.99",
        WATCHKEEPER_TRIGGER_DRIFT_WINDOWS="1000",
        WATCHKEEPER_TRIGGER_OOD_FRACTION="1",
        **own,
    )
    people_url, notified = people
    prometheus, alertmanager = alert_path(
        start_prometheus,
        start_alertmanager,
        people_url=people_url,
        token_file=token_file,
        server=server,
        monitor=monitor,
    )

    # the world turned: each client reports the other outcome than the truth gives
    frame, p = classifier_log.draw(400, seed=7)
    frame["outcome"] = [
        "stay" if o == "churn" else "churn" for o in classifier_log.outcomes(p, seed=8)
    ]
    report = Replayer(server.url, batch_size=50, feedback_delay=0.2).run(
        Dataset("turned", frame, "outcome")
    )
    assert report.feedback_failed == 0, report.summary()

    states: set[str] = set()
    regression: set[str] = set()

    def fired() -> bool:
        states.update(_states(prometheus, ALERT))
        regression.update(_states(prometheus, "WatchkeeperAccuracyDegraded"))
        return "firing" in states

    assert wait_for(fired, timeout=180, interval=0.2), [
        line for line in monitor.get("/metrics").text.splitlines() if "accuracy" in line
    ]
    assert "pending" in states, "the alert must pass through pending (its for: duration)"

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'watchkeeper.db'}")

    def requested() -> list[Any]:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(retrain_requests.c.trigger, retrain_requests.c.reason)
            ).all()

    try:
        assert wait_for(lambda: bool(requested()), timeout=60, interval=0.5), (
            alertmanager.log.read_text()[-2000:] + server.log_path.read_text()[-2000:]
        )
        rows = requested()
    finally:
        engine.dispose()
    assert [r.trigger for r in rows] == ["alertmanager"]
    assert ALERT in rows[0].reason
    assert any(
        alert["labels"]["alertname"] == ALERT for body in notified for alert in body["alerts"]
    ), "people were not notified"
    # a classifier's series never fire the regression accuracy alert
    regression.update(_states(prometheus, "WatchkeeperAccuracyDegraded"))
    assert regression == set()
