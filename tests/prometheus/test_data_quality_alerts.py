"""Broken data raises an alarm for real: a prediction log holding one broken client's
rows, a real ``watchkeeper monitor`` process evaluating it, and a real Prometheus
scraping the monitor with the project's rules (``for:`` shortened) until the
out-of-range alert fires.

Measured before these alerts existed (issue 11): 5 % of rows with ``Gr_Liv_Area × 10``
or every area in m² set off nothing — no dataset drift, an OOD fraction under the
retrain trigger.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.log_rows import AREAS, write_log
from tests.observability import Server
from tests.processes import Process, wait_for
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.settings import Settings

pytestmark = pytest.mark.integration

ALERT = "WatchkeeperFeatureOutOfRange"


def _broken(records: list[dict[str, Any]], scenario: str) -> list[dict[str, Any]]:
    broken = []
    for i, original in enumerate(records):
        record = dict(original)
        if scenario == "all_areas_in_m2":
            for name in AREAS:
                if record.get(name):
                    record[name] = round(record[name] / 10.7639, 1)
        elif i % 20 == 0:  # one client in twenty rows multiplies the living area by 10
            record["Gr_Liv_Area"] = record["Gr_Liv_Area"] * 10
        broken.append(record)
    return broken


@pytest.mark.parametrize("scenario", ["five_percent_living_area_x10", "all_areas_in_m2"])
def test_a_broken_client_fires_the_out_of_range_alert(
    start_watchkeeper: Callable[..., Process],
    start_prometheus: Callable[..., Server],
    replay_records: list[dict[str, Any]],
    tmp_path: Path,
    scenario: str,
) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    engine = create_engine(settings.storage.database_url)
    upgrade(engine)
    engine.dispose()
    records = _broken([replay_records[i % len(replay_records)] for i in range(1000)], scenario)
    write_log(settings, records, [200_000.0] * len(records))
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0",
        WATCHKEEPER_MONITOR_WINDOW_SIZE="500",
        WATCHKEEPER_DRIFT_MULTIVARIATE="false",
    )
    prometheus = start_prometheus({"watchkeeper-monitor": monitor.url.removeprefix("http://")})

    states: set[str] = set()

    def fired() -> bool:
        alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
        states.update(
            a["state"]
            for a in alerts
            if a["labels"]["alertname"] == ALERT and a["labels"]["feature"] == "Gr_Liv_Area"
        )
        return "firing" in states

    assert wait_for(fired, timeout=120, interval=0.2), [
        line for line in monitor.get("/metrics").text.splitlines() if "Gr_Liv_Area" in line
    ]
    assert "pending" in states, "the alert must pass through pending (its for: duration)"
