"""The alert loop for real: drifted Ames sales replayed through ``watchkeeper serve``
make the monitor report drift, Prometheus takes the drift alert from pending to
firing, Alertmanager delivers it to people and to the ``/alerts`` webhook, and the
retraining worker runs a job whose outcome is recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring.replay import Replayer
from tests.observability import Server, alert_path
from tests.processes import Process, wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.db.tables import retrain_requests, retrain_runs

pytestmark = pytest.mark.integration

TOKEN = "alert-loop-token"
ALERT = "WatchkeeperDatasetDriftSustained"


def _alert_states(prometheus: Server) -> set[tuple[str, str]]:
    """The alert's (state, activeAt) pairs: an ``activeAt`` is one episode."""
    alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
    return {(a["state"], a["activeAt"]) for a in alerts if a["labels"]["alertname"] == ALERT}


def test_drift_alert_reaches_people_and_the_retraining_webhook_and_a_job_runs(
    start_watchkeeper: Callable[..., Process],
    start_prometheus: Callable[..., Server],
    start_alertmanager: Callable[..., Server],
    people: tuple[str, list[dict[str, Any]]],
    ames: Dataset,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    common = {"WATCHKEEPER_ADMIN_TOKEN": TOKEN}
    server = start_watchkeeper("serve", **common)
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE="500",  # one window of 2009 sales: drifted
        WATCHKEEPER_MONITOR_MIN_SAMPLES="200",
        WATCHKEEPER_DRIFT_MULTIVARIATE="false",
        # only Alertmanager may ask for a retrain in this test
        WATCHKEEPER_TRIGGER_DRIFT_WINDOWS="1000",
        WATCHKEEPER_TRIGGER_OOD_FRACTION="1",
        WATCHKEEPER_TRIGGER_MAE_DEGRADATION="100",
    )
    worker = start_watchkeeper("retrain worker", WATCHKEEPER_RETRAIN_POLL_SECONDS="0.5", **common)
    people_url, notified = people
    prometheus, alertmanager = alert_path(
        start_prometheus,
        start_alertmanager,
        people_url=people_url,
        token_file=token_file,
        server=server,
        monitor=monitor,
        worker=worker,
    )

    report = Replayer(server.url, feedback_delay=0.2).run(ames.between(200901, 201012), limit=500)
    assert (report.accepted, report.feedback_posted) == (500, 500)

    seen: set[tuple[str, str]] = set()

    def fired() -> bool:
        seen.update(_alert_states(prometheus))
        return any(state == "firing" for state, _ in seen)

    assert wait_for(fired, timeout=90, interval=0.2), [
        line for line in monitor.get("/metrics").text.splitlines() if "dataset_drift" in line
    ]
    assert any(state == "pending" for state, _ in seen), (
        "the alert must pass through pending (its for: duration)"
    )

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'watchkeeper.db'}")

    def job_done() -> bool:
        seen.update(_alert_states(prometheus))
        with engine.connect() as connection:
            outcome = connection.execute(
                sa.select(retrain_runs.c.outcome).where(retrain_runs.c.trigger == "alertmanager")
            ).scalar()
        return outcome in ("promoted", "rejected")

    try:
        assert wait_for(job_done, timeout=120, interval=0.5), (
            worker.log_path.read_text()[-2000:] + alertmanager.log.read_text()[-2000:]
        )
        with engine.connect() as connection:
            requested = connection.execute(
                sa.select(retrain_requests.c.trigger, retrain_requests.c.reason)
            ).all()
            run = connection.execute(sa.select(retrain_runs)).one()
    finally:
        engine.dispose()
    # Alertmanager repeats a notification; the repeats of one episode queue one request.
    # On a busy machine a missed scrape can resolve the alert and fire it again: another
    # episode (another activeAt), which may queue again.
    episodes = {active_at for state, active_at in seen if state == "firing"}
    assert requested and len(requested) <= len(episodes), (requested, seen)
    assert all(r.trigger == "alertmanager" and ALERT in r.reason for r in requested)
    assert run.candidate_metrics["mae"] > 0 and run.champion_metrics["mae"] > 0
    assert any(
        alert["labels"]["alertname"] == ALERT for body in notified for alert in body["alerts"]
    ), "people were not notified"
    sent = alertmanager.get("/metrics").text
    assert 'alertmanager_notifications_total{integration="webhook"}' in sent
