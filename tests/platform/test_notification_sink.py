"""The notification sink: one readable line per alert state change, from the body
Alertmanager really posts (payload version 4), over real HTTP."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.ports import free_port
from watchkeeper.notification_sink import Notification, NotificationLog, make_server

FIRING = {
    "status": "firing",
    "labels": {
        "alertname": "WatchkeeperDatasetDriftSustained",
        "severity": "warning",
        "model_version": "v1",
        "instance": "127.0.0.1:8001",
        "job": "watchkeeper-monitor",
    },
    "annotations": {
        "summary": "Dataset drift on model v1 for 30 minutes",
        "description": "Every monitor window of the last 30 minutes differs.",
        "runbook_url": "docs/runbook.md#dataset-drift-sustained",
    },
    "startsAt": "2026-11-29T11:46:21.307Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://127.0.0.1:9090/graph",
    "fingerprint": "f4dba00c57d7a622",
}


def body(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="WatchkeeperDatasetDriftSustained"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "people",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def resolved(alert: dict[str, Any]) -> dict[str, Any]:
    return {**alert, "status": "resolved", "endsAt": "2026-11-29T12:20:00Z"}


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path, io.StringIO]]:
    path, echo = tmp_path / "notifications.log", io.StringIO()
    server = make_server("127.0.0.1", free_port(), "/notify", NotificationLog(path, "/repo", echo))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", path, echo
    server.shutdown()
    server.server_close()


def test_each_state_change_is_one_readable_line(sink: tuple[str, Path, io.StringIO]) -> None:
    url, path, echo = sink
    other = {**FIRING, "fingerprint": "aa", "labels": {**FIRING["labels"], "model_version": "v2"}}
    for alerts in ([FIRING], [FIRING, other], [resolved(FIRING), other]):
        assert requests.post(f"{url}/notify", json=body(*alerts), timeout=10).status_code == 200
    assert path.read_text().splitlines() == [
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v1: Dataset drift on model v1 for 30 minutes "
        "| runbook: /repo/docs/runbook.md#dataset-drift-sustained",
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v2: Dataset drift on model v1 for 30 minutes "
        "| runbook: /repo/docs/runbook.md#dataset-drift-sustained",
        "2026-11-29T12:20:00Z RESOLVED WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v1: Dataset drift on model v1 for 30 minutes "
        "| runbook: /repo/docs/runbook.md#dataset-drift-sustained",
    ]
    assert echo.getvalue().splitlines() == [
        f"notification: {x}" for x in path.read_text().splitlines()
    ]


def test_a_refiring_alert_is_a_new_line(tmp_path: Path) -> None:
    log = NotificationLog(tmp_path / "n.log")
    again = {**FIRING, "startsAt": "2026-11-29T13:00:00Z"}
    for alerts in ([FIRING], [resolved(FIRING)], [again], [again]):
        log.record(Notification.model_validate(body(*alerts)))
    states = [line.split()[1] for line in (tmp_path / "n.log").read_text().splitlines()]
    assert states == ["FIRING", "RESOLVED", "FIRING"]


def test_absolute_runbook_links_and_missing_annotations_read_well(tmp_path: Path) -> None:
    log = NotificationLog(tmp_path / "n.log", "/repo")
    bare = {
        "status": "firing",
        "labels": {"alertname": "Custom"},
        "startsAt": "2026-11-29T11:00:00Z",
    }
    linked = {
        **FIRING,
        "annotations": {"summary": "s", "runbook_url": "https://runbooks.example/drift"},
    }
    lines = log.record(Notification.model_validate(body(bare, linked)))
    assert lines == [
        "2026-11-29T11:00:00Z FIRING Custom severity=none: (no summary)",
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v1: s | runbook: https://runbooks.example/drift",
    ]


def test_what_is_not_a_notification_is_refused(sink: tuple[str, Path, io.StringIO]) -> None:
    url, path, _ = sink
    assert requests.post(f"{url}/notify", data=b"{}", timeout=10).status_code == 400
    assert requests.post(f"{url}/elsewhere", json=body(FIRING), timeout=10).status_code == 404
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    assert not path.exists()
