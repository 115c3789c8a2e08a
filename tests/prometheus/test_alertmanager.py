"""The Alertmanager configuration: generated from the settings, valid for amtool, and
routing each alert where it must go."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.observability import binary
from tests.processes import wait_for
from watchkeeper.alertmanager_config import alertmanager_config, render
from watchkeeper.mixin.alerts import alert_names
from watchkeeper.mixin.config import MixinConfig
from watchkeeper.settings import Settings

CONFIG = Path(__file__).resolve().parents[2] / "prometheus" / "alertmanager.yml"


@pytest.fixture(scope="module")
def amtool() -> str:
    return binary("amtool", "prometheus-alertmanager")


def test_committed_config_is_the_rendering_of_the_default_settings() -> None:
    assert CONFIG.read_text() == render(Settings()), (
        "run `watchkeeper alertmanager-config --output prometheus/alertmanager.yml`"
    )


def test_config_passes_amtool(amtool: str) -> None:
    result = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=WatchkeeperDatasetDriftSustained", "severity=warning"], "retrain,people"),
        (["alertname=WatchkeeperAccuracyDegraded", "severity=critical"], "retrain,people"),
        # a classifier's accuracy alert retrains like the regression one; its set,
        # calibration and label-free estimate alerts tell people only
        (
            ["alertname=WatchkeeperClassifierAccuracyDegraded", "severity=critical"],
            "retrain,people",
        ),
        (["alertname=WatchkeeperPredictionSetCoverageOutOfBand", "severity=warning"], "people"),
        (["alertname=WatchkeeperClassifierCalibrationDegraded", "severity=warning"], "people"),
        (["alertname=WatchkeeperEstimatedAccuracyDrop", "severity=warning"], "people"),
        (["alertname=WatchkeeperHighErrorRate", "severity=critical"], "people"),
        (["alertname=WatchkeeperFeatureDrift", "severity=info"], "people"),
        # broken data is a data incident: people only, never a retrain
        (["alertname=WatchkeeperFeatureOutOfRange", "severity=warning"], "people"),
        (["alertname=WatchkeeperRejectedRequests", "severity=warning"], "people"),
    ],
)
def test_alerts_route_to_people_and_retraining_alerts_also_to_the_webhook(
    amtool: str, labels: list[str], receivers: str
) -> None:
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == receivers, result.stdout + result.stderr


def test_every_inhibition_states_the_labels_that_must_be_equal() -> None:
    for inhibition in alertmanager_config(Settings())["inhibit_rules"]:
        assert {"namespace", "job"} <= set(inhibition["equal"]), inhibition


def test_retraining_alerts_are_generated_alerts_and_a_misspelt_one_is_refused() -> None:
    settings = Settings()
    assert set(settings.alerting.retrain_alert_names) <= set(
        alert_names(MixinConfig.from_settings(settings))
    )
    with pytest.raises(ValueError, match="WatchkeeperDatasetDrift"):
        alertmanager_config(Settings(retrain_alert_names=("WatchkeeperDatasetDrift",)))


_SAME = 'namespace="a",job="watchkeeper-serving"'
_OTHER = 'namespace="b",job="watchkeeper-serving"'


@pytest.mark.parametrize(
    ("cause", "consequence"),
    [
        ("WatchkeeperHighErrorRate", "WatchkeeperHighLatency"),
        ("WatchkeeperLogDatabaseDown", "WatchkeeperLogBacklog"),
        ("WatchkeeperLogDatabaseDown", "WatchkeeperLogWriterStalled"),
    ],
)
@pytest.mark.parametrize(("target", "inhibited"), [(_SAME, 1), (_OTHER, 0)])
def test_a_cause_silences_its_consequence_in_its_own_release_only(
    start_alertmanager: Any, cause: str, consequence: str, target: str, inhibited: int
) -> None:
    """A real Alertmanager: the alert of a cause (5xx, an unreachable log database)
    inhibits that release's alert of what follows from it (latency; the log's backlog
    and stall), never another namespace's."""
    server = start_alertmanager(Settings())
    now = datetime.now(UTC).isoformat()

    def alert(name: str, labels: str) -> dict[str, Any]:
        pairs = dict(part.split("=") for part in labels.split(","))
        return {
            "labels": {"alertname": name, **{k: v.strip('"') for k, v in pairs.items()}},
            "startsAt": now,
        }

    posted = requests.post(
        f"{server.url}/api/v2/alerts",
        json=[alert(cause, _SAME), alert(consequence, target)],
        timeout=10,
    )
    assert posted.status_code == 200

    def consequence_state() -> str | None:
        alerts = server.get("/api/v2/alerts").json()
        states = [a["status"]["state"] for a in alerts if a["labels"]["alertname"] == consequence]
        return states[0] if states else None

    expected = "suppressed" if inhibited else "active"
    assert wait_for(lambda: consequence_state() == expected, timeout=30, interval=0.2), (
        consequence_state()
    )
