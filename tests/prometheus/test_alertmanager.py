"""The Alertmanager configuration: generated from the settings, valid for amtool, and
routing each alert where it must go."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.observability import binary
from watchkeeper.alertmanager_config import render
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
